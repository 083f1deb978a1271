"""Human approvals end to end, through their links and the inbox: forged tokens and replayed
links are refused and audited, looking at a link never decides, and the inbox filters, pages and
forgets decided approvals. A real broker, SQLite and PostgreSQL; the expense approvals of
tests/integration/expense_approvals.py.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import pytest
from sqlalchemy import insert, update

from bridge.store.schema import approvals as approvals_table
from tests.conftest import DATABASES
from tests.integration.expense_approvals import (
    Approvals,
    running_approvals,
    unique,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module", params=DATABASES)
async def approvals(
    request: pytest.FixtureRequest, kafka: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Approvals]:
    """One bridge per database for this file's tests."""
    async with running_approvals(request.param, kafka, tmp_path_factory) as running:
        yield running


# ------------------------------------------------------------------------- forged and replayed


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert found, html
    return found.group(1)


async def _form_post(
    approvals: Approvals, url: str, csrf: str | None, origin: str | None = None, **fields: str
) -> tuple[int, str]:
    data = dict(fields)
    if csrf is not None:
        data["csrf"] = csrf
    headers = {"Origin": origin or approvals.bridge.url}
    async with approvals.bridge.http.post(url, data=data, headers=headers) as response:
        return response.status, await response.text()


async def test_forged_tokens_get_one_answer_and_change_nothing(approvals: Approvals) -> None:
    request = await approvals.request(assignees=[unique("ann")])
    base = approvals.bridge.url
    approve = request["approveUrl"].rsplit("/", 1)[1]
    reject = request["rejectUrl"].rsplit("/", 1)[1]
    flipped = approve[:-1] + ("A" if approve[-1] != "A" else "B")
    forged = [
        f"/approve/{secrets.token_urlsafe(32)}",
        f"/reject/{secrets.token_urlsafe(32)}",
        f"/approve/{flipped}",
        f"/approve/{approve[:20]}",
        f"/approve/{approve}A",
        f"/approve/{approve.swapcase()}",
        f"/approve/{reject}",  # a real token on the wrong path
        f"/reject/{approve}",
        f"/approve/{quote(chr(39) + ' OR 1=1 --', safe='')}",
        f"/reject/{'A' * 2000}",
        "/approve/%C3%A9t%C3%A9",
    ]
    history_before = await approvals.history(request["processId"])

    get_bodies, post_bodies, form_bodies = set(), set(), set()
    for path in forged:
        async with approvals.bridge.http.get(base + path) as response:
            assert response.status == 404, path
            get_bodies.add(await response.text())
        async with approvals.bridge.http.head(base + path) as response:
            assert response.status == 404, path
        for body in (None, {}, {"decision": "approve"}, {"decision": "reject", "comment": "x"}):
            status, answer = await approvals.bridge.post(base + path, body)
            assert status == 404, (path, body, answer)
            post_bodies.add(json.dumps(answer, sort_keys=True))
        # A form without the page's nonce is refused before the link is even looked at.
        status, html = await _form_post(approvals, base + path, None, decision="approve")
        assert status == 403, path
        form_bodies.add(html)
    assert len(get_bodies) == 1 and len(post_bodies) == 1 and len(form_bodies) == 1
    (get_body,) = get_bodies
    assert "unknown or no longer valid" in get_body
    assert json.loads(post_bodies.pop())["status"] == 404
    # A real link without the nonce gets the very same page: nothing tells the two apart.
    status, html = await _form_post(approvals, request["approveUrl"], None, decision="approve")
    assert status == 403 and {html} == form_bodies

    found = await approvals.approval(request["approvalId"])
    assert found["status"] == "PENDING" and found["votes"] == []
    history = await approvals.history(request["processId"])
    added = [entry["type"] for entry in history[len(history_before) :]]
    assert added == ["ApprovalAttemptRefused"]  # only the real link's form; forgeries find none
    status, _ = await approvals.decide(request["approveUrl"])
    assert status == 200


async def test_a_replayed_link_is_refused_and_audited(approvals: Approvals) -> None:
    ann = unique("ann")
    request = await approvals.request(assignees=[ann])
    approve_url, reject_url = request["approveUrl"], request["rejectUrl"]
    async with approvals.bridge.http.get(reject_url) as response:
        csrf = _csrf(await response.text())

    # A form from another origin is refused even with the right nonce, before anything counts.
    status, refused = await _form_post(
        approvals, reject_url, csrf, origin="https://evil.example", decision="reject"
    )
    assert status == 403 and "Cross-site request refused" in refused
    assert (await approvals.approval(request["approvalId"]))["status"] == "PENDING"

    status, body = await approvals.decide(approve_url, decidedBy="Ann")
    assert status == 200
    process = await approvals.ended(request["processId"], "SUCCEEDED")
    announced = await approvals.announced(request["correlationKey"])
    assert announced["outcome"] == "APPROVED"
    history_before = await approvals.history(request["processId"])

    # Replays: the same link, the other link, and the page's form with its nonce.
    status, body = await approvals.decide(approve_url)
    assert status == 409 and body["title"] == "Decision refused"
    assert "already approved" in body["detail"]
    status, body = await approvals.decide(reject_url, "reject", decidedBy="Eve")
    assert status == 409 and "already approved" in body["detail"]
    status, html = await _form_post(approvals, reject_url, csrf, decision="reject", comment="late")
    assert status == 409
    assert "Not recorded" in html and "already approved" in html
    assert "<form" not in html
    # The page says it is decided and offers no form.
    async with approvals.bridge.http.get(approve_url) as response:
        assert response.status == 200
        page = await response.text()
        assert "This approval is approved; nothing more to do." in page
        assert "<form" not in page

    assert await approvals.process(request["processId"]) == process
    found = await approvals.approval(request["approvalId"])
    assert found["status"] == "APPROVED" and [v["by"] for v in found["votes"]] == [ann]
    await approvals.no_more_announcements(request["correlationKey"], wait=0.3)

    history = await approvals.history(request["processId"])
    refused = [e for e in history if e["type"] == "ApprovalAttemptRefused"]
    # The post from another site never reached the approval: only the replays are recorded.
    assert all("already approved" in e["details"]["reason"] for e in refused)
    assert [e["details"]["decision"] for e in refused] == ["approve", "reject", "reject"]
    added = [e["type"] for e in history[len(history_before) :]]
    # The page opened after the decision is audited beside the process, not in its history.
    assert added == ["ApprovalAttemptRefused"] * 3


# ------------------------------------------------------------------------- looking never decides


async def test_get_and_head_never_decide_nor_write_the_process_and_views_are_audited(
    approvals: Approvals,
) -> None:
    request = await approvals.request(assignees=[unique("ann")], groups=[unique("ops")], rule=2)
    urls = [url for link in request["links"] for url in (link["approveUrl"], link["rejectUrl"])]
    process_before = await approvals.row_version(request["processId"])
    history_before = await approvals.history(request["processId"])
    for _ in range(3):
        for url in urls:
            # The proxy header comes from an address that is no trusted proxy: not believed.
            async with approvals.bridge.http.get(url, headers={"X-Forwarded-User": "scanner"}) as r:
                assert r.status == 200
                html = await r.text()
                assert "<form" in html and request["title"] in html
            async with approvals.bridge.http.head(url) as response:
                assert response.status == 200
    found = await approvals.approval(request["approvalId"])
    assert found["status"] == "PENDING" and found["votes"] == []
    process = await approvals.process(request["processId"])
    assert process["status"] == "RUNNING" and process["currentState"] == "Approve"
    # Viewing wrote nothing of the process: same version, same history.
    assert await approvals.row_version(request["processId"]) == process_before
    assert await approvals.history(request["processId"]) == history_before

    # The views are audited on the approval: per seat and link, with their count (GET and HEAD).
    views = found["views"]
    assert {(v["seat"], v["action"]) for v in views} == {
        (link["seat"], action) for link in request["links"] for action in ("approve", "reject")
    }
    assert all(v["views"] == 6 and v["viewer"] is None for v in views), views
    assert all(v["firstAt"] <= v["lastAt"] for v in views)


# ------------------------------------------------------------------------- the inbox


async def test_the_inbox_filters_and_decided_approvals_leave_it(approvals: Approvals) -> None:
    ann, bob, fin, ops = unique("ann"), unique("bob"), unique("fin"), unique("ops")
    a, b, c = await approvals.requests(
        ("expense-approval", {"assignees": [ann], "groups": [fin]}),
        ("expense-approval", {"assignees": [bob], "groups": [fin]}),
        ("purchase-approval", {"assignees": [ann], "groups": [ops]}),
    )

    async def ids(**query: str | int) -> set[str]:
        return {item["id"] for item in await approvals.inbox(**query)}

    assert await ids(assignee=ann) == {a["approvalId"], c["approvalId"]}
    assert await ids(group=fin) == {a["approvalId"], b["approvalId"]}
    assert await ids(assignee=ann, group=fin) == {a["approvalId"]}
    assert await ids(assignee=fin) == set()  # a group is no assignee
    assert await ids(group=ann) == set()
    assert await ids(definition="purchase-approval", assignee=ann) == {c["approvalId"]}
    assert await ids(definition="expense-approval", group=fin) == {a["approvalId"], b["approvalId"]}
    assert await ids(definition="nope", group=fin) == set()
    assert await ids(minAgeMinutes=0, assignee=ann) == {a["approvalId"], c["approvalId"]}
    assert await ids(minAgeMinutes=5, assignee=ann) == set()

    item = next(i for i in await approvals.inbox(assignee=bob) if i["id"] == b["approvalId"])
    assert item["status"] == "PENDING" and item["processId"] == b["processId"]
    assert item["seats"] == [f"user:{bob}", f"group:{fin}"] and item["pending"] == item["seats"]
    assert item["definition"] == "expense-approval" and item["title"] == b["title"]
    assert item["links"]["self"].endswith(f"/approvals/{b['approvalId']}")

    # Ten minutes old: old enough for minAgeMinutes=5, not for 30.
    async with approvals.bridge.core.db.begin() as conn:
        await conn.execute(
            update(approvals_table)
            .where(approvals_table.c.id == a["approvalId"])
            .values(created_at=datetime.now(UTC) - timedelta(minutes=10))
        )
    assert await ids(minAgeMinutes=5, assignee=ann) == {a["approvalId"]}
    assert await ids(minAgeMinutes=5, group=fin) == {a["approvalId"]}
    assert await ids(minAgeMinutes=30, assignee=ann) == set()

    # Decided approvals leave the pending list, and are found by their status.
    status, _ = await approvals.decide(a["approveUrl"])
    assert status == 200
    status, _ = await approvals.decide(b["rejectUrl"])
    assert status == 200
    assert await ids(assignee=ann) == {c["approvalId"]}
    assert await ids(group=fin) == set()
    assert await ids(status="approved", assignee=ann) == {a["approvalId"]}
    assert await ids(status="REJECTED", group=fin) == {b["approvalId"]}
    assert await ids(status="ALL", assignee=ann) == {a["approvalId"], c["approvalId"]}

    for query in ("status=bogus", "minAgeMinutes=-1", "minAgeMinutes=soon"):
        status, body = await approvals.bridge.get(f"/approvals?{query}")
        assert status == 400 and body["status"] == 400, query
    status, body = await approvals.bridge.get("/approvals/no-such-approval")
    assert status == 404


async def test_invalid_approval_parameters_fail_the_process(approvals: Approvals) -> None:
    key = await approvals.start("expense-approval", assignees=[unique("ann")], rule=3)
    process = await approvals.bridge.process_for(key, "FAILED")
    assert process["error"] == "Approval.InvalidParameters"
    assert "from 1 to 1" in process["cause"]
    kinds = await approvals.kinds(process["id"])
    assert "ApprovalRequested" not in kinds and kinds[-1] == "ProcessFailed"


async def test_the_inbox_finds_an_assignee_behind_two_hundred_older_approvals(
    approvals: Approvals,
) -> None:
    ann = unique("ann")
    request = await approvals.request(assignees=[ann])
    filler = [unique("filler") for _ in range(200)]
    long_ago = datetime.now(UTC) - timedelta(days=1)
    async with approvals.bridge.core.db.begin() as conn:
        await conn.execute(
            insert(approvals_table),
            [
                {
                    "id": approval_id,
                    "process_id": request["processId"],
                    "definition": "expense-approval",
                    "wait_id": approval_id,
                    "state": "Approve",
                    "title": "an older approval for someone else",
                    "data": {},
                    "status": "PENDING",
                    "created_at": long_ago,
                    "seats": [f"user:{unique('someone')}"],
                    "rule": "Any",
                    "votes": [],
                    "on_expiry": "Fail",
                }
                for approval_id in filler
            ],
        )
    try:
        items = await approvals.inbox(assignee=ann)
        assert [item["id"] for item in items] == [request["approvalId"]]
    finally:
        async with approvals.bridge.core.db.begin() as conn:
            await conn.execute(
                update(approvals_table)
                .where(approvals_table.c.id.in_(filler))
                .values(status="CLOSED")
            )
