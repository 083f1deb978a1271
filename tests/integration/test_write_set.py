"""A batch's closing writes in one statement (``bridge.store.write_set``): every part lands as
its own statements would have written it (text, NULLs, times, JSON), a failing part fails the
whole statement, nothing is written before ``flush``, and an update's guard counts the rows it
changed however it is sent. SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from bridge.asl.process import Process, ProcessStatus
from bridge.store import inbox, outbox, sql_text
from bridge.store.database import open_database, reading
from bridge.store.migrate import upgrade
from bridge.store.processes import (
    ConcurrentUpdate,
    insert_processes,
    load_for_update,
    update_processes,
)
from bridge.store.schema import inbox as inbox_table
from bridge.store.schema import outbox as outbox_table
from bridge.store.schema import process_search_attributes as attributes
from bridge.store.schema import processes as processes_table
from bridge.store.schema import task_tokens
from bridge.store.write_set import Delete, Insert, WriteSet
from tests.integration.rows import add_processes

pytestmark = pytest.mark.integration

T0 = datetime(2026, 12, 3, 10, 0, 0, 123456, tzinfo=UTC)

#: Rows to insert and delete by key, alongside the batch's own parts.
ADD = Insert(
    "process_search_attributes",
    (
        ("process_id", "varchar"),
        ("name", "varchar"),
        ("text_value", "text"),
        ("number_value", "float8"),
    ),
)
DROP = Delete("process_search_attributes", "name")
#: Rows with a time and a foreign key to ``processes``.
TOKEN = Insert(
    "task_tokens",
    (
        ("token_hash", "varchar"),
        ("process_id", "varchar"),
        ("wait_id", "varchar"),
        ("state", "varchar"),
        ("created_at", "timestamptz"),
    ),
)
NAMES = select(attributes.c.name).order_by(attributes.c.name)


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = open_database(database_url)
    try:
        await upgrade(engine)
        await add_processes(engine, T0, "p1", "p2")
        async with engine.begin() as conn:
            writes = WriteSet(conn)
            writes.insert(ADD, [("p1", "old", "x", None)])
            await writes.flush()
        yield engine
    finally:
        await engine.dispose()


async def test_every_part_lands_as_written_alone(db: AsyncEngine) -> None:
    message = {
        "message_id": "m1",
        "process_id": "p1",
        "topic": "t",
        "key": None,
        "value": {"deep": [1, "é", None]},
        "headers": {"h": "v"},
        "created_at": T0,
    }
    mark = {"key": "k1", "received_at": T0, "outcome": "started p1", "details": None}
    event_mark = {
        "key": "k2",
        "received_at": T0,
        "outcome": "started p2",
        "event_id": "e2",
        "topic": "orders",
        "partition": 3,
        "offset": 2**40,
        "details": {"why": "it matched"},
    }
    async with db.begin() as conn:
        writes = WriteSet(conn)
        writes.insert(TOKEN, [("hash-1", "p1", "w1", "Charge", sql_text.time(conn, T0))])
        writes.delete(DROP, ["old"])
        writes.insert(ADD, [("p1", "t1", "é", None), ("p2", "t2", None, 2.5)])
        await outbox.add(conn, [message], writes=writes)
        await inbox.mark(conn, [mark, event_mark], writes=writes)
        # Nothing before the flush.
        assert (await conn.execute(NAMES)).scalars().all() == ["old"]
        await writes.flush()

    async with reading(db) as conn:
        assert sorted((await conn.execute(select(attributes))).all()) == [
            ("p1", "t1", "é", None),
            ("p2", "t2", None, 2.5),
        ]
        token = (await conn.execute(select(task_tokens))).one()
        assert (token.token_hash, token.process_id, token.wait_id, token.state) == (
            "hash-1",
            "p1",
            "w1",
            "Charge",
        )
        assert token.created_at == T0
        row = (await conn.execute(select(outbox_table))).one()
        assert row.message_count == 1
        assert row.created_at == T0
        assert row.messages[0]["value"] == {"deep": [1, "é", None]}
        assert row.messages[0]["headers"] == {"h": "v"}
        marks = {r.key: r for r in (await conn.execute(select(inbox_table))).all()}
        assert marks["k1"].details is None
        assert marks["k1"].partition is None
        assert marks["k2"].details == {"why": "it matched"}
        assert (marks["k2"].partition, marks["k2"].offset) == (3, 2**40)
        assert marks["k2"].received_at == T0


async def test_a_failing_part_fails_the_whole_statement(db: AsyncEngine) -> None:
    with pytest.raises(DBAPIError):
        async with db.begin() as conn:
            writes = WriteSet(conn)
            writes.delete(DROP, ["old"])
            writes.insert(ADD, [("p1", "t1", "y", None)])
            # No such process: the foreign key refuses the token.
            writes.insert(TOKEN, [("hash-2", "nope", "w", "S", sql_text.time(conn, T0))])
            await writes.flush()
    async with reading(db) as conn:
        assert (await conn.execute(NAMES)).scalars().all() == ["old"]
        assert (await conn.execute(select(task_tokens))).all() == []


async def test_an_empty_write_set_writes_nothing(db: AsyncEngine) -> None:
    async with db.begin() as conn:
        writes = WriteSet(conn)
        writes.insert(ADD, [])
        await outbox.add(conn, [], writes=writes)
        await writes.flush()
    async with reading(db) as conn:
        assert (await conn.execute(select(outbox_table))).all() == []


async def add_running(db: AsyncEngine, *ids: str) -> None:
    async with db.begin() as conn:
        await insert_processes(
            conn,
            [(Process(id=i, definition="d", version=1, started_at=T0), 0, {}) for i in ids],
            T0,
        )


async def test_updated_processes_land_with_the_other_parts_and_their_guard_counts(
    db: AsyncEngine,
) -> None:
    await add_running(db, "u1", "u2")
    later = T0 + timedelta(seconds=5)
    async with db.begin() as conn:
        loaded = await load_for_update(conn, ["u1", "u2"])
        changed = [
            (
                item.process.model_copy(
                    update={
                        "status": ProcessStatus.SUCCEEDED,
                        "output": {"n": "é"},
                        "ended_at": later,
                    }
                ),
                item.row_version,
                3,
                {"traceparent": None, "tracestate": None},
            )
            for item in loaded.values()
        ]
        writes = WriteSet(conn)
        await update_processes(conn, changed, later, writes=writes)
        writes.insert(ADD, [("u1", "t9", None, 9.0)])
        # Nothing before the flush.
        status = select(processes_table.c.status).where(processes_table.c.id == "u1")
        assert (await conn.execute(status)).scalar_one() == "RUNNING"
        await writes.flush()

    async with reading(db) as conn:
        rows = (
            await conn.execute(
                select(processes_table).where(processes_table.c.id.in_(["u1", "u2"]))
            )
        ).all()
        assert {r.id: (r.status, r.history_seq, r.row_version) for r in rows} == {
            "u1": ("SUCCEEDED", 3, 2),
            "u2": ("SUCCEEDED", 3, 2),
        }
        assert all(r.updated_at == later and r.ended_at == later for r in rows)
        assert all(r.state["output"] == {"n": "é"} for r in rows)
        assert (await conn.execute(NAMES)).scalars().all() == ["old", "t9"]


@pytest.mark.parametrize("alone", [True, False], ids=["update-alone", "with-other-parts"])
async def test_a_process_changed_since_it_was_read_fails_the_batch(
    db: AsyncEngine, alone: bool
) -> None:
    """The row version guards each update, one row or many, alone or among other parts: a
    stale one raises and the transaction writes nothing."""
    await add_running(db, "s1", "s2")
    async with db.begin() as conn:
        loaded = await load_for_update(conn, ["s1", "s2"])
    stale = [(item.process, item.row_version, 1, {}) for item in loaded.values()]
    async with db.begin() as conn:  # another writer got in between
        await update_processes(conn, stale[:1], T0)
    with pytest.raises(ConcurrentUpdate, match="s1"):
        async with db.begin() as conn:
            writes = WriteSet(conn)
            await update_processes(conn, stale, T0, writes=writes)
            if not alone:
                writes.delete(DROP, ["old"])
            await writes.flush()
    async with reading(db) as conn:
        versions = select(processes_table.c.id, processes_table.c.row_version).where(
            processes_table.c.id.in_(["s1", "s2"])
        )
        assert dict((await conn.execute(versions)).all()) == {"s1": 2, "s2": 1}
        assert (await conn.execute(NAMES)).scalars().all() == ["old"]
