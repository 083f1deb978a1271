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
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from bridge.asl.effects import HistoryEntry
from bridge.store.database import open_engine
from bridge.store.migrate import (
    alembic_config,
    current_revision,
    downgrade,
    upgrade,
)
from bridge.store.processes import append_history, read_history
from bridge.store.schema import Json, UTCDateTime, history, metadata, processes

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
    engine = open_engine(database_url)
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
    assert chain == [f"{number:04d}" for number in range(1, len(chain) + 1)]
    assert chain[-1] == HEAD


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
    first, second = open_engine(database_url), open_engine(database_url)
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
    engine = open_engine(f"sqlite+aiosqlite:///{tmp_path / 'bridge.db'}")
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
    engines = [open_engine(f"sqlite+aiosqlite:///{tmp_path / name}") for name in ("a.db", "b.db")]
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
    async with engine.begin() as connection:
        await connection.execute(
            insert(processes),
            [
                {
                    "id": process_id,
                    "definition": "d",
                    "version": 1,
                    "status": "RUNNING",
                    "state": {},
                    "started_at": _T0,
                    "updated_at": _T0,
                    "history_seq": 3,
                    "row_version": 1,
                }
                for process_id in ("p-1", "p-2")
            ],
        )
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
