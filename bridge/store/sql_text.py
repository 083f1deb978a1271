"""The engine's hot statements, written as SQL text for each dialect.

Every batch runs the same dozen statements. Built with SQLAlchemy Core, each execution paid for
building the statement, its cache key and a bind processor call per column and row: about a
third of the worker's CPU (issue 13). These statements are written once, as text, and run with
``AsyncConnection.exec_driver_sql``: still SQLAlchemy's connection, transaction, error
translation and pool invalidation (``bridge.failures`` classifies the same exceptions), but the
parameters go to the driver as they are. So this module converts values itself, the way the
schema's types do (``bridge.store.schema``):

- times: aware UTC on PostgreSQL; on SQLite naive UTC text in the form SQLAlchemy stores;
- JSON: text from ``bridge.asl.json_text``; read back decoded (PostgreSQL's driver decodes JSONB
  itself, with the engine's deserializer);
- id lists: one array parameter on PostgreSQL (``= ANY($1)``), one JSON text on SQLite
  (``IN (SELECT value FROM json_each(?1))``), so the text stays the same whatever the list's
  length and the driver's prepared-statement cache keeps working.

On PostgreSQL, inside a transaction, a statement goes straight to the DBAPI cursor of
SQLAlchemy's connection (``_on_cursor``): the same connection, transaction, prepared-statement
cache and driver error translation, without the execution context and result objects that cost
80 of the 140 microseconds of CPU a statement took (about a tenth of a worker's CPU at 50 orders
per second). An error goes through SQLAlchemy's own handling (``Connection.
_handle_dbapi_exception``), so callers see the same ``DBAPIError`` and a connection that broke
is invalidated as before.

The schema, migrations and everything off the hot path stay SQLAlchemy Core.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy.ext.asyncio import AsyncConnection

from bridge.asl import json_text

_PLACEHOLDER = re.compile(r"\$(\d+)")


@dataclass(frozen=True)
class Statement:
    """One statement's text on PostgreSQL (``$1`` placeholders) and on SQLite (``?1``)."""

    postgres: str
    sqlite: str

    def text(self, conn: AsyncConnection) -> str:
        return self.postgres if conn.dialect.name == "postgresql" else self.sqlite


def statement(postgres: str, sqlite: str | None = None) -> Statement:
    """A statement from its PostgreSQL text; SQLite's is the same with ``?N`` placeholders
    unless given."""
    sqlite_text = sqlite if sqlite is not None else postgres
    return Statement(
        " ".join(postgres.split()), _PLACEHOLDER.sub(r"?\1", " ".join(sqlite_text.split()))
    )


def any_of(placeholder: int, array_type: str = "varchar") -> Statement:
    """``IN`` a list given as one parameter: see ``ids``."""
    return Statement(
        f"= ANY(${placeholder}::{array_type}[])",
        f"IN (SELECT value FROM json_each(?{placeholder}))",
    )


def is_postgres(conn: AsyncConnection) -> bool:
    return conn.dialect.name == "postgresql"


async def fetch(
    conn: AsyncConnection, sql: Statement, parameters: tuple[Any, ...] = ()
) -> Sequence[tuple[Any, ...]]:
    """The rows, as tuples."""
    return await fetch_text(conn, sql.text(conn), parameters)


async def fetch_text(
    conn: AsyncConnection, text: str, parameters: tuple[Any, ...] = ()
) -> Sequence[tuple[Any, ...]]:
    """The rows of ``text``, in the connection's dialect, as tuples: for text made per call
    (a batch's closing statement)."""
    cursor = await _on_cursor(conn, text, parameters)
    if cursor is not None:
        return [tuple(row) for row in cursor.fetchall()]
    result = await conn.exec_driver_sql(text, parameters)
    # A Row unpacks like the tuple it is.
    return cast(Sequence[tuple[Any, ...]], result.all())


async def execute(conn: AsyncConnection, sql: Statement, parameters: tuple[Any, ...] = ()) -> int:
    """The number of rows the statement changed."""
    text = sql.text(conn)
    cursor = await _on_cursor(conn, text, parameters)
    if cursor is not None:
        return int(cursor.rowcount)
    result = await conn.exec_driver_sql(text, parameters)
    return int(result.rowcount)


async def _on_cursor(conn: AsyncConnection, text: str, parameters: tuple[Any, ...]) -> Any | None:
    """PostgreSQL, in a transaction on a valid connection: ``text`` run on the connection's
    DBAPI cursor, which is returned with its rows; None elsewhere (SQLite, a connection that
    has not begun its transaction or was invalidated), where SQLAlchemy runs it."""
    sync = conn.sync_connection
    if (
        sync is None
        or sync.dialect.driver != "asyncpg"
        or sync.closed
        or sync.invalidated
        or not sync.in_transaction()
    ):
        return None
    cursor = sync.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    # The async half of the driver adapter's execute(), which SQLAlchemy calls from a greenlet:
    # it begins the transaction, prepares (cached) and fetches. A SQLAlchemy without it runs
    # the statement itself.
    run = getattr(cursor, "_prepare_and_execute", None)
    if run is None:
        return None
    try:
        await run(text, parameters)
    except BaseException as error:
        # Raises what SQLAlchemy raises for this error (a DBAPIError, or the error itself),
        # after invalidating a connection that broke; from a greenlet, as closing one may wait.
        await conn.run_sync(_raise_as_sqlalchemy, error, text, parameters, cursor)
        raise
    return cursor


def _raise_as_sqlalchemy(
    sync: Any, error: BaseException, text: str, parameters: tuple[Any, ...], cursor: Any
) -> None:
    try:
        raise error
    except BaseException as raised:
        # Handled while raised: SQLAlchemy re-raises what sys.exc_info() holds.
        sync._handle_dbapi_exception(raised, text, parameters, cursor, None)


async def execute_many(
    conn: AsyncConnection, sql: Statement, rows: Sequence[tuple[Any, ...]]
) -> int:
    """The number of rows changed, where the driver counts them: asyncpg does not count the
    rows of a batched statement (-1), SQLite does."""
    if not rows:
        return 0
    if len(rows) == 1:
        return await execute(conn, sql, rows[0])
    result = await conn.exec_driver_sql(sql.text(conn), list(rows))
    return int(result.rowcount)


def ids(conn: AsyncConnection, values: Sequence[Any]) -> Any:
    """A list for ``any_of``."""
    return list(values) if is_postgres(conn) else json_text.dumps(list(values))


def time(conn: AsyncConnection, moment: datetime | None) -> Any:
    """A time parameter; like ``schema.UTCDateTime``, naive times are refused."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        raise ValueError("naive datetimes are not stored")
    if is_postgres(conn):
        return moment.astimezone(UTC)
    # The text SQLAlchemy's SQLite DateTime writes, made without strftime (half the time).
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def read_time(value: Any) -> datetime | None:
    """A time column as read: aware UTC."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    assert isinstance(value, datetime)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def json(value: Any) -> str | None:
    """A JSON parameter (None is SQL NULL)."""
    return None if value is None else json_text.dumps(value)


def read_json(conn: AsyncConnection, value: Any) -> Any:
    """A JSON column as read: PostgreSQL's driver decoded it already, SQLite gives text."""
    if value is None or is_postgres(conn):
        return value
    return json_text.loads(value)
