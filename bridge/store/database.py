"""Opening the database: the async engine, SQLite's pragmas and write locking, migrations."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

from bridge.asl import json_text

READ_ONLY = "bridge_read_only"

#: JSON columns written with the bridge's one JSON writer (see bridge.asl.json_text).
_JSON: dict[str, Any] = {"json_serializer": json_text.dumps, "json_deserializer": json_text.loads}


def open_database(url: str) -> AsyncEngine:
    """The database at ``url`` (SQLAlchemy's engine: the bridge's own ``Engine`` is another
    thing); on SQLite with WAL, a busy timeout and immediate write locks.

    SQLite upgrades a read transaction to a write one lazily and fails at once when another
    writer got there first; taking the write lock at BEGIN makes writers queue instead.
    """
    if url.startswith("sqlite"):
        engine = create_async_engine(url, connect_args={"timeout": 30}, **_JSON)
        sync_engine = engine.sync_engine

        @event.listens_for(sync_engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        @event.listens_for(sync_engine, "begin")
        def _begin(connection: Connection) -> None:
            read_only = connection.get_execution_options().get(READ_ONLY, False)
            connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

        return engine
    # No ping per checkout (a round trip, and an idle rollback, every time): a connection the
    # server dropped fails its first statement with a connection error, the pool is invalidated,
    # and the runner applies the batch again on a new connection.
    engine = create_async_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=False, **_JSON)

    @event.listens_for(engine.sync_engine, "connect")
    def _session(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        # A statement rather than a startup parameter, which poolers such as PgBouncer refuse
        # unless told to ignore it; outside any transaction, so that it lasts the session.
        dbapi_connection.run_async(lambda connection: connection.execute(_SESSION))

    return engine


#: What every PostgreSQL session of the bridge starts with.
#: ``plan_cache_mode``: each prepared statement is planned for the values it runs with. By
#: default PostgreSQL switches a statement to a generic plan after five runs and keeps it until
#: the table is analyzed again; a generic plan made while the inbox or the task tokens were
#: nearly empty reads them whole (a sequential scan), run after run, however large they grow
#: where autovacuum is off or has not yet come by (bench/README.md, 2026-12-04).
_SESSION = "SET plan_cache_mode = force_custom_plan"


@asynccontextmanager
async def reading(db: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection for reads only (no write lock on SQLite)."""
    async with db.connect() as connection:
        connection = await connection.execution_options(**{READ_ONLY: True})
        yield connection


def is_postgres(connection: AsyncConnection | AsyncEngine) -> bool:
    return connection.dialect.name == "postgresql"


async def database_now(conn: AsyncConnection) -> datetime:
    """The database server's time, aware UTC: the one clock all processes agree on."""
    # Driver SQL: this runs at the start of every batch (see bridge.store.sql_text).
    if conn.dialect.name == "sqlite":
        text_now = (await conn.exec_driver_sql(_SQLITE_NOW)).scalar()
        return datetime.fromisoformat(str(text_now)).replace(tzinfo=UTC)
    moment = (await conn.exec_driver_sql("SELECT clock_timestamp()")).scalar()
    assert isinstance(moment, datetime)
    return moment.astimezone(UTC)


_SQLITE_NOW = "SELECT strftime('%Y-%m-%d %H:%M:%f', 'now')"
