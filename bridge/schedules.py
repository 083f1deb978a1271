"""Schedules: made through the API or declared by a definition, paused, resumed, shown.

A schedule starts a process of its definition at each tick (``bridge.asl.schedule_times``):
the worker's ``ScheduleRunner`` finds due ticks and the engine applies them
(``bridge.schedule_starts``). This module is what people do with schedules:

- ``put``: make or change one through the API (``PUT /schedules/{id}``, ``bridge schedules
  put``). A changed spec takes effect from now; an unchanged one keeps its next tick.
- ``sync_declared``: a deployed version's ``Schedules`` become schedules with ids
  ``DEFINITION.NAME``, in the deploy's transaction; those it no longer declares go.
- ``pause`` / ``resume``: a paused schedule starts nothing; resumed, it goes on with its next
  tick after now (ticks that fell while paused are not owed).
- ``next_runs``: the ticks to come, as pages and the API show them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final

from sqlalchemy.ext.asyncio import AsyncConnection

from bridge.asl.errors import BridgeError
from bridge.asl.model import SCHEDULE_NAME
from bridge.asl.schedule_times import next_after, upcoming
from bridge.engine import Engine
from bridge.schedule_setup import Request, ScheduleRefused, setup_of, write
from bridge.store import schedules as store
from bridge.store.database import database_now, reading
from bridge.store.schedules import Schedule

#: A schedule made through the API: letters, digits, ``_`` and ``-`` (no dot: ids with a dot
#: are a definition's, ``DEFINITION.NAME``).
SCHEDULE_ID: Final = SCHEDULE_NAME
#: How many next runs a schedule shows.
NEXT_RUNS: Final = 5


class ScheduleNotFound(BridgeError):
    pass


async def _now(engine: Engine, conn: AsyncConnection) -> datetime:
    return engine.clock() if engine.clock is not None else await database_now(conn)


async def put(engine: Engine, schedule_id: str, request: Request) -> tuple[Schedule, bool]:
    """Make or change the API schedule ``schedule_id``: ``(schedule, made)``."""
    setup = setup_of(schedule_id, request)
    async with engine.db.begin() as conn:
        now = await _now(engine, conn)
        existing = await store.get(conn, schedule_id, for_update=True)
        if existing is not None and existing.declared_by is not None:
            raise ScheduleRefused(
                [
                    f"schedule {schedule_id} is declared by definition {existing.declared_by}: "
                    "change its Schedules and deploy it"
                ]
            )
        await write(conn, setup, existing, request.paused, now)
        found = await store.get(conn, schedule_id)
    assert found is not None
    engine.wakeups.schedules.set()
    return found, existing is None


async def set_paused(
    engine: Engine, schedule_id: str, *, paused: bool, note: str | None = None
) -> Schedule:
    """Pause or resume; ``ScheduleNotFound`` when there is no such schedule."""
    async with engine.db.begin() as conn:
        now = await _now(engine, conn)
        found = await store.get(conn, schedule_id, for_update=True)
        if found is None:
            raise ScheduleNotFound(schedule_id)
        if found.paused != paused:
            await store.set_paused(
                conn,
                schedule_id,
                paused=paused,
                note=note,
                next_at=next_after(found.spec, now),
                now=now,
            )
        elif paused and note:
            await store.set_paused(conn, schedule_id, paused=True, note=note, next_at=None, now=now)
        changed = await store.get(conn, schedule_id)
    assert changed is not None
    engine.wakeups.schedules.set()
    return changed


async def delete(engine: Engine, schedule_id: str) -> None:
    async with engine.db.begin() as conn:
        found = await store.get(conn, schedule_id, for_update=True)
        if found is None:
            raise ScheduleNotFound(schedule_id)
        if found.declared_by is not None:
            raise ScheduleRefused(
                [
                    f"schedule {schedule_id} is declared by definition {found.declared_by}: "
                    "remove it from its Schedules and deploy it, or pause it"
                ]
            )
        await store.remove(conn, [schedule_id])


async def get(engine: Engine, schedule_id: str) -> Schedule | None:
    async with reading(engine.db) as conn:
        return await store.get(conn, schedule_id)


async def listing(engine: Engine, definition: str | None = None) -> list[Schedule]:
    async with reading(engine.db) as conn:
        return await store.listing(conn, definition=definition)


def next_runs(schedule: Schedule, count: int = NEXT_RUNS) -> list[datetime]:
    """The ticks to come, from the one it waits for; none while paused."""
    if schedule.paused or schedule.next_at is None:
        return []
    return [schedule.next_at, *upcoming(schedule.spec, schedule.next_at, count - 1)]


__all__ = [
    "Request",
    "ScheduleNotFound",
    "ScheduleRefused",
    "delete",
    "get",
    "listing",
    "next_runs",
    "put",
    "set_paused",
    "setup_of",
]
