"""Human approvals end to end: a real broker, SQLite and PostgreSQL, HTTP links and the inbox.

Processes are started by events; a ``bridge:approval`` step asks its seats (assignees and groups),
the ``Rule`` adds their votes up, ``OnExpiry`` says what an expiry means, reminders go out on the
approvals topic, and the outcome is announced with a fire-and-forget send (approved) or, through a
Catch of ``Approval.Rejected``, a rejection message.

One bridge per database serves every test (a bridge takes seconds to join its consumer group);
every test uses its own correlation keys and seat names.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import yaml
from sqlalchemy import insert, select, update

from bridge.store.database import reading
from bridge.store.schema import approvals as approvals_table
from bridge.store.schema import processes
from tests.conftest import create_postgres_database, drop_postgres_database
from tests.integration.harness import Bridge, running_bridge

pytestmark = pytest.mark.integration

JSON = Any
LONG = 3600
SHORT = 2


def approval_definition(suffix: str, event_type: str, timeout: int) -> dict[str, JSON]:
    """Started by ``event_type`` on ``requests.<suffix>``; the approval's parameters come from
    the event; the outcome is announced on ``done.<suffix>``."""
    done = f"done.{suffix}"
    return {
        "Comment": "An approval with seats, a rule, an expiry policy and reminders.",
        "Triggers": [
            {
                "Topic": f"requests.{suffix}",
                "EventType": event_type,
                "CorrelationKey": "$.id",
                "EventId": "$.eventId",
            }
        ],
        "StartAt": "Approve",
        "States": {
            "Approve": {
                "Type": "Task",
                "Resource": "bridge:approval",
                "Parameters": {
                    "Title.$": "States.Format('Expense {} of {}', $.id, $.amount)",
                    "Description": "An expense that needs a human decision.",
                    "Data": {"id.$": "$.id", "amount.$": "$.amount"},
                    "Assignees.$": "$.assignees",
                    "Groups.$": "$.groups",
                    "Rule.$": "$.rule",
                    "OnExpiry.$": "$.onExpiry",
                    "RemindBeforeSeconds.$": "$.remind",
                },
                "TimeoutSeconds": timeout,
                "ResultPath": "$.approval",
                "Catch": [
                    {
                        "ErrorEquals": ["Approval.Rejected"],
                        "ResultPath": "$.rejection",
                        "Next": "AnnounceRejected",
                    }
                ],
                "Next": "AnnounceApproved",
            },
            "AnnounceApproved": {
                "Type": "Task",
                "Resource": "bridge:kafka:send",
                "Parameters": {
                    "Topic": done,
                    "Key.$": "$.id",
                    "Message": {
                        "type": "ExpenseApproved",
                        "id.$": "$.id",
                        "outcome.$": "$.approval.outcome",
                        "expired.$": "$.approval.expired",
                    },
                },
                "ResultPath": "$.announced",
                "End": True,
            },
            "AnnounceRejected": {
                "Type": "Task",
                "Resource": "bridge:kafka:send",
                "Parameters": {
                    "Topic": done,
                    "Key.$": "$.id",
                    "Message": {
                        "type": "ExpenseRejected",
                        "id.$": "$.id",
                        "error.$": "$.rejection.Error",
                        "cause.$": "$.rejection.Cause",
                    },
                },
                "ResultPath": "$.announced",
                "End": True,
            },
        },
    }


#: Definition name -> (event type, TimeoutSeconds).
DEFINITIONS = {
    "expense-approval": ("ExpenseSubmitted", LONG),
    "quick-approval": ("QuickExpenseSubmitted", SHORT),
    "purchase-approval": ("PurchaseSubmitted", LONG),
}
EVENT_TYPE = {name: event_type for name, (event_type, _) in DEFINITIONS.items()}


def write_definitions(folder: Path, suffix: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, (event_type, timeout) in DEFINITIONS.items():
        document = approval_definition(suffix, event_type, timeout)
        (folder / f"{name}.asl.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    return folder


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def eventually(
    check: Callable[[], Awaitable[bool]], timeout: float, describe: Callable[[], str]
) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(describe())
        await asyncio.sleep(0.05)


class Approvals:
    """Starting approval processes on one bridge and deciding, viewing and inspecting them."""

    def __init__(self, bridge: Bridge, suffix: str) -> None:
        self.bridge = bridge
        self.suffix = suffix

    async def request(self, definition: str = "expense-approval", **spec: JSON) -> dict[str, JSON]:
        """Start a process by its event; the ApprovalRequested message it publishes."""
        (request,) = await self.requests((definition, spec))
        return request

    async def requests(self, *specs: tuple[str, dict[str, JSON]]) -> list[dict[str, JSON]]:
        """Start one process per (definition, parameters) at once; their approval requests.

        The events go out together; the requests are read one after the other, as the harness's
        consumers are not meant for concurrent readers."""
        keys = [await self.start(definition, **spec) for definition, spec in specs]
        found = []
        for key, (definition, _) in zip(keys, specs, strict=True):
            request, record = await self.bridge.next_message(
                "bridge.approvals",
                lambda v, key=key: (
                    v.get("type") == "ApprovalRequested" and v.get("correlationKey") == key
                ),
            )
            assert dict(record.headers)["ce_type"] == b"bridge.ApprovalRequested"
            assert request["definition"] == definition
            found.append(request)
        return found

    async def start(
        self,
        definition: str,
        *,
        assignees: list[str] | None = None,
        groups: list[str] | None = None,
        rule: str | int = "Any",
        on_expiry: str = "Fail",
        remind: list[int] | None = None,
        amount: int = 120,
    ) -> str:
        key = unique("x")
        await self.bridge.publish(
            f"requests.{self.suffix}",
            {
                "type": EVENT_TYPE[definition],
                "eventId": unique("e"),
                "id": key,
                "amount": amount,
                "assignees": assignees or [],
                "groups": groups or [],
                "rule": rule,
                "onExpiry": on_expiry,
                "remind": remind or [],
            },
            key=key,
        )
        return key

    @staticmethod
    def links(request: dict[str, JSON]) -> dict[str, dict[str, JSON]]:
        return {link["seat"]: link for link in request["links"]}

    async def decide(self, url: str, decision: str | None = None, **extra: str) -> tuple[int, JSON]:
        body: dict[str, str] = dict(extra)
        if decision is not None:
            body["decision"] = decision
        return await self.bridge.post(url, body)

    async def approval(self, approval_id: str) -> dict[str, JSON]:
        status, body = await self.bridge.get(f"/approvals/{approval_id}")
        assert status == 200, body
        return dict(body)

    async def process(self, process_id: str) -> dict[str, JSON]:
        status, body = await self.bridge.get(f"/processes/{process_id}")
        assert status == 200, body
        return dict(body)

    async def ended(self, process_id: str, status: str, timeout: float = 20.0) -> dict[str, JSON]:
        found: dict[str, JSON] = {}

        async def ready() -> bool:
            found.update(await self.process(process_id))
            return found["status"] == status

        await eventually(ready, timeout, lambda: f"process {process_id} not {status}: {found}")
        return found

    async def row_version(self, process_id: str) -> int:
        """The process row's version: bumped by every write of the process."""
        async with reading(self.bridge.core.db) as conn:
            found = await conn.scalar(
                select(processes.c.row_version).where(processes.c.id == process_id)
            )
        assert found is not None
        return int(found)

    async def history(self, process_id: str) -> list[dict[str, JSON]]:
        status, body = await self.bridge.get(f"/processes/{process_id}/history")
        assert status == 200, body
        return list(body["items"])

    async def kinds(self, process_id: str) -> list[str]:
        return [entry["type"] for entry in await self.history(process_id)]

    async def announced(self, key: str, timeout: float = 20.0) -> dict[str, JSON]:
        value, _ = await self.bridge.next_message(
            f"done.{self.suffix}", lambda v: v.get("id") == key, timeout
        )
        return value

    async def no_more_announcements(self, key: str, wait: float = 0.5) -> None:
        with pytest.raises(AssertionError, match="no matching message"):
            await self.announced(key, timeout=wait)

    async def inbox(self, **query: str | int) -> list[dict[str, JSON]]:
        path = "/approvals?" + "&".join(f"{k}={quote(str(v))}" for k, v in query.items())
        status, body = await self.bridge.get(path)
        assert status == 200, body
        return list(body["items"])


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
async def approvals(
    request: pytest.FixtureRequest, kafka: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Approvals]:
    """One bridge (worker and web) per database running the definitions above."""
    tmp_path = tmp_path_factory.mktemp("approvals")
    if request.param == "sqlite":
        database_url = f"sqlite+aiosqlite:///{tmp_path}/bridge.db"
    else:
        database_url = await create_postgres_database()
    suffix = uuid.uuid4().hex[:8]
    folder = write_definitions(tmp_path / "definitions", suffix)
    try:
        async with running_bridge(
            database_url,
            kafka,
            tmp_path,
            definitions=folder,
            kafka_dlq_topic=f"dlq.{suffix}",
            kafka_lifecycle_topic=f"life.{suffix}",
        ) as bridge:
            assert bridge.core.problems == []
            yield Approvals(bridge, suffix)
    finally:
        if request.param == "postgres":
            await drop_postgres_database(database_url)


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
            "quick-approval",
            {"assignees": [ann, bob], "groups": [ops], "rule": "All", "remind": [1]},
        ),
        # Its reminder would be due in a second, but it is decided before that.
        ("expense-approval", {"assignees": [ann], "remind": [LONG - 1]}),
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
    assert reminder["definition"] == "quick-approval"
    assert reminder["state"] == "Approve"
    assert reminder["expiresAt"] == pending["expiresAt"]
    reminded_at = datetime.fromisoformat(reminder["remindedAt"])
    expires_at = datetime.fromisoformat(pending["expiresAt"])
    assert reminded_at < expires_at
    assert expires_at - reminded_at <= timedelta(seconds=1)
    # Sent before the expiry: the approval was still open when the reminder went out.
    history = await approvals.history(pending["processId"])
    reminded = [e for e in history if e["type"] == "ApprovalReminded"]
    assert len(reminded) == 1
    assert reminded[0]["details"]["pending"] == [f"user:{bob}", f"group:{ops}"]

    await approvals.ended(pending["processId"], "FAILED", timeout=15)
    kinds = await approvals.kinds(pending["processId"])
    assert kinds.index("ApprovalReminded") < kinds.index("ApprovalExpired")

    # One reminder per RemindBeforeSeconds; none for the approval decided before it was due.
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
