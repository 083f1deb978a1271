"""Retention: finished processes and their history are deleted once they are old enough.

How long is a policy: ``BRIDGE_RETENTION_DAYS`` (90 by default, as Step Functions keeps a
finished execution), or a definition's own ``RetentionDays``; 0 keeps them for good. The worker
deletes a few hundred at a time, each batch its own short transaction with a pause after it, so
that the engine's transactions never queue behind a long delete; ``bridge purge`` does the same
at once, or with ``--dry-run`` says what would go.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncEngine

from bridge.asl.model import Definition
from bridge.metrics import Metrics
from bridge.store import retention as store
from bridge.store.database import database_now, reading
from bridge.store.retention import Cutoffs, Deleted, Expired

log = logging.getLogger(__name__)

#: Processes deleted per transaction.
BATCH_SIZE = 500
#: The pause after a full batch, so that the engine's transactions go first.
PAUSE_SECONDS = 0.2
#: How often the worker looks for processes past their retention.
CHECK_EVERY_SECONDS = 300.0


class Definitions(Protocol):
    """The deployed definitions (``bridge.definitions.Registry``)."""

    def names(self) -> list[str]: ...

    def latest(self, name: str) -> Definition | None: ...


def days_of(definition: Definition | None, default_days: int) -> int:
    """Days a finished process of ``definition`` (its newest version) is kept."""
    if definition is None or definition.retention_days is None:
        return default_days
    return definition.retention_days


def retention_days(newest: Iterable[Definition], default_days: int) -> dict[str, int]:
    """Days kept per definition name, from each definition's newest version."""
    return {definition.name: days_of(definition, default_days) for definition in newest}


def cutoffs(now: datetime, default_days: int, days: Mapping[str, int]) -> Cutoffs:
    """The end times before which processes go, at ``now``; 0 days is no cutoff."""

    def cutoff(kept: int) -> datetime | None:
        return None if kept == 0 else now - timedelta(days=kept)

    own = {name: cutoff(kept) for name, kept in days.items() if kept != default_days}
    return Cutoffs(cutoff(default_days), own)


def retained_until(ended_at: datetime | None, days: int) -> datetime | None:
    """When a process that ended at ``ended_at`` is deleted; None while it runs, or for good."""
    return None if ended_at is None or days == 0 else ended_at + timedelta(days=days)


class Retention:
    def __init__(
        self,
        db: AsyncEngine,
        definitions: Definitions,
        default_days: int,
        metrics: Metrics | None = None,
        *,
        batch_size: int = BATCH_SIZE,
        pause_seconds: float = PAUSE_SECONDS,
    ) -> None:
        self.db = db
        self.definitions = definitions
        self.default_days = default_days
        self.metrics = metrics
        self.batch_size = batch_size
        self.pause_seconds = pause_seconds

    async def _cutoffs(self, now: datetime | None) -> Cutoffs:
        if now is None:
            async with reading(self.db) as conn:
                now = await database_now(conn)
        newest = [self.definitions.latest(name) for name in self.definitions.names()]
        days = retention_days([d for d in newest if d is not None], self.default_days)
        return cutoffs(now, self.default_days, days)

    async def expired(self, now: datetime | None = None) -> list[Expired]:
        """What would go at ``now`` (default: the database's time), per definition."""
        limits = await self._cutoffs(now)
        async with reading(self.db) as conn:
            return await store.summary(conn, limits)

    async def purge(self, now: datetime | None = None, max_batches: int | None = None) -> Deleted:
        """Delete what is past its retention at ``now``, batch by batch, until nothing is left
        (or ``max_batches`` were deleted)."""
        limits = await self._cutoffs(now)
        counts: dict[str, int] = {}
        chunks = 0
        batches = 0
        while max_batches is None or batches < max_batches:
            async with self.db.begin() as conn:
                deleted = await store.delete_batch(conn, limits, self.batch_size)
            batches += 1
            chunks += deleted.history_chunks
            for name, count in deleted.processes.items():
                counts[name] = counts.get(name, 0) + count
                if self.metrics is not None:
                    self.metrics.retention_deleted.labels(name).inc(count)
            if deleted.total < self.batch_size:
                break
            await asyncio.sleep(self.pause_seconds)
        return Deleted(counts, chunks)

    async def run(self, every_seconds: float = CHECK_EVERY_SECONDS) -> None:
        """The worker's loop: purge, then wait; a failing round is logged and tried later."""
        while True:
            try:
                purged = await self.purge()
                if purged.total:
                    log.info(
                        "retention deleted %d finished process(es): %s",
                        purged.total,
                        ", ".join(f"{name} {n}" for name, n in sorted(purged.processes.items())),
                    )
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("retention could not delete finished processes; trying later")
            await asyncio.sleep(every_seconds)
