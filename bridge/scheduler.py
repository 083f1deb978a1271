"""The timer scanner: turns due timers and expired buffered events into engine inputs, and
forgets event identities and done HTTP calls older than the dedupe retention."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta

from bridge.engine import BufferExpired, Engine, TimerDue
from bridge.poller import poll
from bridge.store import correlation, deliveries, http_calls, inbox, timers
from bridge.store.database import database_now, reading

log = logging.getLogger(__name__)

#: How often old dedupe marks are purged.
PURGE_EVERY_SECONDS = 60.0
#: How often deployed definition versions are looked for.
REFRESH_EVERY_SECONDS = 5.0


class TimerScanner:
    def __init__(
        self,
        engine: Engine,
        *,
        poll_seconds: float,
        batch_size: int,
        retention: timedelta = timedelta(days=7),
    ) -> None:
        self.engine = engine
        self.poll_seconds = poll_seconds
        self.batch_size = batch_size
        self.retention = retention
        self._last_purge = 0.0
        self._last_refresh = time.monotonic()

    async def run(self) -> None:
        await poll(
            self._round,
            name="the timer scan",
            poll_seconds=self.poll_seconds,
            wake=self.engine.wakeups.timer_scanner,
        )

    async def _round(self) -> bool | float:
        """True when a full batch fired (look again at once), else the seconds until the next
        due time (the poll interval caps the rest: another process's timers wake no one here
        on SQLite). One read finds what is due and what comes next."""
        wakeups = self.engine.wakeups
        wakeups.scanner_looking()
        async with reading(self.engine.db) as conn:
            now = await database_now(conn)
            due, stale = await timers.due(conn, now, self.batch_size)
            expired = await correlation.due_expiries(conn, now, self.batch_size)
            upcoming = [await timers.next_due(conn), await correlation.next_expiry(conn)]
        if stale:
            async with self.engine.db.begin() as conn:
                await timers.repair(conn, stale)
        if due:
            await self.engine.apply([TimerDue(timer.id, timer.process_id) for timer in due])
        if expired:
            await self.engine.apply([BufferExpired(item.id) for item in expired])
        await self._purge_now_and_then()
        if max(len(due) + len(stale), len(expired)) >= self.batch_size:
            return True
        # After firing, the soonest is one of those fired: the scan looks again at once.
        soonest = min((at for at in upcoming if at is not None), default=None)
        rest = self.poll_seconds
        if soonest is not None:
            rest = min(rest, max((soonest - now).total_seconds(), 0.0))
        return wakeups.scanner_rests(now, rest)

    async def _purge_now_and_then(self) -> None:
        if time.monotonic() - self._last_refresh >= REFRESH_EVERY_SECONDS:
            # Versions deployed through another process (PUT /definitions) become known here.
            self._last_refresh = time.monotonic()
            await self.engine.registry.refresh(self.engine.db)
        if time.monotonic() - self._last_purge < PURGE_EVERY_SECONDS:
            return
        self._last_purge = time.monotonic()
        before = datetime.now(UTC) - self.retention
        async with self.engine.db.begin() as conn:
            removed = await inbox.purge(conn, before)
            calls = await http_calls.purge(conn, before)
            calls += await deliveries.purge(conn, before)
        if removed:
            log.info("forgot %d event identities older than %s", removed, self.retention)
        if calls:
            log.info(
                "forgot %d HTTP calls and deliveries done before %s", calls, before.isoformat()
            )
