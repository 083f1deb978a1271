"""Retention: finished processes past their definition's retention are deleted with everything
that is theirs (history, task tokens, approvals and links), in batches; running processes,
and processes kept for good, stay. ``bridge purge --dry-run`` says what would go.

The clock is the test's: each purge is told what time it is.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import func, insert, select

from bridge.bootstrap import Core, open_core
from bridge.cli import main
from bridge.intake import CallbackReceived, StartRequested, StopRequested
from bridge.retention import Retention
from bridge.settings import Settings
from bridge.store import outbox
from bridge.store import processes as store
from bridge.store.database import reading
from bridge.store.schema import (
    approval_links,
    approvals,
    history,
    processes,
    task_tokens,
)

pytestmark = pytest.mark.integration

PASS = {"StartAt": "Done", "States": {"Done": {"Type": "Pass", "End": True}}}
ASKS = {
    "StartAt": "Ask",
    "States": {
        "Ask": {
            "Type": "Task",
            "Resource": "bridge:kafka:send.waitForTaskToken",
            "Parameters": {
                "Topic": "asks.commands",
                "Message": {"taskToken.$": "$$.Task.Token"},
            },
            "TimeoutSeconds": 3600,
            "Next": "Approve",
        },
        "Approve": {
            "Type": "Task",
            "Resource": "bridge:approval",
            "Parameters": {"Title": "Approve?"},
            "TimeoutSeconds": 3600,
            "End": True,
        },
    },
}
DEPENDENTS = (history, task_tokens, approvals)


@dataclass
class Rig:
    core: Core
    folder: Path

    async def start(self, definition: str, count: int = 1) -> list[str]:
        outcomes = await self.core.engine.apply(
            [StartRequested(definition, {"n": n}) for n in range(count)]
        )
        assert all(outcome.ok for outcome in outcomes), outcomes
        return [outcome.process_ids[0] for outcome in outcomes]

    async def status(self, process_id: str) -> str | None:
        async with reading(self.core.db) as conn:
            found = await store.get(conn, process_id)
        return None if found is None else found.status.value

    async def rows(self, table: Any, ids: list[str]) -> int:
        async with reading(self.core.db) as conn:
            column = table.c.process_id if table is not processes else table.c.id
            found = await conn.execute(select(func.count()).where(column.in_(ids)))
            return int(found.scalar_one())

    async def links(self, ids: list[str]) -> int:
        of = select(approvals.c.id).where(approvals.c.process_id.in_(ids))
        async with reading(self.core.db) as conn:
            found = await conn.execute(
                select(func.count()).where(approval_links.c.approval_id.in_(of))
            )
            return int(found.scalar_one())


@pytest.fixture
async def rig(database_url: str, tmp_path: Path) -> AsyncIterator[Rig]:
    documents = {
        "quick": PASS,
        "brief": {**PASS, "RetentionDays": 1},
        "forever": {**PASS, "RetentionDays": 0},
        "asks": ASKS,
    }
    for name, document in documents.items():
        (tmp_path / f"{name}.asl.json").write_text(json.dumps(document))
    settings = Settings(database_url=database_url, definitions_dir=tmp_path, retention_days=30)
    core = await open_core(settings)
    assert core.problems == []
    try:
        yield Rig(core, tmp_path)
    finally:
        await core.close()


def retention(rig: Rig, **kwargs: Any) -> Retention:
    return Retention(
        rig.core.db, rig.core.registry, 30, rig.core.engine.metrics, pause_seconds=0, **kwargs
    )


async def test_each_definition_keeps_its_finished_processes_as_long_as_it_says(rig: Rig) -> None:
    quick_ids = await rig.start("quick")
    brief_ids = await rig.start("brief")
    forever_ids = await rig.start("forever")
    now = datetime.now().astimezone()

    assert await retention(rig).purge(now + timedelta(hours=23)) == retention_nothing()
    assert await rig.status(brief_ids[0]) == "SUCCEEDED"

    purged = await retention(rig).purge(now + timedelta(days=2))
    assert purged.processes == {"brief": 1}
    assert await rig.status(brief_ids[0]) is None
    assert await rig.rows(history, brief_ids) == 0
    assert await rig.status(quick_ids[0]) == "SUCCEEDED"

    purged = await retention(rig).purge(now + timedelta(days=31))
    assert purged.processes == {"quick": 1}
    assert await rig.status(forever_ids[0]) == "SUCCEEDED"
    assert (await retention(rig).purge(now + timedelta(days=36_000))).total == 0


def retention_nothing() -> Any:
    from bridge.store.retention import Deleted

    return Deleted({}, 0)


async def test_a_stopped_process_goes_with_its_tokens_approvals_and_links(
    rig: Rig,
) -> None:
    asking = await rig.start("asks")
    # Answer the task so the process reaches its approval: it then has an approval with its
    # links and the approval's timer (in its state).
    async with reading(rig.core.db) as conn:
        (command,) = [m for m in await outbox.pending(conn) if m.topic == "asks.commands"]
    token = command.value["taskToken"]
    assert (await rig.core.engine.apply_one(CallbackReceived(token, "success", {}))).ok
    running = await rig.start("asks")
    # A token handed out before tokens named their wait has a row of its own.
    async with rig.core.db.begin() as conn:
        await conn.execute(
            insert(task_tokens),
            [
                {
                    "token_hash": f"{n}" * 64,
                    "process_id": process_id,
                    "wait_id": "w",
                    "state": "Ask",
                    "created_at": datetime.now().astimezone(),
                }
                for n, process_id in enumerate((asking[0], running[0]))
            ],
        )
    assert (await rig.core.engine.apply_one(StopRequested(asking[0]))).ok
    assert await rig.status(asking[0]) == "ABORTED"
    assert await rig.rows(task_tokens, asking) == 1
    assert await rig.rows(approvals, asking) == 1
    assert await rig.links(asking) > 0
    now = datetime.now().astimezone()

    purged = await retention(rig).purge(now + timedelta(days=31))

    assert purged.processes == {"asks": 1}
    for table in (processes, *DEPENDENTS):
        assert await rig.rows(table, asking) == 0, table.name
    assert await rig.links(asking) == 0
    # The running one is whole, however old.
    assert await rig.status(running[0]) == "RUNNING"
    assert await rig.rows(task_tokens, running) == 1
    async with reading(rig.core.db) as conn:
        state = await conn.scalar(select(processes.c.state).where(processes.c.id == running[0]))
    assert len(state["timers"]) == 1


async def test_deleting_goes_in_batches_and_counts_what_went(rig: Rig) -> None:
    await rig.start("brief", count=7)
    now = datetime.now().astimezone()

    purged = await retention(rig, batch_size=3).purge(now + timedelta(days=2))

    assert purged.processes == {"brief": 7}
    assert purged.history_chunks >= 7
    scrape = (await rig.core.engine.metrics.scrape(rig.core.db)).decode()
    assert 'bridge_retention_deleted_total{definition="brief"} 7.0' in scrape


async def test_two_purges_at_once_delete_each_process_once(rig: Rig) -> None:
    await rig.start("brief", count=20)
    now = datetime.now().astimezone() + timedelta(days=2)

    first, second = await asyncio.gather(
        retention(rig, batch_size=4).purge(now), retention(rig, batch_size=4).purge(now)
    )

    assert first.total + second.total == 20
    assert (await retention(rig).expired(now)) == []


async def test_purge_dry_run_says_what_would_go_and_deletes_nothing(rig: Rig) -> None:
    ids = await rig.start("quick", count=2)
    env = {
        "BRIDGE_DATABASE_URL": rig.core.settings.database_url,
        "BRIDGE_RETENTION_DAYS": "0",
    }
    runner = CliRunner()

    nothing = await asyncio.to_thread(runner.invoke, main, ["purge", "--dry-run"], env=env)
    assert nothing.exit_code == 0, nothing.output
    assert "would delete 0 process(es)" in nothing.output

    # A retention of one day, and the processes are two days old: move them back in time.
    async with rig.core.db.begin() as conn:
        await conn.execute(
            processes.update()
            .where(processes.c.id.in_(ids))
            .values(ended_at=datetime.now().astimezone() - timedelta(days=2))
        )
    env["BRIDGE_RETENTION_DAYS"] = "1"
    dry = await asyncio.to_thread(runner.invoke, main, ["purge", "--dry-run", "--json"], env=env)
    assert dry.exit_code == 0, dry.output
    (only,) = json.loads(dry.output)
    assert (only["definition"], only["processes"], only["retentionDays"]) == ("quick", 2, 1)
    assert await rig.status(ids[0]) == "SUCCEEDED"

    done = await asyncio.to_thread(runner.invoke, main, ["purge"], env=env)
    assert done.exit_code == 0, done.output
    assert "deleted 2 process(es)" in done.output
    assert await rig.status(ids[0]) is None


def test_purge_on_a_database_without_the_schema_says_to_upgrade(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/empty.db"
    result = CliRunner().invoke(main, ["purge", "--dry-run"], env={"BRIDGE_DATABASE_URL": url})
    assert result.exit_code == 1
    assert "run `bridge db upgrade` first" in result.output
