"""Durable timers: due times the engine turns into ``TimerFired`` inputs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement

from bridge.store import sql_text, write_set
from bridge.store.schema import timers
from bridge.store.write_set import Delete, Insert, WriteSet


@dataclass(frozen=True)
class DueTimer:
    id: str
    process_id: str


_ADD = Insert("timers", (("id", "varchar"), ("process_id", "varchar"), ("due_at", "timestamptz")))
_CANCEL = Delete("timers", "id")
_CLAIM = sql_text.statement(
    f"DELETE FROM timers WHERE id {sql_text.any_of(1).postgres} RETURNING id",
    f"DELETE FROM timers WHERE id {sql_text.any_of(1).sqlite} RETURNING id",
)


async def add(
    conn: AsyncConnection, rows: list[dict[str, Any]], *, writes: WriteSet | None = None
) -> None:
    """Rows with id, process_id, due_at. ``writes``: add them to this batch's writes instead
    of writing them now."""
    await write_set.insert(
        conn,
        _ADD,
        [(row["id"], row["process_id"], sql_text.time(conn, row["due_at"])) for row in rows],
        writes,
    )


async def cancel(conn: AsyncConnection, ids: list[str], *, writes: WriteSet | None = None) -> None:
    await write_set.delete(conn, _CANCEL, ids, writes)


async def due(conn: AsyncConnection, limit: int) -> list[DueTimer]:
    """Timers due by the database's clock, so a worker with a skewed clock fires nothing early."""
    rows = (
        await conn.execute(
            select(timers.c.id, timers.c.process_id)
            .where(timers.c.due_at <= _database_now(conn))
            .order_by(timers.c.due_at)
            .limit(limit)
        )
    ).all()
    return [DueTimer(row.id, row.process_id) for row in rows]


async def claim(conn: AsyncConnection, ids: list[str]) -> set[str]:
    """Delete the timers and return those this transaction removed: each fires once."""
    if not ids:
        return set()
    return {
        timer_id for (timer_id,) in await sql_text.fetch(conn, _CLAIM, (sql_text.ids(conn, ids),))
    }


async def next_due(conn: AsyncConnection) -> datetime | None:
    due_at: datetime | None = await conn.scalar(select(func.min(timers.c.due_at)))
    return due_at


def _database_now(conn: AsyncConnection) -> ColumnElement[datetime]:
    if conn.dialect.name == "sqlite":
        # CURRENT_TIMESTAMP has whole seconds on SQLite; this has milliseconds, in the same text
        # form SQLAlchemy stores datetimes in.
        return func.strftime("%Y-%m-%d %H:%M:%f", "now")
    return func.now()
