"""Human approvals end to end: a real broker, SQLite and PostgreSQL, HTTP links.

Processes are started by events (see tests/integration/expense_approvals.py); a
``bridge:approval`` step asks its seats (assignees and groups), the ``Rule`` adds their votes up,
``OnExpiry`` says what an expiry means, reminders go out on the approvals topic, and the outcome
is announced with a fire-and-forget send (approved) or, through a Catch of
``Approval.Rejected``, a rejection message. Here: expiry and reminders, the rules, and concurrent
decisions. Forged and replayed links, looking without deciding and the inbox are in
test_approval_links.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import pytest

from tests.conftest import DATABASES
from tests.integration.expense_approvals import (
    JSON,
    LONG,
    SHORT,
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


# ------------------------------------------------------------------------- expiry and reminders


async def test_expiry_fails_approves_or_rejects_as_on_expiry_says(approvals: Approvals) -> None:
    seats = {"assignees": [unique("ann")], "groups": [unique("ops")], "rule": "All"}
    fail, approve, reject = await approvals.requests(
        ("quick-approval", {"on_expiry": "Fail", **seats}),
        ("quick-approval", {"on_expiry": "Approve", **seats}),
        ("quick-approval", {"on_expiry": "Reject", **seats}),
    )
    for request, policy in ((fail, "Fail"), (approve, "Approve"), (reject, "Reject")):
        assert request["onExpiry"] == policy
        expires = datetime.fromisoformat(request["expiresAt"])
        requested = datetime.fromisoformat(request["requestedAt"])
        assert expires - requested == timedelta(seconds=SHORT)

    # Fail: the step fails with States.Timeout, nothing catches it, the approval is EXPIRED.
    failed = await approvals.ended(fail["processId"], "FAILED", timeout=15)
    assert failed["error"] == "States.Timeout"
    assert "expired" in failed["cause"]
    kinds = await approvals.kinds(fail["processId"])
    assert "ApprovalExpired" in kinds and "ApprovalDecided" not in kinds
    assert kinds[-1] == "ProcessFailed"
    assert (await approvals.approval(fail["approvalId"]))["status"] == "EXPIRED"

    # Approve: the process goes on with an APPROVED result that says it expired.
    succeeded = await approvals.ended(approve["processId"], "SUCCEEDED", timeout=15)
    result = succeeded["output"]["approval"]
    assert result["outcome"] == "APPROVED" and result["expired"] is True
    assert result["votes"] == [] and result["decidedBy"] is None
    announced = await approvals.announced(approve["correlationKey"])
    assert announced == {
        "type": "ExpenseApproved",
        "id": approve["correlationKey"],
        "outcome": "APPROVED",
        "expired": True,
    }
    assert (await approvals.approval(approve["approvalId"]))["status"] == "EXPIRED"

    # Reject: the step fails with Approval.Rejected, which the Catch routes.
    caught = await approvals.ended(reject["processId"], "SUCCEEDED", timeout=15)
    assert caught["output"]["rejection"]["Error"] == "Approval.Rejected"
    assert "approval" not in caught["output"]
    announced = await approvals.announced(reject["correlationKey"])
    assert announced["type"] == "ExpenseRejected"
    assert announced["error"] == "Approval.Rejected"
    assert "expired" in announced["cause"]
    assert (await approvals.approval(reject["approvalId"]))["status"] == "EXPIRED"

    # An expired approval's links decide nothing any more.
    for request in (fail, approve, reject):
        status, body = await approvals.decide(request["approveUrl"])
        assert status == 409, body
        assert (await approvals.approval(request["approvalId"]))["votes"] == []
    await approvals.no_more_announcements(approve["correlationKey"], wait=0.2)
    await approvals.no_more_announcements(reject["correlationKey"], wait=0.2)


async def test_a_reminder_names_the_pending_seats_before_the_approval_expires(
    approvals: Approvals,
) -> None:
    ann, bob, ops = unique("ann"), unique("bob"), unique("ops")
    pending, decided = await approvals.requests(
        (
            "reminded-approval",
            {"assignees": [ann, bob], "groups": [ops], "rule": "All", "remind": [3]},
        ),
        # Its reminder would be due in three seconds, but it is decided before that.
        ("expense-approval", {"assignees": [ann], "remind": [LONG - 3]}),
    )
    links = approvals.links(pending)
    status, body = await approvals.decide(links[f"user:{ann}"]["approveUrl"])
    assert status == 200, body
    status, body = await approvals.decide(approvals.links(decided)[f"user:{ann}"]["approveUrl"])
    assert status == 200, body

    reminder, record = await approvals.bridge.next_message(
        "bridge.approvals",
        lambda v: v.get("type") == "ApprovalReminder" and v["processId"] == pending["processId"],
    )
    assert dict(record.headers)["ce_type"] == b"bridge.ApprovalReminder"
    assert reminder["pending"] == [f"user:{bob}", f"group:{ops}"]
    assert reminder["definition"] == "reminded-approval"
    assert reminder["state"] == "Approve"
    assert reminder["expiresAt"] == pending["expiresAt"]
    reminded_at = datetime.fromisoformat(reminder["remindedAt"])
    expires_at = datetime.fromisoformat(pending["expiresAt"])
    assert reminded_at < expires_at
    assert expires_at - reminded_at <= timedelta(seconds=3)
    # Sent before the expiry: the approval was still open when the reminder went out.
    history = await approvals.history(pending["processId"])
    reminded = [e for e in history if e["type"] == "ApprovalReminded"]
    assert len(reminded) == 1
    assert reminded[0]["details"]["pending"] == [f"user:{bob}", f"group:{ops}"]

    await approvals.ended(pending["processId"], "FAILED", timeout=15)
    kinds = await approvals.kinds(pending["processId"])
    assert kinds.index("ApprovalReminded") < kinds.index("ApprovalExpired")

    # One reminder per RemindBeforeSeconds; none for the approval decided before it was due.
    await approvals.bridge.until_published()
    for process in (pending, decided):
        with pytest.raises(AssertionError, match="no matching message"):
            await approvals.bridge.next_message(
                "bridge.approvals",
                lambda v, p=process: (
                    v.get("type") == "ApprovalReminder" and v["processId"] == p["processId"]
                ),
                timeout=0.3,
            )
    assert "ApprovalReminded" not in await approvals.kinds(decided["processId"])


# ------------------------------------------------------------------------- quorum rules


async def test_any_the_first_vote_decides(approvals: Approvals) -> None:
    ann, bob, ops = unique("ann"), unique("bob"), unique("ops")
    seats = {"assignees": [ann, bob], "groups": [ops], "rule": "Any"}
    rejected, approved = await approvals.requests(
        ("expense-approval", seats), ("expense-approval", seats)
    )

    links = approvals.links(rejected)
    status, body = await approvals.decide(
        links[f"user:{bob}"]["rejectUrl"], decidedBy="Bob B.", comment="not this quarter"
    )
    assert status == 200 and body["status"] == "rejected", body
    assert body["seat"] == f"user:{bob}" and body["approvalId"] == rejected["approvalId"]
    announced = await approvals.announced(rejected["correlationKey"])
    assert announced["type"] == "ExpenseRejected"
    # A user's link decides as that user, whatever name the request gives.
    assert announced["cause"] == f"Rejected by {bob}: not this quarter"
    status, _ = await approvals.decide(links[f"user:{ann}"]["approveUrl"])
    assert status == 409
    found = await approvals.approval(rejected["approvalId"])
    assert found["status"] == "REJECTED"
    assert [(v["seat"], v["decision"], v["by"], v["comment"]) for v in found["votes"]] == [
        (f"user:{bob}", "reject", bob, "not this quarter")
    ]

    links = approvals.links(approved)
    status, _ = await approvals.decide(links[f"group:{ops}"]["approveUrl"], decidedBy="Olga")
    assert status == 200
    process = await approvals.ended(approved["processId"], "SUCCEEDED")
    result = process["output"]["approval"]
    assert result["outcome"] == "APPROVED" and result["expired"] is False
    # A group's link says nothing of who holds it: the name given is kept, as unverified.
    assert result["rule"] == "Any" and result["decidedBy"] == "Olga (unverified)"
    assert [(v["seat"], v["decision"]) for v in result["votes"]] == [(f"group:{ops}", "approve")]
    assert (await approvals.announced(approved["correlationKey"]))["outcome"] == "APPROVED"


async def test_all_one_rejection_rejects_and_all_approvals_approve(approvals: Approvals) -> None:
    ann, bob, ops = unique("ann"), unique("bob"), unique("ops")
    seats = {"assignees": [ann, bob], "groups": [ops], "rule": "All"}
    everyone, vetoed = await approvals.requests(
        ("expense-approval", seats), ("expense-approval", seats)
    )

    links = approvals.links(everyone)
    for seat in (f"user:{bob}", f"group:{ops}"):
        status, _ = await approvals.decide(links[seat]["approveUrl"], comment=f"ok from {seat}")
        assert status == 200
        found = await approvals.approval(everyone["approvalId"])
        assert found["status"] == "PENDING"
    assert found["pending"] == [f"user:{ann}"]
    process = await approvals.process(everyone["processId"])
    assert process["status"] == "RUNNING" and process["currentState"] == "Approve"
    # The same decision through the body of the other link counts for the link's seat.
    status, body = await approvals.decide(links[f"user:{ann}"]["rejectUrl"], "approve")
    assert status == 200 and body["status"] == "approved"
    process = await approvals.ended(everyone["processId"], "SUCCEEDED")
    result = process["output"]["approval"]
    assert result["outcome"] == "APPROVED" and result["rule"] == "All"
    assert [(v["seat"], v["decision"]) for v in result["votes"]] == [
        (f"user:{bob}", "approve"),
        (f"group:{ops}", "approve"),
        (f"user:{ann}", "approve"),
    ]
    assert [c["seat"] for c in result["comments"]] == [f"user:{bob}", f"group:{ops}"]
    found = await approvals.approval(everyone["approvalId"])
    assert found["status"] == "APPROVED" and found["pending"] == []
    assert [v["seat"] for v in found["votes"]] == [v["seat"] for v in result["votes"]]

    links = approvals.links(vetoed)
    status, _ = await approvals.decide(links[f"user:{ann}"]["approveUrl"])
    assert status == 200
    status, _ = await approvals.decide(links[f"user:{bob}"]["rejectUrl"], comment="no budget")
    assert status == 200
    announced = await approvals.announced(vetoed["correlationKey"])
    assert announced["type"] == "ExpenseRejected" and announced["cause"].endswith("no budget")
    found = await approvals.approval(vetoed["approvalId"])
    assert found["status"] == "REJECTED" and found["pending"] == [f"group:{ops}"]
    status, _ = await approvals.decide(links[f"group:{ops}"]["approveUrl"])
    assert status == 409
    assert len((await approvals.approval(vetoed["approvalId"]))["votes"]) == 2


async def test_two_of_three_approvals_approve_and_two_rejections_reject(
    approvals: Approvals,
) -> None:
    ann, bob, ops = unique("ann"), unique("bob"), unique("ops")
    seats = {"assignees": [ann, bob], "groups": [ops], "rule": 2}
    two_yes, two_no, split = await approvals.requests(*[("expense-approval", seats)] * 3)

    links = approvals.links(two_yes)
    assert (await approvals.decide(links[f"user:{ann}"]["approveUrl"]))[0] == 200
    assert (await approvals.approval(two_yes["approvalId"]))["status"] == "PENDING"
    assert (await approvals.decide(links[f"group:{ops}"]["approveUrl"]))[0] == 200
    process = await approvals.ended(two_yes["processId"], "SUCCEEDED")
    result = process["output"]["approval"]
    assert result["outcome"] == "APPROVED" and result["rule"] == 2
    assert [v["seat"] for v in result["votes"]] == [f"user:{ann}", f"group:{ops}"]
    assert (await approvals.decide(links[f"user:{bob}"]["rejectUrl"]))[0] == 409

    links = approvals.links(two_no)
    assert (await approvals.decide(links[f"user:{bob}"]["rejectUrl"]))[0] == 200
    assert (await approvals.approval(two_no["approvalId"]))["status"] == "PENDING"
    assert (await approvals.decide(links[f"group:{ops}"]["rejectUrl"]))[0] == 200
    assert (await approvals.announced(two_no["correlationKey"]))["type"] == "ExpenseRejected"
    found = await approvals.approval(two_no["approvalId"])
    assert found["status"] == "REJECTED" and found["pending"] == [f"user:{ann}"]

    # One approval and one rejection leave it open; the third vote decides.
    links = approvals.links(split)
    assert (await approvals.decide(links[f"user:{ann}"]["rejectUrl"]))[0] == 200
    assert (await approvals.decide(links[f"user:{bob}"]["approveUrl"]))[0] == 200
    assert (await approvals.approval(split["approvalId"]))["status"] == "PENDING"
    assert (await approvals.decide(links[f"group:{ops}"]["approveUrl"]))[0] == 200
    process = await approvals.ended(split["processId"], "SUCCEEDED")
    assert [(v["seat"], v["decision"]) for v in process["output"]["approval"]["votes"]] == [
        (f"user:{ann}", "reject"),
        (f"user:{bob}", "approve"),
        (f"group:{ops}", "approve"),
    ]


async def test_each_seat_counts_once(approvals: Approvals) -> None:
    ann, bob = unique("ann"), unique("bob")
    request = await approvals.request(assignees=[ann, bob], rule="All")
    links = approvals.links(request)
    status, _ = await approvals.decide(links[f"user:{ann}"]["approveUrl"], decidedBy="Ann")
    assert status == 200
    before = await approvals.approval(request["approvalId"])
    history_before = await approvals.history(request["processId"])

    for url, decision in (
        (links[f"user:{ann}"]["approveUrl"], None),
        (links[f"user:{ann}"]["rejectUrl"], None),
        (links[f"user:{ann}"]["approveUrl"], "reject"),
    ):
        status, body = await approvals.decide(url, decision, decidedBy="Mallory")
        assert status == 409, body
        assert "already decided" in body["detail"]

    after = await approvals.approval(request["approvalId"])
    assert after == before
    assert after["status"] == "PENDING" and after["pending"] == [f"user:{bob}"]
    process = await approvals.process(request["processId"])
    assert process["status"] == "RUNNING"
    history = await approvals.history(request["processId"])
    added = history[len(history_before) :]
    assert [entry["type"] for entry in added] == ["ApprovalAttemptRefused"] * 3
    assert {entry["details"]["seat"] for entry in added} == {f"user:{ann}"}
    assert {entry["details"]["by"] for entry in added} == {ann}

    status, _ = await approvals.decide(links[f"user:{bob}"]["approveUrl"])
    assert status == 200
    process = await approvals.ended(request["processId"], "SUCCEEDED")
    assert [v["by"] for v in process["output"]["approval"]["votes"]] == [ann, bob]


# ------------------------------------------------------------------------- concurrency


async def _exactly_once(
    approvals: Approvals, request: dict[str, JSON], results: list[tuple[int, JSON]], seats: int
) -> None:
    statuses = sorted(status for status, _ in results)
    assert statuses == [200] * seats + [409] * (len(results) - seats), statuses
    winners = [body["seat"] for status, body in results if status == 200]
    assert sorted(winners) == sorted(request_seat["seat"] for request_seat in request["links"])

    process = await approvals.ended(request["processId"], "SUCCEEDED")
    assert len(process["output"]["approval"]["votes"]) == seats
    announced = await approvals.announced(request["correlationKey"])
    assert announced["outcome"] == "APPROVED"
    await approvals.no_more_announcements(request["correlationKey"])
    kinds = await approvals.kinds(request["processId"])
    assert kinds.count("ProcessSucceeded") == 1
    assert kinds.count("ApprovalDecided") == 1
    assert kinds.count("ApprovalVoted") == seats
    assert kinds.count("CommandEmitted") == 1
    assert kinds.count("ApprovalAttemptRefused") == len(results) - seats
    found = await approvals.approval(request["approvalId"])
    assert found["status"] == "APPROVED" and len(found["votes"]) == seats


async def test_fifty_concurrent_posts_of_one_link_decide_once(approvals: Approvals) -> None:
    ann = unique("ann")
    request = await approvals.request(assignees=[ann])
    url = request["approveUrl"]
    results = await asyncio.gather(*(approvals.decide(url) for _ in range(50)))
    await _exactly_once(approvals, request, list(results), seats=1)


async def test_fifty_concurrent_posts_across_seats_count_each_seat_once(
    approvals: Approvals,
) -> None:
    names = [unique(f"u{i}") for i in range(5)]
    request = await approvals.request(assignees=names, rule="All")
    links = approvals.links(request)
    # Ten posts per seat: the approve link with an empty body, the reject link saying approve.
    urls = [
        links[f"user:{name}"]["approveUrl" if i % 2 else "rejectUrl"]
        for i in range(10)
        for name in names
    ]
    results = await asyncio.gather(
        *(
            approvals.decide(url, None if "/approve/" in url else "approve", decidedBy=f"p{i}")
            for i, url in enumerate(urls)
        )
    )
    await _exactly_once(approvals, request, list(results), seats=5)
