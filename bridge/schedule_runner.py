"""The schedule runner: turns schedules' due ticks into engine inputs.

Every worker runs one. A round reads the schedules whose next tick has come and those whose
buffered tick may start (their previous process ended), and applies a ``ScheduleDue`` for each
through the engine's one path; then it rests until the soonest next tick, or a few seconds (a
schedule made or resumed in another process is seen then). Two workers that find the same tick
both apply it: the schedule's row decides which one starts the process, the other's is ignored.
"""

from __future__ import annotations

from typing import Final

from bridge.engine import Engine, ScheduleDue
from bridge.poller import poll
from bridge.store import schedules as store
from bridge.store.database import database_now, reading

#: The longest rest between two looks.
LOOK_EVERY_SECONDS: Final = 2.0
#: Ticks applied per round (a round with a full batch looks again at once).
BATCH_SIZE: Final = 100


class ScheduleRunner:
    def __init__(
        self,
        engine: Engine,
        *,
        poll_seconds: float = LOOK_EVERY_SECONDS,
        batch_size: int = BATCH_SIZE,
    ) -> None:
        self.engine = engine
        self.poll_seconds = poll_seconds
        self.batch_size = batch_size

    async def run(self) -> None:
        await poll(
            self.round,
            name="the schedules",
            poll_seconds=self.poll_seconds,
            wake=self.engine.wakeups.schedules,
        )

    async def round(self) -> bool | float:
        """True when ticks were applied (look again at once: a late schedule may have more),
        else the seconds until the soonest next tick."""
        async with reading(self.engine.db) as conn:
            now = self.engine.clock() if self.engine.clock is not None else await database_now(conn)
            due = await store.due(conn, now, self.batch_size)
            buffered = await store.buffered_ready(conn, self.batch_size)
            soonest = await store.next_due(conn)
        inputs = [ScheduleDue(schedule_id, tick) for schedule_id, tick in due]
        inputs += [ScheduleDue(schedule_id, tick, buffered=True) for schedule_id, tick in buffered]
        if inputs:
            outcomes = await self.engine.apply(inputs)
            # Only ticks that changed something call for another look at once (a tick that
            # keeps being ignored must not spin the loop).
            if any(outcome.status == "applied" for outcome in outcomes):
                return True
        if soonest is None:
            return self.poll_seconds
        return min(self.poll_seconds, max((soonest - now).total_seconds(), 0.05))
