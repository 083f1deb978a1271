"""Schedules: their rows, the due ticks the runner looks for, and what each tick did."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from bridge.asl.schedule_times import ScheduleSpec
from bridge.schedule_policy import CatchUp, Overlap
from bridge.store.database import is_postgres
from bridge.store.schema import processes, schedules


@dataclass(frozen=True)
class Schedule:
    id: str
    definition: str
    declared_by: str | None
    spec: ScheduleSpec
    input: Any
    description: str
    overlap: Overlap
    catch_up: CatchUp
    paused: bool
    paused_note: str | None
    next_at: datetime | None
    buffered_at: datetime | None
    last_tick_at: datetime | None
    last_result: str | None
    last_note: str | None
    last_process_id: str | None
    started: int
    skipped: int
    missed: int
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, row: Any) -> Schedule:
        values = dict(row._mapping)
        values["spec"] = ScheduleSpec.from_json(values["spec"])
        values["overlap"] = Overlap(values["overlap"])
        values["catch_up"] = CatchUp(values["catch_up"])
        return cls(**values)


@dataclass(frozen=True)
class Setup:
    """What whoever makes a schedule says of it (the rest is the schedule's own doing)."""

    id: str
    definition: str
    spec: ScheduleSpec
    input: Any
    description: str
    overlap: Overlap
    catch_up: CatchUp
    declared_by: str | None = None


async def get(
    conn: AsyncConnection, schedule_id: str, *, for_update: bool = False
) -> Schedule | None:
    query = select(schedules).where(schedules.c.id == schedule_id)
    if for_update and is_postgres(conn):
        # Two workers looking at the same tick: the second waits, then sees it taken.
        query = query.with_for_update()
    row = (await conn.execute(query)).first()
    return None if row is None else Schedule.of(row)


async def listing(
    conn: AsyncConnection, *, definition: str | None = None, limit: int = 500
) -> list[Schedule]:
    query = select(schedules).order_by(schedules.c.id).limit(limit)
    if definition is not None:
        query = query.where(
            (schedules.c.declared_by == definition) | (schedules.c.definition == definition)
        )
    return [Schedule.of(row) for row in await conn.execute(query)]


async def add(
    conn: AsyncConnection, setup: Setup, *, paused: bool, next_at: datetime | None, now: datetime
) -> None:
    await conn.execute(
        insert(schedules).values(
            **_setup_values(setup),
            paused=paused,
            next_at=next_at,
            started=0,
            skipped=0,
            missed=0,
            created_at=now,
            updated_at=now,
        )
    )


async def replace(
    conn: AsyncConnection, setup: Setup, *, next_at: datetime | None, now: datetime
) -> None:
    """A changed schedule: its new setup and next tick; its history and pause stay."""
    await conn.execute(
        update(schedules)
        .where(schedules.c.id == setup.id)
        .values(**_setup_values(setup), next_at=next_at, updated_at=now)
    )


def _setup_values(setup: Setup) -> dict[str, Any]:
    return {
        "id": setup.id,
        "definition": setup.definition,
        "declared_by": setup.declared_by,
        "spec": setup.spec.to_json(),
        "input": setup.input,
        "description": setup.description,
        "overlap": setup.overlap.value,
        "catch_up": setup.catch_up.value,
    }


async def remove(conn: AsyncConnection, schedule_ids: Sequence[str]) -> int:
    if not schedule_ids:
        return 0
    result = await conn.execute(delete(schedules).where(schedules.c.id.in_(schedule_ids)))
    return result.rowcount or 0


async def set_paused(
    conn: AsyncConnection,
    schedule_id: str,
    *,
    paused: bool,
    note: str | None,
    next_at: datetime | None,
    now: datetime,
) -> None:
    values: dict[str, Any] = {"paused": paused, "paused_note": note, "updated_at": now}
    if not paused:
        # Resumed: ticks that fell while paused are not owed; the next one is after now.
        values["next_at"] = next_at
    await conn.execute(update(schedules).where(schedules.c.id == schedule_id).values(**values))


async def due(conn: AsyncConnection, now: datetime, limit: int) -> list[tuple[str, datetime]]:
    """Running schedules whose next tick has come: ``(id, tick)``, the oldest first."""
    query = (
        select(schedules.c.id, schedules.c.next_at)
        .where(~schedules.c.paused & (schedules.c.next_at <= now))
        .order_by(schedules.c.next_at)
        .limit(limit)
    )
    return [(row.id, row.next_at) for row in await conn.execute(query)]


#: Made once: an alias made per call is ~160 objects in reference cycles (its columns and
#: the alias refer to each other), garbage for the collector at every look of the schedules.
_PREVIOUS = processes.alias("previous")


async def buffered_ready(conn: AsyncConnection, limit: int) -> list[tuple[str, datetime]]:
    """Running schedules with a buffered tick whose previous process no longer runs."""
    previous = _PREVIOUS
    query = (
        select(schedules.c.id, schedules.c.buffered_at)
        .select_from(schedules.outerjoin(previous, previous.c.id == schedules.c.last_process_id))
        .where(
            ~schedules.c.paused
            & schedules.c.buffered_at.is_not(None)
            & ((previous.c.id.is_(None)) | (previous.c.status != "RUNNING"))
        )
        .limit(limit)
    )
    return [(row.id, row.buffered_at) for row in await conn.execute(query)]


async def next_due(conn: AsyncConnection) -> datetime | None:
    query = (
        select(schedules.c.next_at)
        .where(~schedules.c.paused & schedules.c.next_at.is_not(None))
        .order_by(schedules.c.next_at)
        .limit(1)
    )
    found: datetime | None = await conn.scalar(query)
    return found


async def is_running(conn: AsyncConnection, process_id: str | None) -> bool:
    if process_id is None:
        return False
    status = await conn.scalar(select(processes.c.status).where(processes.c.id == process_id))
    return status == "RUNNING"


async def record_tick(
    conn: AsyncConnection,
    schedule_id: str,
    *,
    tick: datetime,
    result: str,
    note: str | None,
    process_id: str | None,
    next_at: datetime | None,
    buffered_at: datetime | None,
    missed: int,
    now: datetime,
) -> None:
    """What the tick ``tick`` did, and where the schedule goes on."""
    values: dict[str, Any] = {
        "last_tick_at": tick,
        "last_result": result,
        "last_note": None if note is None else note[:500],
        "next_at": next_at,
        "buffered_at": buffered_at,
        "missed": schedules.c.missed + missed,
        "updated_at": now,
    }
    if process_id is not None:
        values["last_process_id"] = process_id
        values["started"] = schedules.c.started + 1
    if result == "skipped":
        values["skipped"] = schedules.c.skipped + 1
    await conn.execute(update(schedules).where(schedules.c.id == schedule_id).values(**values))
