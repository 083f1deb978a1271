"""A worker killed between sending an approval notice and recording it: the next worker sends it
again, with the same delivery id, and the process records it sent once.

The worker runs as ``python -m bridge worker`` with ``BRIDGE_FAULT=after-delivery-before-mark``:
it claims the delivery, posts the webhook, and dies (as SIGKILL would) before the engine records
the send. The claim then runs out (the test moves its end to the past rather than wait the
lease, half a minute) and a second worker posts again: the same ``X-Bridge-Delivery-Id`` and
``Idempotency-Key``, which is what a receiver drops copies by. Nothing is lost; the copy is the
price of not losing it.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from bridge.bootstrap import open_core
from bridge.engine import StartRequested
from bridge.store.database import reading
from bridge.store.processes import read_history
from bridge.store.schema import deliveries
from tests.faults.workers import Workers, crash_settings, until
from tests.integration.mailbox import webhook_receiver

pytestmark = pytest.mark.integration


def definition(hook_url: str) -> dict[str, Any]:
    return {
        "StartAt": "Approve",
        "States": {
            "Approve": {
                "Type": "Task",
                "Resource": "bridge:approval",
                "Parameters": {
                    "Title": "Expense",
                    "Assignees": ["ann"],
                    "Notify": {"Webhook": {"Url": hook_url, "Format": "json"}, "On": ["Requested"]},
                },
                "TimeoutSeconds": 600,
                "End": True,
            }
        },
    }


@pytest.mark.timeout(120)
async def test_a_worker_killed_after_a_notice_sends_it_again_with_the_same_delivery_id(
    database_url: str, kafka: str, tmp_path: Path
) -> None:
    folder = tmp_path / "definitions"
    folder.mkdir()
    async with webhook_receiver() as hooks:
        (folder / "notify-once.asl.json").write_text(json.dumps(definition(hooks.url)))
        settings = crash_settings(database_url, kafka, folder, "delivery-crash")
        # Migrates and deploys; this process only starts the process and reads the database.
        core = await open_core(settings)
        workers = Workers(settings, tmp_path)

        async def delivery_row() -> Any:
            async with reading(core.db) as conn:
                return (await conn.execute(select(deliveries))).one()

        async def sent_entries() -> list[dict[str, Any]]:
            async with reading(core.db) as conn:
                entries = await read_history(conn, process_id)
            return [entry for entry in entries if entry["type"] == "NotificationSent"]

        try:
            victim = workers.start("after-delivery-before-mark")
            await victim.ready()
            started = await core.engine.apply_one(StartRequested("notify-once", {"id": "x-1"}))
            assert started.status == "applied", started
            process_id = started.process_ids[0]

            code = await victim.exited(timeout=30)
            assert code == 137, f"the worker did not die at the fault point:\n{victim.tail()}"
            assert "fault injected at after-delivery-before-mark" in victim.text()
            assert len(hooks.posts) == 1
            row = await delivery_row()
            assert row.done_at is None and row.attempts == 1

            # The dead worker's claim runs out.
            async with core.db.begin() as conn:
                past = datetime(2000, 1, 1, tzinfo=UTC)
                await conn.execute(update(deliveries).values(claimed_until=past))
            workers.start(None)

            async def posted_twice() -> bool:
                return len(hooks.posts) >= 2

            await until(posted_twice, 30, "the notice was not sent again")
            recorded = await until(sent_entries, 20, "the send was not recorded")
            (first_headers, first), (second_headers, second) = hooks.posts[:2]
            for name in ("X-Bridge-Delivery-Id", "Idempotency-Key"):
                assert first_headers[name] == second_headers[name] == row.id
            assert first["type"] == second["type"] == "bridge.ApprovalRequested"
            # Recorded once, after the second try; nothing more is sent.
            assert len(recorded) == 1
            row = await delivery_row()
            assert row.done_at is not None and row.attempts == 2
            await asyncio.sleep(1.5)
            assert len(hooks.posts) == 2
            assert len(await sent_entries()) == 1
            print(
                f"\nFAULTS approval notice, worker killed after the send "
                f"({database_url.split(':')[0]}): posts {len(hooks.posts)}, same delivery id, "
                f"recorded {len(recorded)}, attempts {row.attempts}"
            )
        finally:
            workers.kill_all()
            await core.close()
