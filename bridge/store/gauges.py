"""What the database-wide gauges of ``/metrics`` read: one short read transaction per scrape."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from bridge.asl.approvals import ApprovalStatus
from bridge.store.database import database_now
from bridge.store.schema import approvals, outbox, processes


@dataclass(frozen=True)
class DatabaseGauges:
    now: datetime
    #: (definition, status, count) for every pair that has processes.
    processes: list[tuple[str, str, int]]
    #: Messages waiting to be published (parked ones left out), and when the oldest was written.
    outbox_backlog: int
    outbox_oldest: datetime | None
    outbox_parked: int
    #: When the most overdue timer was due (None: no timer).
    earliest_timer: datetime | None
    pending_approvals: int


async def read(conn: AsyncConnection) -> DatabaseGauges:
    now = await database_now(conn)
    rows = await conn.execute(
        select(processes.c.definition, processes.c.status, func.count()).group_by(
            processes.c.definition, processes.c.status
        )
    )
    counted = [(str(definition), str(status), int(count)) for definition, status, count in rows]
    waiting = outbox.c.parked_at.is_(None)
    # A row holds many messages; a parked row holds one.
    backlog, oldest, parked = (
        await conn.execute(
            select(
                func.coalesce(func.sum(outbox.c.message_count).filter(waiting), 0),
                func.min(outbox.c.created_at).filter(waiting),
                func.count().filter(~waiting),
            )
        )
    ).one()
    earliest = await conn.scalar(select(func.min(processes.c.wake_at)))
    pending = await conn.scalar(
        select(func.count())
        .select_from(approvals)
        .where(approvals.c.status == ApprovalStatus.PENDING.value)
    )
    return DatabaseGauges(
        now, counted, int(backlog), oldest, int(parked), earliest, int(pending or 0)
    )
