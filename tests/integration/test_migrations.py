"""The numbered migrations build exactly the schema of bridge.store.schema, on SQLite and Postgres.

PostgreSQL tests need a server on 127.0.0.1:5432 (trust auth, user postgres); each gets a fresh
database with a random name, dropped afterwards. Deselect them with ``-m "not postgres"``.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import (
    JSON,
    Column,
    Integer,
    MetaData,
    String,
    Table,
    func,
    insert,
    inspect,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from bridge.asl.effects import HistoryEntry
from bridge.asl.process import Process
from bridge.store import outbox, revision, timers
from bridge.store import processes as process_store
from bridge.store.database import open_database
from bridge.store.migrate import (
    alembic_config,
    current_revision,
    downgrade,
    upgrade,
)
from bridge.store.processes import append_history, read_history
from bridge.store.revision import head_revision
from bridge.store.schema import Json, UTCDateTime, history, metadata
from bridge.store.schema import outbox as outbox_table
from bridge.store.schema import processes as processes_table
from tests.integration.rows import add_processes

pytestmark = pytest.mark.integration

POSTGRES_SERVER = "postgresql+asyncpg://postgres@127.0.0.1:5432"
HEAD = ScriptDirectory.from_config(alembic_config()).get_current_head()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A URL of an empty database: a SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'bridge.db'}"
        return
    name = f"bridge_test_{uuid.uuid4().hex[:12]}"
    admin = create_async_engine(f"{POSTGRES_SERVER}/postgres", isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as connection:
            await connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
        yield f"{POSTGRES_SERVER}/{name}"
    finally:
        async with admin.connect() as connection:
            await connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.dispose()


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = open_database(database_url)
    try:
        yield engine
    finally:
        await engine.dispose()


def _differences(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, metadata))


def _table_names(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names())


async def test_revisions_are_numbered_one_after_another() -> None:
    from alembic.script import ScriptDirectory

    from bridge.store.migrate import alembic_config

    script = ScriptDirectory.from_config(alembic_config())
    chain = [revision.revision for revision in script.walk_revisions()][::-1]
    numbered = [f"{number:04d}" for number in range(1, int(chain[-1]) + 1)]
    assert chain == numbered
    assert chain[-1] == HEAD
    # bridge.store.revision finds the head from the file names alone.
    assert head_revision() == HEAD
    for path in revision.VERSIONS.glob("*.py"):
        assert path.name.split("_")[0] == script.get_revision(path.name[:4]).revision


async def test_at_head_tells_when_there_is_nothing_to_migrate(engine: AsyncEngine) -> None:
    assert not await revision.at_head(engine)
    await upgrade(engine, "0009")
    assert not await revision.at_head(engine)
    await upgrade(engine)
    assert await revision.at_head(engine)


async def test_upgrade_builds_exactly_the_metadata(engine: AsyncEngine) -> None:
    assert await current_revision(engine) is None

    await upgrade(engine)

    assert await current_revision(engine) == HEAD
    async with engine.connect() as connection:
        assert await connection.run_sync(_differences) == []
        tables = await connection.run_sync(_table_names)
    assert tables == set(metadata.tables) | {"alembic_version"}


async def test_downgrade_to_base_drops_everything_and_upgrade_works_again(
    engine: AsyncEngine,
) -> None:
    await upgrade(engine)

    await downgrade(engine, "base")

    assert await current_revision(engine) is None
    async with engine.connect() as connection:
        assert await connection.run_sync(_table_names) <= {"alembic_version"}

    await upgrade(engine)

    assert await current_revision(engine) == HEAD
    async with engine.connect() as connection:
        assert await connection.run_sync(_differences) == []


async def test_failed_upgrade_leaves_the_database_as_it_was(engine: AsyncEngine) -> None:
    # The last table of 0001 is in the way: every step before it must be rolled back.
    async with engine.begin() as connection:
        await connection.execute(text("CREATE TABLE timers (id INTEGER PRIMARY KEY)"))

    with pytest.raises(Exception, match="timers"):
        await upgrade(engine)

    assert await current_revision(engine) is None
    async with engine.connect() as connection:
        assert await connection.run_sync(_table_names) == {"timers"}


async def test_upgrade_twice_is_a_no_op(engine: AsyncEngine) -> None:
    await upgrade(engine)
    async with engine.begin() as connection:
        await connection.execute(
            text(
                "INSERT INTO inbox (key, received_at, outcome)"
                " VALUES ('k', CURRENT_TIMESTAMP, 'done')"
            )
        )

    await upgrade(engine)

    assert await current_revision(engine) == HEAD
    async with engine.connect() as connection:
        assert (await connection.execute(text("SELECT key FROM inbox"))).scalars().all() == ["k"]
        versions = await connection.execute(text("SELECT version_num FROM alembic_version"))
        assert versions.scalars().all() == [HEAD]


async def test_concurrent_upgrades_from_two_processes_both_succeed(database_url: str) -> None:
    first, second = open_database(database_url), open_database(database_url)
    try:
        results = await asyncio.gather(upgrade(first), upgrade(second), return_exceptions=True)

        assert list(results) == [None, None]

        assert await current_revision(first) == HEAD
        async with second.connect() as connection:
            assert await connection.run_sync(_differences) == []
            versions = await connection.execute(text("SELECT version_num FROM alembic_version"))
            assert versions.scalars().all() == [HEAD]
    finally:
        await first.dispose()
        await second.dispose()


async def test_sqlite_foreign_keys_are_enforced_again_after_migrating(tmp_path: Path) -> None:
    # The migration connection runs with enforcement off; it must go back to the pool with it on.
    engine = open_database(f"sqlite+aiosqlite:///{tmp_path / 'bridge.db'}")
    try:
        await upgrade(engine)
        async with engine.connect() as connection:
            enforced = await connection.exec_driver_sql("PRAGMA foreign_keys")
            assert enforced.scalar_one() == 1
    finally:
        await engine.dispose()


async def test_concurrent_upgrades_of_two_databases_in_one_process(tmp_path: Path) -> None:
    # alembic keeps the running migration in module globals (alembic.op, alembic.context), so
    # two upgrades that interleave in one event loop would run each other's steps.
    engines = [open_database(f"sqlite+aiosqlite:///{tmp_path / name}") for name in ("a.db", "b.db")]
    try:
        results = await asyncio.gather(*(upgrade(e) for e in engines), return_exceptions=True)

        assert list(results) == [None, None]
        for engine in engines:
            async with engine.connect() as connection:
                assert await connection.run_sync(_differences) == []
    finally:
        for engine in engines:
            await engine.dispose()


#: The history table as revisions 0001 to 0007 built it: one row per entry.
_HISTORY_0007 = Table(
    "history",
    MetaData(),
    Column("id", Integer, primary_key=True),
    Column("process_id", String(64), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Column("type", String(40), nullable=False),
    Column("state", String(200), nullable=True),
    Column("details", Json, nullable=False),
)

_T0 = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)
_OLD_ROWS = [
    ("p-1", 1, _T0, "ProcessStarted", None, {"input": {"order": "o-1"}}),
    ("p-1", 2, _T0 + timedelta(microseconds=1), "StateEntered", "Pay", {}),
    (
        "p-1",
        3,
        _T0 + timedelta(days=1, seconds=59, microseconds=999999),
        "TaskFailed",
        "Pay",
        {"error": "Bad", "cause": 'quote " backslash \\ é ✓', "deep": [[{"a": None}]]},
    ),
    ("p-2", 1, _T0 + timedelta(hours=5), "ProcessStarted", None, {}),
]


async def test_upgrade_makes_each_history_row_a_chunk_and_downgrade_expands_them(
    engine: AsyncEngine,
) -> None:
    await upgrade(engine, "0007")
    await add_processes(engine, _T0, "p-1", "p-2", history_seq=3)
    async with engine.begin() as connection:
        await connection.execute(
            insert(_HISTORY_0007),
            [
                dict(zip(("process_id", "seq", "at", "type", "state", "details"), row, strict=True))
                for row in _OLD_ROWS
            ],
        )

    await upgrade(engine)

    expected = [
        {"seq": seq, "at": at, "type": kind, "state": state, "details": details}
        for _, seq, at, kind, state, details in _OLD_ROWS
    ]
    async with engine.connect() as connection:
        chunks = (
            await connection.execute(
                select(history.c.process_id, history.c.seq, history.c.last_seq).order_by(
                    history.c.id
                )
            )
        ).all()
        assert [tuple(chunk) for chunk in chunks] == [(p, s, s) for p, s, *_ in _OLD_ROWS]
        assert await read_history(connection, "p-1") == expected[:3]
        assert await read_history(connection, "p-1", after_seq=1, limit=1) == expected[1:2]
        assert await read_history(connection, "p-2") == expected[3:]
    # Entries written after the upgrade share rows, and the downgrade expands those too.
    async with engine.begin() as connection:
        more = [HistoryEntry(_T0, "StateEntered", "Ship"), HistoryEntry(_T0, "ProcessSucceeded")]
        await append_history(connection, [("p-1", 4, more[0]), ("p-1", 5, more[1])])
        assert await connection.scalar(select(func.count()).select_from(history)) == 5

    await downgrade(engine, "0007")

    async with engine.connect() as connection:
        assert await connection.run_sync(_history_columns) == {
            "id",
            "process_id",
            "seq",
            "at",
            "type",
            "state",
            "details",
        }
        rows = (
            await connection.execute(
                select(_HISTORY_0007).order_by(_HISTORY_0007.c.process_id, _HISTORY_0007.c.seq)
            )
        ).all()
    old = list(_OLD_ROWS)
    old[3:3] = [
        ("p-1", 4, _T0, "StateEntered", "Ship", {}),
        ("p-1", 5, _T0, "ProcessSucceeded", None, {}),
    ]
    assert [tuple(row)[1:] for row in rows] == old


def _history_columns(connection: Connection) -> set[str]:
    return {column["name"] for column in inspect(connection).get_columns("history")}


_JSON = JSON().with_variant(JSONB(), "postgresql")
#: The outbox as it was before 0009: one row per message.
_ROW_PER_MESSAGE = Table(
    "outbox",
    MetaData(),
    Column("id", Integer, primary_key=True),
    Column("message_id", String(64)),
    Column("process_id", String(64)),
    Column("topic", String(249)),
    Column("key", String(500)),
    Column("value", _JSON),
    Column("headers", _JSON),
    Column("created_at", UTCDateTime),
    Column("traceparent", String(55)),
    Column("tracestate", String(512)),
    Column("parked_at", UTCDateTime),
    Column("park_reason", String(2000)),
)


def _message(name: str, value: Any, **fields: Any) -> dict[str, Any]:
    return {
        "message_id": name,
        "process_id": fields.get("process_id"),
        "topic": fields.get("topic", "orders"),
        "key": fields.get("key", "k"),
        "value": value,
        "headers": {"ce_id": name, "ce_type": "test"},
        "traceparent": fields.get("traceparent"),
        "tracestate": fields.get("tracestate"),
    }


async def test_outbox_batches_migration_converts_waiting_and_parked_rows_both_ways(
    engine: AsyncEngine,
) -> None:
    script = ScriptDirectory.from_config(alembic_config())
    before = script.get_revision("0009").down_revision
    assert isinstance(before, str)
    await upgrade(engine, before)
    at = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    old = [
        _message(
            "a",
            {"n": 1, "ok": True, "list": [1, "two", None]},
            process_id="p-1",
            traceparent=f"00-{'a' * 32}-{'b' * 16}-01",
            tracestate="v=1",
        ),
        _message("b", {"n": 2}, topic="not a topic!"),
        _message("c", "plain text", key=None),
        _message("d", None),
    ]
    async with engine.begin() as conn:
        await conn.execute(
            insert(_ROW_PER_MESSAGE),
            [
                {
                    **message,
                    "created_at": at,
                    "parked_at": at if message["message_id"] == "b" else None,
                    "park_reason": "InvalidTopicError" if message["message_id"] == "b" else None,
                }
                for message in old
            ],
        )

    await upgrade(engine, "0009")

    # Each row became a one-message row with its id; the parked one stays parked.
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                select(outbox_table.c.id, outbox_table.c.message_count).order_by(outbox_table.c.id)
            )
        ).all()
        assert [tuple(row) for row in rows] == [(1, 1), (2, 1), (3, 1), (4, 1)]
        assert [m.to_json() for m in await outbox.pending(conn)] == [old[0], old[2], old[3]]
        assert await outbox.backlog(conn) == 3
        parked = await outbox.parked(conn)
        assert [(p.message_id, p.topic, p.reason, p.parked_at) for p in parked] == [
            ("b", "not a topic!", "InvalidTopicError", at)
        ]
    new = [_message("e", {"n": 5}), _message("f", {"n": 6}, process_id="p-2")]
    async with engine.begin() as conn:
        await outbox.add(conn, [{**message, "created_at": at} for message in new])

    await downgrade(engine, before)

    # One row per message again, in order; the parked one still parked.
    async with engine.connect() as conn:
        back = (
            (await conn.execute(select(_ROW_PER_MESSAGE).order_by(_ROW_PER_MESSAGE.c.id)))
            .mappings()
            .all()
        )
    fields = list(old[0])
    assert [{name: row[name] for name in fields} for row in back] == [*old, *new]
    assert [(row["parked_at"], row["park_reason"]) for row in back] == [
        (None, None),
        (at, "InvalidTopicError"),
        *[(None, None)] * 4,
    ]
    assert {row["created_at"] for row in back} == {at}

    await upgrade(engine)
    async with engine.connect() as conn:
        assert await conn.run_sync(_differences) == []


_TIMER_ROWS = Table(
    "timers",
    MetaData(),
    Column("id", String(64), primary_key=True),
    Column("process_id", String(64)),
    Column("due_at", UTCDateTime),
)


async def test_timers_migration_moves_timer_rows_into_their_processes_and_back(
    engine: AsyncEngine,
) -> None:
    await upgrade(engine, "0018")
    at = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    due = {
        "t1": ("p1", at + timedelta(seconds=1, milliseconds=250)),
        "t2": ("p1", at + timedelta(hours=2)),
        "t3": ("p2", at + timedelta(days=3)),
    }
    ids = ("p1", "p2", "p3")
    await add_processes(
        engine,
        at,
        *ids,
        states={
            pid: Process(id=pid, definition="d", version=1, started_at=at).model_dump(mode="json")
            for pid in ids
        },
    )
    async with engine.begin() as conn:
        await conn.execute(
            insert(_TIMER_ROWS),
            [{"id": name, "process_id": pid, "due_at": when} for name, (pid, when) in due.items()],
        )

    await upgrade(engine, "0019")

    # Each process keeps its timers, and wakes when the earliest is due.
    async with engine.connect() as conn:
        loaded = {pid: await process_store.get(conn, pid) for pid in ids}
        woken = dict(
            (await conn.execute(select(processes_table.c.id, processes_table.c.wake_at))).all()
        )
        found, stale = await timers.due(conn, at + timedelta(seconds=2), 10)
    assert {pid: process.timers for pid, process in loaded.items() if process} == {
        "p1": {"t1": due["t1"][1], "t2": due["t2"][1]},
        "p2": {"t3": due["t3"][1]},
        "p3": {},
    }
    assert woken == {"p1": due["t1"][1], "p2": due["t3"][1], "p3": None}
    assert [(timer.id, timer.process_id) for timer in found] == [("t1", "p1")] and stale == []

    await downgrade(engine, "0018")

    async with engine.connect() as conn:
        rows = (await conn.execute(select(_TIMER_ROWS).order_by(_TIMER_ROWS.c.id))).all()
        states = (await conn.execute(select(processes_table.c.state))).scalars().all()
    assert [tuple(row) for row in rows] == [(name, *row) for name, row in due.items()]
    assert all("timers" not in state for state in states)

    await upgrade(engine)
    async with engine.connect() as conn:
        assert await conn.run_sync(_differences) == []
