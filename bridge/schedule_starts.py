"""Schedules, shell part: what a batch does with a due tick (``ScheduleDue``).

The schedule's row is read for update, the tick checked against it (a tick another worker has
handled is ignored), the pure ``schedule_policy`` decides, and the start, the schedule's next
tick and what became of this one are written in the batch's one transaction. The process id is
derived from the schedule and the tick, so a tick never starts two processes, whatever races or
crashes come between.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncConnection

from bridge.aliases import Reference, parse_reference
from bridge.asl import inputs as core
from bridge.asl.model import Definition
from bridge.asl.schedule_times import next_after
from bridge.intake import Outcome, ScheduleDue
from bridge.metrics import Tally
from bridge.schedule_policy import Decision, Overlap, TickResult, decide_buffered, decide_due
from bridge.store import schedules as store
from bridge.store.schedules import Schedule


class Starter(Protocol):
    """What starting a scheduled process needs of the batch (``bridge.batch.Batch``)."""

    conn: AsyncConnection
    now: datetime
    tally: Tally

    async def exists(self, process_id: str) -> bool: ...

    async def definition_to_start(
        self, reference: Reference, version: int | None, process_id: str
    ) -> Definition | Outcome: ...

    def start_process(self, process_id: str, definition: Definition, start: core.Start) -> None: ...


def process_id_of(schedule_id: str, tick: datetime) -> str:
    """The one process a schedule's tick may start."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"bridge:schedule:{schedule_id}:{tick.isoformat()}"))


class ScheduleStarts:
    def __init__(self, batch: Starter) -> None:
        self.batch = batch

    async def due(self, item: ScheduleDue) -> Outcome:
        conn, now = self.batch.conn, self.batch.now
        schedule = await store.get(conn, item.schedule_id, for_update=True)
        if schedule is None:
            return Outcome("not_found", "no such schedule")
        if schedule.paused:
            return Outcome("ignored", "the schedule is paused")
        decision: Decision | None
        if item.buffered:
            running = await store.is_running(conn, schedule.last_process_id)
            decision = decide_buffered(
                schedule.buffered_at, item.tick, schedule.next_at, previous_running=running
            )
            if decision is None:
                return Outcome("ignored", "the buffered tick was started, or still waits")
        else:
            if schedule.next_at != item.tick:
                return Outcome("ignored", "the tick was handled already")
            running = schedule.overlap is not Overlap.ALLOW and await store.is_running(
                conn, schedule.last_process_id
            )
            decision = decide_due(
                schedule.spec,
                schedule.overlap,
                schedule.catch_up,
                item.tick,
                now,
                previous_running=running,
                buffered_at=schedule.buffered_at,
            )
        result, note, process_id = decision.result, _note(decision, schedule), None
        if decision.start is not None:
            started = await self._start(schedule, decision.start)
            if isinstance(started, Outcome):
                result, note = TickResult.FAILED, started.reason
            else:
                process_id = started
        await store.record_tick(
            conn,
            schedule.id,
            tick=decision.start or item.tick,
            result=result.value,
            note=note,
            process_id=process_id,
            next_at=decision.next_at,
            buffered_at=decision.buffered_at,
            missed=decision.missed,
            now=now,
        )
        ticks = self.batch.tally.schedule_ticks
        if result is not TickResult.MISSED:
            ticks[result.value] += 1
        if decision.missed:
            ticks[TickResult.MISSED.value] += decision.missed
        return Outcome("applied", note or result.value, (process_id,) if process_id else ())

    async def _start(self, schedule: Schedule, tick: datetime) -> str | Outcome:
        """Start the tick's process; its id, or why it could not be started."""
        process_id = process_id_of(schedule.id, tick)
        if await self.batch.exists(process_id):
            return process_id
        reference = parse_reference(schedule.definition)
        definition = await self.batch.definition_to_start(reference, None, process_id)
        if isinstance(definition, Outcome):
            return definition
        origin = {
            "via": "schedule",
            "schedule": schedule.id,
            "scheduledAt": tick.isoformat(),
            **({"alias": reference.alias} if reference.alias else {}),
        }
        start = core.Start(process_id, schedule.input, None, origin)
        self.batch.start_process(process_id, definition, start)
        return process_id

    async def given_up(self, item: ScheduleDue, reason: str) -> None:
        """A tick whose start kept failing: recorded as failed, and the schedule goes on with
        its next tick (else the runner would find the same tick due for ever)."""
        conn, now = self.batch.conn, self.batch.now
        schedule = await store.get(conn, item.schedule_id, for_update=True)
        if schedule is None:
            return
        buffered = schedule.buffered_at
        if item.buffered:
            buffered, next_at = None, schedule.next_at
        elif schedule.next_at != item.tick:
            return
        else:
            next_at = next_after(schedule.spec, max(item.tick, now))
        await store.record_tick(
            conn,
            schedule.id,
            tick=item.tick,
            result=TickResult.FAILED.value,
            note=reason,
            process_id=None,
            next_at=next_at,
            buffered_at=buffered,
            missed=0,
            now=now,
        )
        self.batch.tally.schedule_ticks[TickResult.FAILED.value] += 1


def _note(decision: Decision, schedule: Schedule) -> str | None:
    match decision.result:
        case TickResult.SKIPPED:
            return f"skipped: process {schedule.last_process_id} still runs"
        case TickResult.BUFFERED:
            return f"buffered until process {schedule.last_process_id} ends"
        case TickResult.MISSED:
            return f"{decision.missed} tick(s) missed while no worker ran (catch-up Skip)"
    if decision.missed:
        return f"{decision.missed} earlier tick(s) missed while no worker ran; ran once"
    return None
