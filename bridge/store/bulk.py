"""Bulk operations: their rows, and the processes each one applies to, a page at a time."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, insert, select, true, update
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement

from bridge.asl.search_filter import AttributeFilter, parse_all
from bridge.store import search
from bridge.store.schema import bulk_operations, processes


@dataclass(frozen=True)
class ProcessFilter:
    """Which processes: each field set narrows the set (all of them: an AND)."""

    definition: str | None = None
    version: int | None = None
    statuses: tuple[str, ...] = ()
    correlation_key: str | None = None
    started_after: datetime | None = None
    started_before: datetime | None = None
    #: Search attribute filters (``customerId=abc``), every one of which a process passes.
    attributes: tuple[AttributeFilter, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "definition": self.definition,
            "version": self.version,
            "statuses": list(self.statuses),
            "correlationKey": self.correlation_key,
            "startedAfter": None if self.started_after is None else self.started_after.isoformat(),
            "startedBefore": None
            if self.started_before is None
            else self.started_before.isoformat(),
            "where": [found.text() for found in self.attributes],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ProcessFilter:
        def moment(value: Any) -> datetime | None:
            return None if value is None else datetime.fromisoformat(str(value))

        return cls(
            definition=data.get("definition"),
            version=data.get("version"),
            statuses=tuple(data.get("statuses") or ()),
            correlation_key=data.get("correlationKey"),
            started_after=moment(data.get("startedAfter")),
            started_before=moment(data.get("startedBefore")),
            attributes=parse_all(data.get("where") or ()),
        )

    def condition(self) -> ColumnElement[bool]:
        parts: list[ColumnElement[bool]] = []
        if self.definition is not None:
            parts.append(processes.c.definition == self.definition)
        if self.version is not None:
            parts.append(processes.c.version == self.version)
        if self.statuses:
            parts.append(processes.c.status.in_(self.statuses))
        if self.correlation_key is not None:
            parts.append(processes.c.correlation_key == self.correlation_key)
        if self.started_after is not None:
            parts.append(processes.c.started_at >= self.started_after)
        if self.started_before is not None:
            parts.append(processes.c.started_at < self.started_before)
        if self.attributes:
            parts.append(search.condition(self.attributes))
        return and_(true(), *parts)


@dataclass(frozen=True)
class BulkOperation:
    id: str
    action: str
    filter: ProcessFilter
    reason: str
    rate_per_second: int
    status: str
    total: int
    applied: int
    skipped: int
    cursor: str | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None

    @classmethod
    def of(cls, row: Any) -> BulkOperation:
        return cls(
            id=row.id,
            action=row.action,
            filter=ProcessFilter.from_json(row.filter),
            reason=row.reason,
            rate_per_second=row.rate_per_second,
            status=row.status,
            total=row.total,
            applied=row.applied,
            skipped=row.skipped,
            cursor=row.cursor,
            created_at=row.created_at,
            updated_at=row.updated_at,
            finished_at=row.finished_at,
        )


async def count(conn: AsyncConnection, wanted: ProcessFilter) -> int:
    found = await conn.scalar(select(func.count()).where(wanted.condition()))
    return int(found or 0)


async def add(
    conn: AsyncConnection,
    *,
    operation_id: str,
    action: str,
    wanted: ProcessFilter,
    reason: str,
    rate_per_second: int,
    total: int,
    now: datetime,
) -> None:
    await conn.execute(
        insert(bulk_operations).values(
            id=operation_id,
            action=action,
            filter=wanted.to_json(),
            reason=reason,
            rate_per_second=rate_per_second,
            status="RUNNING",
            total=total,
            applied=0,
            skipped=0,
            created_at=now,
            updated_at=now,
        )
    )


async def get(conn: AsyncConnection, operation_id: str) -> BulkOperation | None:
    row = (
        await conn.execute(select(bulk_operations).where(bulk_operations.c.id == operation_id))
    ).first()
    return None if row is None else BulkOperation.of(row)


async def newest(conn: AsyncConnection, limit: int = 100) -> list[BulkOperation]:
    rows = await conn.execute(
        select(bulk_operations).order_by(bulk_operations.c.created_at.desc()).limit(limit)
    )
    return [BulkOperation.of(row) for row in rows]


def _free(now: datetime) -> ColumnElement[bool]:
    return (bulk_operations.c.claimed_until.is_(None)) | (bulk_operations.c.claimed_until < now)


async def any_to_claim(conn: AsyncConnection, now: datetime) -> bool:
    """Whether a running operation waits for a worker (a read: what an idle worker asks)."""
    query = select(bulk_operations.c.id).where((bulk_operations.c.status == "RUNNING") & _free(now))
    return (await conn.execute(query.limit(1))).first() is not None


async def claim(conn: AsyncConnection, now: datetime, lease: timedelta) -> BulkOperation | None:
    """The oldest running operation nobody holds, now held until ``now + lease``; None when
    there is none. Two workers never hold the same one."""
    free = _free(now)
    candidates = (
        await conn.execute(
            select(bulk_operations.c.id)
            .where((bulk_operations.c.status == "RUNNING") & free)
            .order_by(bulk_operations.c.created_at)
            .limit(5)
        )
    ).scalars()
    for operation_id in list(candidates):
        taken = await conn.execute(
            update(bulk_operations)
            .where((bulk_operations.c.id == operation_id) & free)
            .values(claimed_until=now + lease)
        )
        if taken.rowcount == 1:
            return await get(conn, operation_id)
    return None


async def next_ids(
    conn: AsyncConnection, wanted: ProcessFilter, after: str | None, limit: int
) -> list[str]:
    """The ids of matching processes after ``after``, in id order."""
    query = select(processes.c.id).where(wanted.condition())
    if after is not None:
        query = query.where(processes.c.id > after)
    rows = await conn.execute(query.order_by(processes.c.id).limit(limit))
    return list(rows.scalars())


async def progress(
    conn: AsyncConnection,
    operation_id: str,
    *,
    cursor: str | None,
    applied: int,
    skipped: int,
    now: datetime,
    lease: timedelta,
    done: bool,
) -> bool:
    """Record a chunk handled (also when the operation was cancelled meanwhile: what was done
    counts), and its end when ``done``; False when it is no longer running (cancelled)."""
    await conn.execute(
        update(bulk_operations)
        .where(bulk_operations.c.id == operation_id)
        .values(
            cursor=cursor,
            applied=bulk_operations.c.applied + applied,
            skipped=bulk_operations.c.skipped + skipped,
            updated_at=now,
        )
    )
    running = (bulk_operations.c.id == operation_id) & (bulk_operations.c.status == "RUNNING")
    if done:
        await conn.execute(
            update(bulk_operations)
            .where(running)
            .values(status="DONE", finished_at=now, claimed_until=None)
        )
        return False
    held = await conn.execute(
        update(bulk_operations).where(running).values(claimed_until=now + lease)
    )
    return held.rowcount == 1


async def cancel(conn: AsyncConnection, operation_id: str, now: datetime) -> bool:
    """Stop a running operation; False when it is not running."""
    result = await conn.execute(
        update(bulk_operations)
        .where((bulk_operations.c.id == operation_id) & (bulk_operations.c.status == "RUNNING"))
        .values(status="CANCELLED", finished_at=now, updated_at=now, claimed_until=None)
    )
    return result.rowcount == 1
