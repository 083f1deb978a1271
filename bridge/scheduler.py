"""The timer scanner: turns due timers into ``TimerDue`` inputs of the engine."""

from __future__ import annotations

import asyncio
import logging

from bridge.engine import Engine, TimerDue
from bridge.store import timers
from bridge.store.database import reading

log = logging.getLogger(__name__)


class TimerScanner:
    def __init__(self, engine: Engine, *, poll_seconds: float, batch_size: int) -> None:
        self.engine = engine
        self.poll_seconds = poll_seconds
        self.batch_size = batch_size

    async def run(self) -> None:
        while True:
            try:
                fired = await self.fire_due()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("the timer scan failed")
                fired = 0
            if fired < self.batch_size:
                await asyncio.sleep(self.poll_seconds)

    async def fire_due(self) -> int:
        async with reading(self.engine.db) as conn:
            due = await timers.due(conn, self.batch_size)
        if due:
            await self.engine.apply([TimerDue(timer.id, timer.process_id) for timer in due])
        return len(due)
