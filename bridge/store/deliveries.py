"""Deliveries of approval notices (mails, webhook posts): a work queue between the engine and the
deliverer.

The engine adds rows in the transaction of the step that asked (``NotifyApprovers``). The
deliverer claims due rows for a lease (``claimed_until``), sends them outside any transaction,
and either puts a row back with a later ``next_attempt_at`` (a failure that may pass) or ends it
through the engine (``DeliveryEnded``), which marks it done in the transaction that records the
outcome in the process history. A row whose lease ran out (its worker died) is claimed again:
deliveries are at least once, under one stable id.

Claims take ``FOR UPDATE SKIP LOCKED`` on PostgreSQL; SQLite serialises writers by itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from bridge.store.schema import deliveries


@dataclass(frozen=True)
class Delivery:
    id: str
    process_id: str
    approval_id: str | None
    state: str
    event: str
    channel: str
    format: str | None
    recipient: str
    seats: tuple[str, ...]
    outcome: str | None
    attempts: int
    last_error: str | None = None
    done_at: datetime | None = None
    result: str | None = None


_COLUMNS = (
    deliveries.c.id,
    deliveries.c.process_id,
    deliveries.c.approval_id,
    deliveries.c.state,
    deliveries.c.event,
    deliveries.c.channel,
    deliveries.c.format,
    deliveries.c.recipient,
    deliveries.c.seats,
    deliveries.c.outcome,
    deliveries.c.attempts,
    deliveries.c.last_error,
    deliveries.c.done_at,
    deliveries.c.result,
)


def _delivery(row: Any) -> Delivery:
    return Delivery(
        row.id,
        row.process_id,
        row.approval_id,
        row.state,
        row.event,
        row.channel,
        row.format,
        row.recipient,
        tuple(row.seats or ()),
        row.outcome,
        row.attempts,
        row.last_error,
        row.done_at,
        row.result,
    )


async def add(conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> None:
    """Rows with id, process_id, approval_id, state, event, channel, format, recipient, seats,
    outcome, created_at and next_attempt_at."""
    if rows:
        await conn.execute(insert(deliveries), list(rows))


async def find(conn: AsyncConnection, delivery_id: str) -> Delivery | None:
    row = (await conn.execute(select(*_COLUMNS).where(deliveries.c.id == delivery_id))).first()
    return None if row is None else _delivery(row)


async def of_process(conn: AsyncConnection, process_id: str) -> list[Delivery]:
    rows = await conn.execute(
        select(*_COLUMNS)
        .where(deliveries.c.process_id == process_id)
        .order_by(deliveries.c.created_at, deliveries.c.id)
    )
    return [_delivery(row) for row in rows]


def _claimable(now: datetime) -> Any:
    return and_(
        deliveries.c.done_at.is_(None),
        deliveries.c.next_attempt_at <= now,
        or_(deliveries.c.claimed_until.is_(None), deliveries.c.claimed_until <= now),
    )


async def any_claimable(conn: AsyncConnection, now: datetime) -> bool:
    found = await conn.scalar(select(deliveries.c.id).where(_claimable(now)).limit(1))
    return found is not None


async def claim(
    conn: AsyncConnection, limit: int, now: datetime, until: datetime
) -> list[Delivery]:
    """Up to ``limit`` due deliveries, oldest first, claimed until ``until``."""
    if limit <= 0:
        return []
    ids = list(
        (
            await conn.execute(
                select(deliveries.c.id)
                .where(_claimable(now))
                .order_by(deliveries.c.next_attempt_at, deliveries.c.id)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
        ).scalars()
    )
    if not ids:
        return []
    rows = (
        await conn.execute(
            update(deliveries)
            .where(and_(deliveries.c.id.in_(ids), _claimable(now)))
            .values(claimed_until=until, attempts=deliveries.c.attempts + 1)
            .returning(*_COLUMNS)
        )
    ).all()
    return sorted((_delivery(row) for row in rows), key=lambda found: ids.index(found.id))


async def try_again(conn: AsyncConnection, delivery_id: str, error: str, at: datetime) -> None:
    """A try failed for a reason that may pass: the next one at ``at``, by any worker."""
    await conn.execute(
        update(deliveries)
        .where(and_(deliveries.c.id == delivery_id, deliveries.c.done_at.is_(None)))
        .values(claimed_until=None, next_attempt_at=at, last_error=error[:500])
    )


async def finish(
    conn: AsyncConnection,
    delivery_id: str,
    result: str,
    error: str | None,
    now: datetime,
    *,
    recipient: str,
) -> bool:
    """Mark the delivery done (sent, failed, skipped), its recipient kept as ``recipient`` from
    now on (a webhook URL's secret path is no use once it is done); False when it was done
    already."""
    values: dict[str, Any] = {
        "done_at": now,
        "result": result,
        "claimed_until": None,
        "recipient": recipient,
    }
    if error is not None:
        values["last_error"] = error[:500]
    outcome = await conn.execute(
        update(deliveries)
        .where(and_(deliveries.c.id == delivery_id, deliveries.c.done_at.is_(None)))
        .values(**values)
    )
    return outcome.rowcount == 1


async def release(conn: AsyncConnection, ids: Sequence[str]) -> None:
    """Give up claims (a worker stopping): the next worker takes them at once."""
    if ids:
        await conn.execute(
            update(deliveries)
            .where(and_(deliveries.c.id.in_(list(ids)), deliveries.c.done_at.is_(None)))
            .values(claimed_until=None)
        )


async def purge(conn: AsyncConnection, before: datetime, limit: int = 10_000) -> int:
    """Forget deliveries done before ``before``."""
    old = select(deliveries.c.id).where(deliveries.c.done_at < before).limit(limit)
    result = await conn.execute(delete(deliveries).where(deliveries.c.id.in_(old)))
    return int(result.rowcount or 0)
