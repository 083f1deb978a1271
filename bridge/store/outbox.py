"""The outbox: messages written with the state that caused them, published by the relay.

A published row is deleted (it may carry a task token or an approval link, which must not stay in
the database in clear). A row that can never be published is parked with its reason and waits for
an operator (``bridge outbox parked`` / ``bridge outbox retry``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from bridge.store.database import is_postgres
from bridge.store.schema import outbox

#: Any constant: the advisory lock that lets one relay at a time publish, keeping order.
_RELAY_LOCK = 0x6272_6964_6765


@dataclass(frozen=True)
class OutboxMessage:
    id: int
    message_id: str
    topic: str
    key: str | None
    value: Any
    headers: dict[str, str]
    process_id: str | None = None
    #: The W3C trace context of the step that wrote the message.
    traceparent: str | None = None
    tracestate: str | None = None


async def add(conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> None:
    """Rows with message_id, process_id, topic, key, value, headers, created_at, traceparent,
    tracestate."""
    if rows:
        await conn.execute(insert(outbox), list(rows))


async def claim(conn: AsyncConnection, limit: int) -> list[OutboxMessage]:
    """The oldest messages to publish (neither published nor parked), in order; empty when
    another relay holds the lock."""
    if is_postgres(conn):
        locked = await conn.scalar(
            text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": _RELAY_LOCK}
        )
        if not locked:
            return []
    rows = (
        await conn.execute(
            select(
                outbox.c.id,
                outbox.c.message_id,
                outbox.c.topic,
                outbox.c.key,
                outbox.c.value,
                outbox.c.headers,
                outbox.c.process_id,
                outbox.c.traceparent,
                outbox.c.tracestate,
            )
            .where(outbox.c.parked_at.is_(None))
            .order_by(outbox.c.id)
            .limit(limit)
        )
    ).all()
    return [
        OutboxMessage(
            row.id,
            row.message_id,
            row.topic,
            row.key,
            row.value,
            dict(row.headers),
            row.process_id,
            row.traceparent,
            row.tracestate,
        )
        for row in rows
    ]


async def delete_sent(conn: AsyncConnection, ids: Sequence[int]) -> None:
    """Forget published rows."""
    if ids:
        await conn.execute(delete(outbox).where(outbox.c.id.in_(ids)))


async def park(conn: AsyncConnection, reasons: dict[int, str], now: datetime) -> None:
    """Set rows aside that can never be published, each with its reason."""
    if reasons:
        statement = (
            update(outbox)
            .where(outbox.c.id == bindparam("row_id"))
            .values(parked_at=now, park_reason=bindparam("reason"))
        )
        await conn.execute(
            statement,
            [{"row_id": row_id, "reason": reason[:2000]} for row_id, reason in reasons.items()],
        )


async def backlog(conn: AsyncConnection) -> int:
    """How many rows wait to be published (parked rows do not)."""
    query = select(func.count()).select_from(outbox).where(outbox.c.parked_at.is_(None))
    return int(await conn.scalar(query) or 0)


@dataclass(frozen=True)
class ParkedMessage:
    id: int
    message_id: str
    process_id: str | None
    topic: str
    key: str | None
    parked_at: datetime
    reason: str


async def parked(conn: AsyncConnection, limit: int = 1000) -> list[ParkedMessage]:
    """Parked rows, oldest first (their values stay out: they may hold secrets)."""
    rows = await conn.execute(
        select(
            outbox.c.id,
            outbox.c.message_id,
            outbox.c.process_id,
            outbox.c.topic,
            outbox.c.key,
            outbox.c.parked_at,
            outbox.c.park_reason,
        )
        .where(outbox.c.parked_at.is_not(None))
        .order_by(outbox.c.id)
        .limit(limit)
    )
    return [
        ParkedMessage(
            row.id,
            row.message_id,
            row.process_id,
            row.topic,
            row.key,
            row.parked_at,
            row.park_reason or "",
        )
        for row in rows
    ]


async def unpark(conn: AsyncConnection, message_ids: Sequence[str] | None = None) -> int:
    """Give parked rows (those of ``message_ids``, or all) back to the relay; how many."""
    statement = update(outbox).where(outbox.c.parked_at.is_not(None))
    if message_ids is not None:
        statement = statement.where(outbox.c.message_id.in_(list(message_ids)))
    result = await conn.execute(statement.values(parked_at=None, park_reason=None))
    return int(result.rowcount or 0)
