"""Schema migrations: bring a database to a numbered Alembic revision of the schema.

The schema has one source, ``bridge.store.schema.metadata``; the numbered revisions in
``bridge/migrations/versions`` build it step by step, and an integration test diffs the migrated
database against the metadata. Processes call ``upgrade(engine)`` at start; the worker and the web
process may do so at the same moment against one database, so every migration runs in one
transaction that first takes a database-wide lock:

* PostgreSQL: ``pg_advisory_xact_lock(MIGRATION_LOCK)``, released at commit or rollback. DDL is
  transactional there, so a failed upgrade leaves the database at its previous revision, and the
  process that waited reads the new revision after the lock and has nothing left to do.
* SQLite: the engine from ``open_database`` starts every write transaction with ``BEGIN IMMEDIATE``,
  which takes the database's write lock; alembic finds that transaction already open and runs all
  steps inside it (it never issues its own BEGIN on such a connection). SQLite's DDL is
  transactional too once the driver's own transaction handling is off, as ``open_database`` does.
  Foreign key enforcement is switched off on the migration connection for the duration, because
  batch mode rebuilds a table by copy, drop and rename, and dropping a referenced table with
  enforcement on deletes or rejects the rows that refer to it; ``PRAGMA foreign_key_check``
  runs before the commit instead (the procedure SQLite documents for schema changes).

Within one process there is a further rule: alembic keeps the running migration in module globals
(``alembic.op``, ``alembic.context``), so two migrations that interleave on one event loop, say of
two databases, would run each other's steps. A per-loop ``asyncio.Lock`` lets one run at a time.
Migrating from several threads at once is not supported.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from weakref import WeakKeyDictionary

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from bridge.asl.errors import BridgeError
from bridge.store.database import reading

#: Where the Alembic environment and the numbered revisions live (shipped as package data).
MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"

#: Key of the PostgreSQL advisory lock held while migrating: the bytes of "bridge:m" as a bigint.
#: Advisory locks are per database, so it serialises migrations of one database only.
MIGRATION_LOCK = 0x6272_6964_6765_3A6D

_turns: WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = WeakKeyDictionary()


class MigrationError(BridgeError):
    """A migration that cannot be committed (for example, it leaves dangling foreign keys)."""


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic configuration for bridge's migrations, built in code (there is no alembic.ini).

    ``connection`` is the connection env.py migrates on; the caller owns its transaction. New
    revisions get numbered file names: ``command.revision(cfg, message, rev_id="0002")`` writes
    ``versions/0002_<slug>.py``.
    """
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("path_separator", "os")
    config.set_main_option("file_template", "%%(rev)s_%%(slug)s")
    if connection is not None:
        config.attributes["connection"] = connection
    return config


async def upgrade(db: AsyncEngine, revision: str = "head") -> None:
    """Upgrade the database to ``revision``; a no-op when it is there already.

    Safe to call from several processes at once: they run one after the other.
    """
    await _migrate(db, lambda config: command.upgrade(config, revision))


async def downgrade(db: AsyncEngine, revision: str) -> None:
    """Downgrade the database to ``revision`` (``"base"`` drops every table of the schema)."""
    await _migrate(db, lambda config: command.downgrade(config, revision))


async def current_revision(db: AsyncEngine) -> str | None:
    """The revision the database is at, or None for a database that was never migrated."""
    async with reading(db) as connection:
        return await connection.run_sync(_current_revision)


def _current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def _turn() -> asyncio.Lock:
    """This event loop's lock for running alembic (see the module docstring)."""
    return _turns.setdefault(asyncio.get_running_loop(), asyncio.Lock())


async def _migrate(db: AsyncEngine, step: Callable[[Config], None]) -> None:
    # The in-process lock first, then the database lock: a task holding the database lock then
    # never waits for anything but the database, so no wait cycle can form across processes.
    async with _turn(), db.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            # Must happen outside a transaction: SQLite ignores this pragma inside one.
            await connection.run_sync(_sqlite_foreign_keys, False)
        try:
            async with connection.begin():
                if connection.dialect.name == "postgresql":
                    await connection.execute(
                        text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK}
                    )
                await connection.run_sync(lambda sync: step(alembic_config(sync)))
                if sqlite:
                    await connection.run_sync(_sqlite_check_foreign_keys)
        finally:
            if sqlite:
                await connection.run_sync(_sqlite_foreign_keys, True)


def _sqlite_foreign_keys(connection: Connection, on: bool) -> None:
    # Through the DBAPI cursor: a statement on the Connection would autobegin a transaction
    # (BEGIN IMMEDIATE through open_database's hook), inside which the pragma does nothing.
    cursor = connection.connection.cursor()
    try:
        cursor.execute(f"PRAGMA foreign_keys={'ON' if on else 'OFF'}")
    finally:
        cursor.close()


def _sqlite_check_foreign_keys(connection: Connection) -> None:
    problems = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
    if problems:
        found = ", ".join(f"{row[0]} rowid {row[1]} -> {row[2]}" for row in problems[:10])
        raise MigrationError(f"migration leaves rows with dangling foreign keys: {found}")
