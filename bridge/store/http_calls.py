"""HTTP calls of ``bridge:http:invoke`` tasks: a work queue between the engine and the invoker.

The engine adds a call in the transaction of the step that asked for it and marks it done in the
transaction that applies its answer (or cancels it when the wait ends otherwise: a timeout, a
stop). The invoker claims pending calls for a lease (``claimed_until``), renews the lease while
a call runs, and releases it when it stops. A call whose lease ran out (its worker died) is
claimed again: the call is made again.

Claims take ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so that workers claiming at once take
different rows; SQLite has one writer at a time (every write transaction begins IMMEDIATE), which
serialises claims by itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from bridge.asl.http_task import HttpRequest
from bridge.store.schema import http_calls


@dataclass(frozen=True)
class HttpCall:
    id: str
    process_id: str
    state: str
    request: dict[str, Any]
    timeout_seconds: int
    deadline: datetime
    attempts: int = 0
    done_at: datetime | None = None
    outcome: str | None = None
    traceparent: str | None = None
    tracestate: str | None = None


_COLUMNS = (
    http_calls.c.id,
    http_calls.c.process_id,
    http_calls.c.state,
    http_calls.c.request,
    http_calls.c.timeout_seconds,
    http_calls.c.deadline,
    http_calls.c.attempts,
    http_calls.c.done_at,
    http_calls.c.outcome,
    http_calls.c.traceparent,
    http_calls.c.tracestate,
)


def _call(row: Any) -> HttpCall:
    return HttpCall(
        row.id,
        row.process_id,
        row.state,
        dict(row.request),
        row.timeout_seconds,
        row.deadline,
        row.attempts,
        row.done_at,
        row.outcome,
        row.traceparent,
        row.tracestate,
    )


async def add(conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> None:
    """Rows with id, process_id, state, request, timeout_seconds, deadline, created_at,
    traceparent, tracestate."""
    if rows:
        await conn.execute(insert(http_calls), list(rows))


async def find(conn: AsyncConnection, call_id: str) -> HttpCall | None:
    row = (await conn.execute(select(*_COLUMNS).where(http_calls.c.id == call_id))).first()
    return None if row is None else _call(row)


async def finish(conn: AsyncConnection, call: HttpCall, outcome: str, now: datetime) -> bool:
    """Mark ``call`` done (its request kept with secrets masked and without its body); False
    when it was done already (another answer got there first)."""
    result = await conn.execute(
        update(http_calls)
        .where(and_(http_calls.c.id == call.id, http_calls.c.done_at.is_(None)))
        .values(done_at=now, outcome=outcome[:200], request=_masked(call.request))
    )
    return result.rowcount == 1


async def cancel(conn: AsyncConnection, wait_ids: Sequence[str], now: datetime) -> None:
    """The waits ended otherwise (timed out, stopped): their calls, if any, are not made now."""
    if not wait_ids:
        return
    rows = (
        await conn.execute(
            select(http_calls.c.id, http_calls.c.request).where(
                and_(http_calls.c.id.in_(list(wait_ids)), http_calls.c.done_at.is_(None))
            )
        )
    ).all()
    for row in rows:
        await conn.execute(
            update(http_calls)
            .where(and_(http_calls.c.id == row.id, http_calls.c.done_at.is_(None)))
            .values(done_at=now, outcome="cancelled", request=_masked(dict(row.request)))
        )


def _claimable(now: datetime) -> Any:
    return and_(
        http_calls.c.done_at.is_(None),
        or_(http_calls.c.claimed_until.is_(None), http_calls.c.claimed_until <= now),
    )


async def any_claimable(conn: AsyncConnection, now: datetime) -> bool:
    found = await conn.scalar(select(http_calls.c.id).where(_claimable(now)).limit(1))
    return found is not None


async def claim(
    conn: AsyncConnection, limit: int, now: datetime, until: datetime
) -> list[HttpCall]:
    """Up to ``limit`` pending calls, oldest first, claimed until ``until``."""
    if limit <= 0:
        return []
    ids = list(
        (
            await conn.execute(
                select(http_calls.c.id)
                .where(_claimable(now))
                .order_by(http_calls.c.created_at)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
        ).scalars()
    )
    if not ids:
        return []
    rows = (
        await conn.execute(
            update(http_calls)
            .where(and_(http_calls.c.id.in_(ids), _claimable(now)))
            .values(claimed_until=until, attempts=http_calls.c.attempts + 1)
            .returning(*_COLUMNS)
        )
    ).all()
    return sorted((_call(row) for row in rows), key=lambda call: ids.index(call.id))


async def renew(conn: AsyncConnection, ids: Sequence[str], until: datetime) -> None:
    """Extend the claims on calls still running."""
    if ids:
        await conn.execute(
            update(http_calls)
            .where(and_(http_calls.c.id.in_(list(ids)), http_calls.c.done_at.is_(None)))
            .values(claimed_until=until)
        )


async def release(conn: AsyncConnection, ids: Sequence[str]) -> None:
    """Give up the claims (a worker stopping): the next worker takes the calls at once."""
    if ids:
        await conn.execute(
            update(http_calls)
            .where(and_(http_calls.c.id.in_(list(ids)), http_calls.c.done_at.is_(None)))
            .values(claimed_until=None)
        )


def _masked(request: dict[str, Any]) -> dict[str, Any]:
    """What is kept of a done call's request: no body, secret headers and query values masked."""
    try:
        return HttpRequest.from_json(request).redacted()
    except (KeyError, TypeError, ValueError):
        return {}


async def purge(conn: AsyncConnection, before: datetime, limit: int = 10_000) -> int:
    """Forget calls done before ``before`` (their answers were applied long ago)."""
    old = select(http_calls.c.id).where(http_calls.c.done_at < before).limit(limit)
    result = await conn.execute(delete(http_calls).where(http_calls.c.id.in_(old)))
    return int(result.rowcount or 0)
