"""Event correlation rows: processes waiting for events, and events kept until something waits."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from bridge.store.schema import buffered_events, event_waits


@dataclass(frozen=True)
class Waiting:
    wait_id: str
    process_id: str


async def add_waits(
    conn: AsyncConnection,
    wait_id: str,
    process_id: str,
    subscriptions: Sequence[tuple[str, str, str]],
    now: datetime,
) -> None:
    if subscriptions:
        await conn.execute(
            insert(event_waits),
            [
                {
                    "wait_id": wait_id,
                    "process_id": process_id,
                    "topic": topic,
                    "event_type": event_type,
                    "correlation_key": key,
                    "created_at": now,
                }
                for topic, event_type, key in subscriptions
            ],
        )


async def remove_waits(conn: AsyncConnection, wait_ids: Sequence[str]) -> None:
    if wait_ids:
        await conn.execute(delete(event_waits).where(event_waits.c.wait_id.in_(list(wait_ids))))


async def waiting_for(
    conn: AsyncConnection, topic: str, event_type: str, key: str
) -> list[Waiting]:
    """The waits for this (topic, type, key), oldest first, one row per wait."""
    rows = (
        await conn.execute(
            select(event_waits.c.wait_id, event_waits.c.process_id)
            .where(
                and_(
                    event_waits.c.topic == topic,
                    event_waits.c.event_type == event_type,
                    event_waits.c.correlation_key == key,
                )
            )
            .order_by(event_waits.c.id)
        )
    ).all()
    return list(dict.fromkeys(Waiting(row.wait_id, row.process_id) for row in rows))


async def buffer(
    conn: AsyncConnection,
    *,
    event_key: str,
    topic: str,
    event_type: str,
    key: str,
    event: Any,
    now: datetime,
    expires_at: datetime,
) -> None:
    await conn.execute(
        insert(buffered_events).values(
            event_key=event_key,
            topic=topic,
            event_type=event_type,
            correlation_key=key,
            event=event,
            received_at=now,
            expires_at=expires_at,
        )
    )


@dataclass(frozen=True)
class Buffered:
    id: int
    event_key: str
    event: Any


async def take_buffered(
    conn: AsyncConnection,
    subscriptions: Sequence[tuple[str, str, str]],
    process_id: str,
    now: datetime,
) -> Buffered | None:
    """The oldest live buffered event for any of ``subscriptions``, marked consumed."""
    conditions = [
        and_(
            buffered_events.c.topic == topic,
            buffered_events.c.event_type == event_type,
            buffered_events.c.correlation_key == key,
        )
        for topic, event_type, key in subscriptions
    ]
    if not conditions:
        return None

    row = (
        await conn.execute(
            select(buffered_events.c.id, buffered_events.c.event_key, buffered_events.c.event)
            .where(
                and_(
                    or_(*conditions),
                    buffered_events.c.consumed_at.is_(None),
                    buffered_events.c.expired_at.is_(None),
                    buffered_events.c.expires_at > now,
                )
            )
            .order_by(buffered_events.c.id)
            .limit(1)
        )
    ).first()
    if row is None:
        return None
    await conn.execute(
        update(buffered_events)
        .where(buffered_events.c.id == row.id)
        .values(consumed_at=now, consumed_by=process_id)
    )
    return Buffered(row.id, row.event_key, row.event)


@dataclass(frozen=True)
class Expired:
    id: int
    event_key: str


async def next_expiry(conn: AsyncConnection) -> datetime | None:
    """When the next buffered event expires (None: none waits)."""
    expires_at: datetime | None = await conn.scalar(
        select(func.min(buffered_events.c.expires_at)).where(
            and_(buffered_events.c.consumed_at.is_(None), buffered_events.c.expired_at.is_(None))
        )
    )
    return expires_at


async def due_expiries(conn: AsyncConnection, now: datetime, limit: int) -> list[Expired]:
    rows = (
        await conn.execute(
            select(buffered_events.c.id, buffered_events.c.event_key)
            .where(
                and_(
                    buffered_events.c.consumed_at.is_(None),
                    buffered_events.c.expired_at.is_(None),
                    buffered_events.c.expires_at <= now,
                )
            )
            .order_by(buffered_events.c.expires_at)
            .limit(limit)
        )
    ).all()
    return [Expired(row.id, row.event_key) for row in rows]


async def expire(conn: AsyncConnection, buffer_id: int, now: datetime) -> Buffered | None:
    """Mark one buffered event expired; the event when this call did it, else None."""
    result = await conn.execute(
        update(buffered_events)
        .where(
            and_(
                buffered_events.c.id == buffer_id,
                buffered_events.c.consumed_at.is_(None),
                buffered_events.c.expired_at.is_(None),
            )
        )
        .values(expired_at=now)
        .returning(buffered_events.c.id, buffered_events.c.event_key, buffered_events.c.event)
    )
    row = result.first()
    return None if row is None else Buffered(row.id, row.event_key, row.event)


async def siblings_settled(conn: AsyncConnection, event_key: str) -> tuple[bool, bool]:
    """(any copy of this event was consumed, every copy is consumed or expired)."""
    rows = (
        await conn.execute(
            select(buffered_events.c.consumed_at, buffered_events.c.expired_at).where(
                buffered_events.c.event_key == event_key
            )
        )
    ).all()
    consumed = any(row.consumed_at is not None for row in rows)
    settled = all(row.consumed_at is not None or row.expired_at is not None for row in rows)
    return consumed, settled
