"""The outbox: messages written with the state that caused them, published by the relay."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select, text, update
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
    """The oldest unsent messages, in order; empty when another relay holds the lock."""
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
            .where(outbox.c.sent_at.is_(None))
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


async def mark_sent(conn: AsyncConnection, ids: Sequence[int], now: datetime) -> None:
    if ids:
        await conn.execute(update(outbox).where(outbox.c.id.in_(ids)).values(sent_at=now))


async def backlog(conn: AsyncConnection) -> int:
    query = select(func.count()).select_from(outbox).where(outbox.c.sent_at.is_(None))
    return int(await conn.scalar(query) or 0)
