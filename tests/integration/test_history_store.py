"""The history in chunk rows: pages cut chunks where ``after_seq`` and ``limit`` fall, children
are found in any chunk, and a batch writes one row per process it touched. SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bridge.asl.effects import HistoryEntry
from bridge.bootstrap import open_core
from bridge.intake import StartRequested
from bridge.settings import Settings
from bridge.store import processes as store
from bridge.store.database import open_database, reading
from bridge.store.migrate import upgrade
from bridge.store.schema import history, processes
from tests.integration.rows import add_processes

pytestmark = pytest.mark.integration

T0 = datetime(2026, 12, 3, 10, 0, 0, 123456, tzinfo=UTC)
#: The chunks of process "p", one batch each: 1-3, 4-8, 9, 10-12.
BATCHES = [(1, 3), (4, 8), (9, 9), (10, 12)]
LAST = 12


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = open_database(database_url)
    try:
        await upgrade(engine)
        yield engine
    finally:
        await engine.dispose()


def _entry(seq: int, type_: str = "StateEntered", **details: Any) -> HistoryEntry:
    return HistoryEntry(T0 + timedelta(seconds=seq), type_, f"S{seq}", {"n": seq, **details})


async def _processes(db: AsyncEngine, *ids: str) -> None:
    await add_processes(db, T0, *ids)


async def _chunked_history(db: AsyncEngine) -> None:
    """Process "p" with the chunks of ``BATCHES``; "q" gets entries in the same batches."""
    await _processes(db, "p", "q")
    for number, (first, last) in enumerate(BATCHES, start=1):
        async with db.begin() as conn:
            rows = [("p", seq, _entry(seq)) for seq in range(first, last + 1)]
            await store.append_history(conn, [*rows, ("q", number, _entry(number))])


@pytest.mark.parametrize("group", [1, 2, 50])
async def test_every_page_holds_the_entries_after_after_seq_up_to_limit(
    db: AsyncEngine, group: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Small groups make a page read its chunks in several queries.
    monkeypatch.setattr(store, "HISTORY_GROUP", group)
    await _chunked_history(db)
    async with reading(db) as conn:
        chunk_rows = await conn.scalar(
            select(func.count()).select_from(history).where(history.c.process_id == "p")
        )
        assert chunk_rows == len(BATCHES)
        for after in range(LAST + 2):
            for limit in range(1, LAST + 2):
                page = await store.read_history(conn, "p", after_seq=after, limit=limit)
                expected = list(range(after + 1, min(LAST, after + limit) + 1))
                assert [entry["seq"] for entry in page] == expected, (after, limit)


async def test_a_page_cut_inside_chunks_keeps_each_entry_whole(db: AsyncEngine) -> None:
    await _chunked_history(db)
    async with reading(db) as conn:
        # 5 falls inside the chunk 4-8, and 4 entries later the page ends inside 10-12.
        page = await store.read_history(conn, "p", after_seq=5, limit=5)
        rest = await store.read_history(conn, "p", after_seq=page[-1]["seq"], limit=100)

    assert [entry["seq"] for entry in page] == [6, 7, 8, 9, 10]
    assert [entry["seq"] for entry in rest] == [11, 12]
    assert page[0] == {
        "seq": 6,
        "at": T0 + timedelta(seconds=6),
        "type": "StateEntered",
        "state": "S6",
        "details": {"n": 6},
    }


async def test_children_are_found_in_any_chunk_first_start_first(db: AsyncEngine) -> None:
    await _processes(db, "parent", "child-1")

    def started(seq: int, child: str) -> tuple[str, int, HistoryEntry]:
        details = {"processId": child, "definition": "kid", "version": 2, "sync": True}
        return ("parent", seq, HistoryEntry(T0, "ChildStarted", f"Start{seq}", details))

    async with db.begin() as conn:
        await store.append_history(
            conn, [("parent", 1, _entry(1, "ProcessStarted")), started(2, "child-2")]
        )
    async with db.begin() as conn:
        # The word in a value of another entry does not make it a child's start.
        mention = _entry(3, "TaskSucceeded", note="ChildStarted", processId="not-a-child")
        await store.append_history(
            conn, [("parent", 3, mention), started(4, "child-1"), started(5, "child-2")]
        )
    async with db.begin() as conn:
        await store.append_history(conn, [("parent", 6, _entry(6, "ProcessSucceeded"))])

    async with reading(db) as conn:
        children = await store.children_of(conn, "parent")
        none = await store.children_of(conn, "child-1")

    assert [(c["id"], c["state"], c["status"]) for c in children] == [
        ("child-2", "Start2", None),
        ("child-1", "Start4", "RUNNING"),
    ]
    assert children[1]["definition"] == "kid" and children[1]["version"] == 2
    assert children[1]["sync"] is True and children[1]["started_at"] == T0
    assert none == []


async def test_a_batch_writes_one_history_row_per_process(
    database_url: str, tmp_path: Path
) -> None:
    states: dict[str, Any] = {
        f"Step{n}": {"Type": "Pass", "Next": f"Step{n + 1}"} for n in range(4)
    }
    states["Step4"] = {"Type": "Succeed"}
    document = {"StartAt": "Step0", "States": states}
    (tmp_path / "five.asl.json").write_text(json.dumps(document))
    core = await open_core(Settings(database_url=database_url, definitions_dir=tmp_path))
    try:
        outcomes = await core.engine.apply([StartRequested("five", {"n": n}) for n in range(3)])
        assert all(outcome.ok for outcome in outcomes)
        async with reading(core.db) as conn:
            ids = list((await conn.execute(select(processes.c.id))).scalars())
            rows = await conn.scalar(select(func.count()).select_from(history))
            pages = [await store.read_history(conn, process_id) for process_id in ids]
    finally:
        await core.close()

    assert len(ids) == 3 and rows == 3
    for page in pages:
        assert [entry["seq"] for entry in page] == list(range(1, len(page) + 1))
        assert page[0]["type"] == "ProcessStarted" and page[-1]["type"] == "ProcessSucceeded"
        assert [e["state"] for e in page if e["type"] == "StateEntered"] == [
            f"Step{n}" for n in range(5)
        ]
