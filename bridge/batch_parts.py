"""What a batch's parts share: the record of a process the batch changed (``Touched``), and the
small interfaces of the batch their own protocols are built from: its transaction and tools
(``BatchScope``), loading and stepping a process (``Stepping``), queueing an outbox message
(``Sending``) and what it keeps for its write besides processes (``Bookkeeping``).

``bridge.batch.Batch`` applies one transaction's inputs; its parts (``bridge.correlate``,
``bridge.approval_rows``, ``bridge.child_processes``, ``bridge.effects_writer``,
``bridge.schedule_starts``) each declare, as a ``Protocol``, what they use of it, and none of
them imports it: the module map goes one way, batch → parts → this module.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from opentelemetry.trace import SpanContext
from sqlalchemy.ext.asyncio import AsyncConnection

from bridge import tracing
from bridge.asl import inputs as core
from bridge.asl.effects import HistoryEntry
from bridge.asl.process import Process
from bridge.asl.types import Entropy
from bridge.engine_config import EngineConfig
from bridge.intake import Outcome
from bridge.metrics import Tally
from bridge.store.processes import Loaded
from bridge.wakeups import Written


@dataclass
class Touched:
    """A process changed in this batch and everything to write for it."""

    process: Process
    #: As read (locked) from the store; None for a process started in this batch.
    loaded: Loaded | None
    history: list[HistoryEntry] = field(default_factory=list)
    #: The trace context each history entry was written in, entry by entry.
    traces: list[SpanContext | None] = field(default_factory=list)
    #: The process's own trace context (the one it started in), kept with its row.
    trace: SpanContext | None = None

    @classmethod
    def of(cls, loaded: Loaded) -> Touched:
        return cls(
            loaded.process, loaded, trace=tracing.parse(loaded.traceparent, loaded.tracestate)
        )


class BatchScope(Protocol):
    """The transaction a batch writes in and what it was given to write with."""

    @property
    def conn(self) -> AsyncConnection:
        """The caller's connection: every read and write of the batch goes through it."""
        ...

    @property
    def now(self) -> datetime:
        """The batch's one time, read once (the database's clock unless the engine has one)."""
        ...

    @property
    def config(self) -> EngineConfig: ...

    @property
    def entropy(self) -> Entropy:
        """New ids, as the interpreter takes them: injected, so that tests can fix them."""
        ...


class Stepping(BatchScope, Protocol):
    """Moving a process of the batch: what a part that feeds an input to a process uses."""

    async def load(self, process_id: str) -> Touched | None:
        """Process ``process_id``, locked for the rest of the transaction and kept with those
        the batch touched; None when there is no such process."""
        ...

    def step_process(self, process_id: str, trigger: core.Input) -> Outcome:
        """Step process ``process_id`` (loaded) with ``trigger``; its history and effects are
        kept for the batch's write, and it is blamed if the input at hand raises. A refused
        trigger is a ``conflict`` outcome and changes nothing."""
        ...


class Sending(Protocol):
    """Queueing an outbox message with the batch's write (a dead letter, say)."""

    @property
    def trace(self) -> SpanContext | None:
        """The trace context of the input at hand."""
        ...

    def send(self, row: dict[str, Any], context: SpanContext | None) -> None:
        """An outbox message, written with the batch, sent on in trace context ``context``."""
        ...


class Bookkeeping(Protocol):
    """What a batch keeps for its write besides the processes: the inputs' dedupe marks, the
    counts for the metrics, and what pollers are woken for after the commit."""

    @property
    def marks(self) -> dict[str, dict[str, Any]]:
        """The inputs' dedupe marks (inbox rows) to write, by key."""
        ...

    @property
    def tally(self) -> Tally: ...

    @property
    def written(self) -> Written: ...
