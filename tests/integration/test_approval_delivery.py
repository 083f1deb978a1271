"""Approval notices end to end, on SQLite and PostgreSQL: a real SMTP server (aiosmtpd) and a
webhook receiver started in the test, a bridge with a real broker.

A request mails each seat its own links and posts a Slack-shaped message; a reminder mails fresh
links while the old ones still work; the outcome is mailed, and so is a close when the process
stops first; a refused try is retried and then sent; what fails for good is in the history, the
metrics and the dead-letter topic, and no link token (nor, once sent, a webhook's secret URL) is
stored in clear anywhere.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from bridge.store.schema import deliveries
from tests.integration.harness import Bridge, running_bridge
from tests.integration.mailbox import Hooks, Mailbox, smtp_server, webhook_receiver

pytestmark = pytest.mark.integration


def definition(hook_url: str) -> dict[str, Any]:
    return {
        "StartAt": "Approve",
        "States": {
            "Approve": {
                "Type": "Task",
                "Resource": "bridge:approval",
                "Parameters": {
                    "Title.$": "States.Format('Expense {}', $.id)",
                    "Data.$": "$",
                    "Assignees": ["ann", "bob"],
                    "Rule": "All",
                    "RemindBeforeSeconds.$": "$.remind",
                    "Notify": {
                        "Email": {"To.$": "$.emails"},
                        "Webhook": {"Url": hook_url, "Format": "slack"},
                    },
                },
                "TimeoutSeconds": 60,
                "ResultPath": "$.approval",
                "End": True,
            }
        },
    }


@asynccontextmanager
async def delivering(
    database_url: str,
    kafka: str,
    tmp_path: Path,
    document: Callable[[str], dict[str, Any]] = definition,
    *,
    global_hook: bool = False,
    **overrides: Any,
) -> AsyncIterator[tuple[Bridge, Mailbox, Hooks]]:
    """A bridge that mails through a test SMTP server and may post to a test webhook receiver,
    running ``document(webhook URL)`` as the definition ``expense``; ``global_hook``: the
    receiver is also told of every approval (BRIDGE_NOTIFY_WEBHOOK_URLS, JSON bodies)."""
    async with smtp_server() as mailbox, webhook_receiver() as hooks:
        folder = tmp_path / "definitions"
        folder.mkdir()
        (folder / "expense.asl.json").write_text(json.dumps(document(hooks.url)))
        settings: dict[str, Any] = {
            "smtp_host": "127.0.0.1",
            "smtp_port": mailbox.port,
            "smtp_security": "none",
            "smtp_from": "bridge@bridge.test",
            "smtp_timeout_seconds": 3,
            "delivery_backoff_seconds": 0.2,
            "delivery_max_attempts": 3,
            "http_allowed_hosts": ["127.0.0.1"],
            # The test broker holds a group join for half the session: 1 s rather than 5 s.
            "kafka_session_timeout_ms": 2000,
        }
        if global_hook:
            settings["notify_webhook_urls"] = [hooks.url]
        settings.update(overrides)
        async with running_bridge(
            database_url, kafka, tmp_path, definitions=folder, **settings
        ) as bridge:
            yield bridge, mailbox, hooks


async def start(bridge: Bridge, key: str, emails: dict[str, Any], remind: int = 1) -> str:
    status, body = await bridge.post(
        "/processes",
        {
            "definition": "expense",
            "correlationKey": key,
            "input": {"id": key, "emails": emails, "remind": [remind]},
        },
    )
    assert status == 201, body
    return str(body["id"])


async def history(bridge: Bridge, process_id: str) -> list[dict[str, Any]]:
    status, body = await bridge.get(f"/processes/{process_id}/history")
    assert status == 200
    return list(body["items"])


async def entries_of(
    bridge: Bridge, process_id: str, kind: str, count: int, timeout: float = 20.0
) -> list[dict[str, Any]]:
    """The details of the history entries of ``kind``, once there are ``count`` of them (a
    delivery is recorded just after it was received)."""
    deadline = time.monotonic() + timeout
    while True:
        found = [e["details"] for e in await history(bridge, process_id) if e["type"] == kind]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.05)


async def test_mails_and_webhooks_reach_people_and_reminders_bring_fresh_links(
    database_url: str, kafka: str, tmp_path: Path
) -> None:
    # A reminder 59 s before the 60 s deadline: a second after the request.
    async with delivering(database_url, kafka, tmp_path) as (bridge, mailbox, hooks):
        emails = {"ann": "ann@example.com", "bob": "bob@example.com"}
        process_id = await start(bridge, "x-1", emails, remind=59)

        requests = await mailbox.wait_for(lambda m: "requested" in m.message["Subject"], 2)
        by_address = {mail.to[0]: mail for mail in requests}
        assert set(by_address) == {"ann@example.com", "bob@example.com"}
        ann = by_address["ann@example.com"]
        assert ann.message["Subject"] == "Approval requested: Expense x-1"
        assert ann.message["From"] == "bridge@bridge.test"
        assert ann.message["Message-ID"] == f"<{ann.message['X-Bridge-Delivery-Id']}@bridge.test>"
        assert "For user:ann" in ann.text and "user:bob" not in ann.text
        assert ann.links("approve")[0] in ann.html
        # Each seat gets its own links.
        assert set(ann.links("approve")).isdisjoint(by_address["bob@example.com"].links("approve"))

        (headers, slack), *_ = await hooks.wait_for(lambda body: "Expense x-1" in body["text"])
        assert headers["X-Bridge-Delivery-Id"] == headers["Idempotency-Key"]
        assert slack["text"] == "Approval requested: Expense x-1"
        buttons = [e for b in slack["blocks"] if b["type"] == "actions" for e in b["elements"]]
        assert [b["text"]["text"] for b in buttons] == [
            "Approve (user:ann)",
            "Reject (user:ann)",
            "Approve (user:bob)",
            "Reject (user:bob)",
        ]

        reminders = await mailbox.wait_for(lambda m: "Reminder" in m.message["Subject"], 2)
        bob_reminder = next(m for m in reminders if m.to == ["bob@example.com"])
        fresh = bob_reminder.links("approve")[0]
        assert fresh not in by_address["bob@example.com"].text
        # The old link of ann and the fresh link of bob both decide.
        status, _ = await bridge.post(ann.links("approve")[0], {"decidedBy": "ann"})
        assert status == 200
        status, _ = await bridge.post(fresh, {"decidedBy": "bob"})
        assert status == 200
        process = await bridge.process_for("x-1", "SUCCEEDED")
        assert process["output"]["approval"]["outcome"] == "APPROVED"

        decided = await mailbox.wait_for(lambda m: m.message["Subject"].startswith("Approved"), 2)
        assert not decided[0].links("approve")
        await hooks.wait_for(lambda body: body["text"].startswith("Approved"))

        # 2 requests, 2 reminders and 2 outcomes by mail; 3 webhook posts.
        sent = await entries_of(bridge, process_id, "NotificationSent", 9)
        assert len(sent) == 9
        webhook = next(e for e in sent if e["channel"] == "webhook")
        assert webhook["to"] == "http://127.0.0.1/…"  # the secret path is not kept

        status, metrics = await bridge.get("/metrics")
        assert 'bridge_deliveries_total{channel="email",result="sent"}' in metrics

        # No link token at rest: the deliveries hold seats, the links only hashes.
        tokens = [link.rsplit("/", 1)[1] for m in mailbox.mails for link in LINKS(m)]
        async with bridge.core.db.connect() as conn:
            rows = (await conn.execute(select(deliveries))).all()
        assert rows and all(row.done_at is not None for row in rows)
        stored = repr(rows)
        assert not any(token in stored for token in tokens)
        # Nor the webhook's secret path, once its deliveries are done.
        assert "/hook/T000/B000/secret" in hooks.url and "T000" not in stored
        assert {row.recipient for row in rows if row.channel == "webhook"} == {"http://127.0.0.1/…"}


async def test_a_stop_tells_the_people_asked_that_the_approval_is_closed(
    database_url: str, kafka: str, tmp_path: Path
) -> None:
    async with delivering(database_url, kafka, tmp_path) as (bridge, mailbox, hooks):
        emails = {"ann": "ann@example.com", "bob": "bob@example.com"}
        process_id = await start(bridge, "x-2", emails, remind=1)
        requests = await mailbox.wait_for(lambda m: "requested" in m.message["Subject"], 2)
        status, _ = await bridge.post(f"/processes/{process_id}/stop", {"cause": "withdrawn"})
        assert status == 200

        closed = await mailbox.wait_for(lambda m: m.message["Subject"].startswith("Closed"), 2)
        assert {mail.to[0] for mail in closed} == {"ann@example.com", "bob@example.com"}
        assert all(m.message["Subject"] == "Closed: Expense x-2" for m in closed)
        assert not any(LINKS(m) for m in closed)
        await hooks.wait_for(lambda body: body["text"] == "Closed: Expense x-2")
        # The links of the request no longer decide anything.
        status, _ = await bridge.post(requests[0].links("approve")[0], {"decidedBy": "ann"})
        assert status in (404, 409, 410)


def LINKS(mail: Any) -> list[str]:
    return [*mail.links("approve"), *mail.links("reject")]


@pytest.mark.sqlite_only
async def test_a_refused_try_is_retried_and_what_fails_for_good_is_recorded(
    database_url: str, kafka: str, tmp_path: Path
) -> None:
    async with delivering(database_url, kafka, tmp_path) as (bridge, mailbox, hooks):
        mailbox.refuse = ["451 4.3.0 try again later"]
        mailbox.refuse_rcpt = {"gone@example.com": "550 5.1.1 no such user"}
        hooks.fail = [503]
        emails = {
            "ann": "ann@example.com",
            "bob": ["gone@example.com", "evil@example.com\r\nBcc: all@example.com"],
        }
        process_id = await start(bridge, "x-2", emails, remind=1)
        # ann's mail: refused once, then sent; the webhook: 503 once, then posted.
        await mailbox.wait_for(lambda m: m.to == ["ann@example.com"])
        await hooks.wait_for(lambda body: "Expense x-2" in body["text"])
        assert mailbox.tries >= 2

        dead = []
        for _ in range(2):
            letter, _ = await bridge.next_message(
                bridge.settings.kafka_dlq_topic,
                lambda v: v.get("event", {}).get("processId") == process_id,
            )
            dead.append(letter)
        reasons = sorted(letter["reason"] for letter in dead)
        assert "is not an e-mail address" in reasons[0] + reasons[1]
        assert any("550" in reason for reason in reasons)

        failed = await entries_of(bridge, process_id, "NotificationFailed", 2)
        assert len(failed) == 2 and all(f["channel"] == "email" for f in failed)
        sent = await entries_of(bridge, process_id, "NotificationSent", 2)
        assert {s["channel"] for s in sent} == {"email", "webhook"}
        assert any(s["attempts"] == 2 for s in sent)

        _, metrics = await bridge.get("/metrics")
        assert 'bridge_deliveries_total{channel="email",result="retried"} 1.0' in metrics
        assert 'bridge_deliveries_total{channel="email",result="failed"} 2.0' in metrics
        assert 'bridge_deliveries_total{channel="webhook",result="retried"} 1.0' in metrics
        # The process waits on, unharmed.
        assert (await bridge.process_for("x-2"))["status"] == "RUNNING"


@pytest.mark.sqlite_only
async def test_a_seat_delegated_to_an_address_mails_the_delegate_its_links(
    database_url: str, kafka: str, tmp_path: Path
) -> None:
    async with delivering(database_url, kafka, tmp_path) as (bridge, mailbox, hooks):
        emails = {"ann": "ann@example.com", "bob": "bob@example.com"}
        process_id = await start(bridge, "x-deleg", emails, remind=1)
        await mailbox.wait_for(lambda m: "requested" in m.message["Subject"], 2)
        status, approvals = await bridge.get("/approvals?definition=expense")
        assert status == 200
        approval_id = next(a["id"] for a in approvals["items"] if a["processId"] == process_id)
        status, body = await bridge.post(
            f"/approvals/{approval_id}/seats/user:ann/delegate", {"to": "carl@example.com"}
        )
        assert status == 200, body
        [handed] = await mailbox.wait_for(lambda m: m.to == ["carl@example.com"], 1)
        assert handed.message["Subject"] == "Approval handed to you: Expense x-deleg"
        # Carl's link decides ann's seat, as carl.
        status, _ = await bridge.post(handed.links("approve")[0], {})
        assert status == 200
        status, found = await bridge.get(f"/approvals/{approval_id}")
        assert [(v["seat"], v["by"]) for v in found["votes"]] == [("user:ann", "carl@example.com")]
        assert await hooks.wait_for(lambda body: "handed" in body["text"].lower())
