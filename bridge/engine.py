"""The engine: the one path every input takes. Load, step, save, in one transaction.

``Engine.apply(inputs)`` takes a batch (Kafka events, replies, HTTP callbacks, approval decisions,
fired timers, expired buffered events) and applies it as one ``Batch`` in one database
transaction: state (with its pending timers), history, outbox rows, tokens, event waits and the
inputs' dedupe marks commit together. Kafka offsets are committed by the caller after ``apply``
returns.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence

from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bridge import faults, progress, runner
from bridge.asl.types import Clock, Entropy
from bridge.batch import Batch
from bridge.definitions import MissingDefinition, Registry
from bridge.engine_config import EngineConfig
from bridge.failures import Retry, classify
from bridge.group_commit import GroupCommit
from bridge.intake import (
    KINDS,
    BufferExpired,
    CallbackReceived,
    DecisionReceived,
    EngineInput,
    EventReceived,
    InvalidInput,
    Outcome,
    OutcomeStatus,
    PoisonInput,
    RedriveRequested,
    ScheduleDue,
    SeatChangeRequested,
    StartRequested,
    StopRequested,
    SystemEntropy,
    TimerDue,
)
from bridge.metrics import Metrics
from bridge.store.processes import ConcurrentUpdate
from bridge.tracing import Tracing
from bridge.wakeups import Wakeups, Written

__all__ = [
    "BufferExpired",
    "CallbackReceived",
    "DecisionReceived",
    "Engine",
    "EngineConfig",
    "EngineInput",
    "EventReceived",
    "InvalidInput",
    "Outcome",
    "OutcomeStatus",
    "PoisonInput",
    "RedriveRequested",
    "ScheduleDue",
    "SeatChangeRequested",
    "StartRequested",
    "StopRequested",
    "SystemEntropy",
    "TimerDue",
]

log = logging.getLogger(__name__)


class Engine:
    def __init__(
        self,
        db: AsyncEngine,
        registry: Registry,
        config: EngineConfig | None = None,
        *,
        entropy: Entropy | None = None,
        clock: Clock | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        self.db = db
        self.registry = registry
        self.config = config or EngineConfig()
        self.entropy = entropy or SystemEntropy()
        #: None: the database's clock, read at the start of every batch, so that every worker
        #: and web process judges due times alike, whatever its own clock says.
        self.clock = clock
        self.metrics = Metrics()
        #: Spans per input applied; trace context goes on from inputs to processes and outbox.
        self.tracing = tracing or Tracing()
        #: The pollers a commit gives work to: woken at once.
        self.wakeups = Wakeups()
        #: Called in each writing transaction before it commits, with what it wrote: tells
        #: the pollers of other processes (see bridge.announce). None: nobody to tell.
        self.announce: Callable[[AsyncConnection, Written], Awaitable[None]] | None = None
        #: Single inputs (HTTP requests, HTTP calls' answers) go in groups: see apply_one.
        self.group_commit = GroupCommit(self._apply_group)

    @property
    def base_url(self) -> str:
        return self.config.base_url

    async def apply(
        self, batch: Sequence[EngineInput], *, patience: float | None = None
    ) -> list[Outcome]:
        """Apply ``batch``, an outcome per input, in order: in one transaction when it can be,
        else split so that an input that fails is isolated and given up on (see
        ``bridge.runner``). ``patience``: seconds to wait for an unavailable database before
        raising ``runner.Unavailable``; None waits as long as it takes."""
        return await runner.run(self, batch, patience=patience)

    async def apply_one(self, item: EngineInput, *, patience: float | None = None) -> Outcome:
        """Apply one input (an HTTP request's, an HTTP call's answer) together with those that
        arrive while a transaction is written (``bridge.group_commit``)."""
        return await self.group_commit.apply(item, patience)

    async def _apply_group(
        self, batch: Sequence[EngineInput], patience: float | None
    ) -> list[Outcome]:
        return await self.apply(batch, patience=patience)

    async def transact(self, batch: Sequence[EngineInput]) -> list[Outcome]:
        """Apply ``batch`` in one transaction, or raise; tried again at once while another
        writer gets in between (a conflict, a deadlock, a busy SQLite file)."""
        for attempt in range(10):
            try:
                started = time.perf_counter()
                async with self.db.begin() as conn:
                    work = Batch(self, conn)
                    outcomes = await work.run(batch)
                    if self.announce is not None and work.written.anything:
                        await self.announce(conn, work.written)
                    faults.point("after-step-before-commit")
                self.wakeups.after_commit(work.written)
                self.metrics.applied(batch, outcomes, time.perf_counter() - started, work.tally)
                if self.config.log_processes:
                    progress.write((t.process, t.history) for t in work.touched.values())
                return outcomes
            except ConcurrentUpdate:
                if attempt == 9:
                    raise
                log.info("retrying a batch after a concurrent update")
            except MissingDefinition as missing:
                await self.registry.refresh(self.db)
                if self.registry.get(missing.name, missing.version) is None or attempt == 9:
                    raise
                continue
            except DBAPIError as exc:
                if attempt == 9 or classify(exc) is not Retry.NOW:
                    raise
                log.info("retrying a batch after a conflict: %s", type(exc.orig).__name__)
            await asyncio.sleep(0.005 * (attempt + 1))
        raise AssertionError("unreachable")

    async def give_up(
        self, item: EngineInput, reason: str, process_ids: Sequence[str], *, thorough: bool
    ) -> Outcome:
        """Record that ``item`` failed for good (see ``Batch.give_up``), in one transaction."""
        async with self.db.begin() as conn:
            work = Batch(self, conn)
            outcome = await work.give_up(item, reason, process_ids, thorough=thorough)
            if self.announce is not None and work.written.anything:
                await self.announce(conn, work.written)
        self.wakeups.after_commit(work.written)
        self.metrics.counted(work.tally)
        return outcome

    def count_given_up(self, item: EngineInput) -> None:
        self.metrics.given_up.labels(KINDS.get(type(item), "input")).inc()
