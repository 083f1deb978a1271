"""What a commit wakes: the relay, the HTTP invoker, the deliverer, the timer scanner.

The pollers rest while there is nothing to do (``bridge.poller``); a commit that gives one of
them work wakes it, so nothing waits for a poll interval. The timer scanner rests until the
earliest due time it knows of; a commit wakes it only when it wrote something due sooner, so
that the timeouts every task writes, due minutes later, do not wake it once per batch. A commit
made while the scanner looks (its reads may have missed it) does not wake it either: the look
rests no longer than until the earliest such due time. Waking it instead kept it looking
round after round under a steady load, each look the time of a few batches long.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime, timedelta


@dataclass
class Written:
    """What one transaction wrote that a poller acts on."""

    outbox: bool = False
    http_calls: bool = False
    #: Approval notices to deliver (bridge.deliverer).
    deliveries: bool = False
    #: The earliest due time among the timers and buffered events it wrote.
    earliest_due: datetime | None = None

    def due(self, at: datetime) -> None:
        if self.earliest_due is None or at < self.earliest_due:
            self.earliest_due = at

    @property
    def anything(self) -> bool:
        return self.outbox or self.http_calls or self.deliveries or self.earliest_due is not None


@dataclass
class Wakeups:
    relay: asyncio.Event = field(default_factory=asyncio.Event)
    http_invoker: asyncio.Event = field(default_factory=asyncio.Event)
    deliverer: asyncio.Event = field(default_factory=asyncio.Event)
    timer_scanner: asyncio.Event = field(default_factory=asyncio.Event)
    #: A bulk operation was asked for in this process (bridge.bulk).
    bulk: asyncio.Event = field(default_factory=asyncio.Event)
    #: A schedule was made, changed or resumed in this process (bridge.schedules).
    schedules: asyncio.Event = field(default_factory=asyncio.Event)
    #: When the timer scanner looks next, by the database's clock; None: it is looking now.
    scanner_looks_at: datetime | None = None
    #: The earliest due time committed while the scanner looked.
    due_while_looking: datetime | None = None

    def after_commit(self, written: Written) -> None:
        if written.outbox:
            self.relay.set()
        if written.http_calls:
            self.http_invoker.set()
        if written.deliveries:
            self.deliverer.set()
        due = written.earliest_due
        if due is None:
            return
        if self.scanner_looks_at is None:
            if self.due_while_looking is None or due < self.due_while_looking:
                self.due_while_looking = due
        elif due < self.scanner_looks_at:
            self.timer_scanner.set()

    def scanner_looking(self) -> None:
        """The scanner starts a look: what commits from now on is due by ``scanner_rests``."""
        self.scanner_looks_at = None
        self.due_while_looking = None

    def scanner_rests(self, now: datetime, rest: float) -> float:
        """The scanner looked at ``now`` and would rest ``rest`` seconds: the seconds it rests,
        no longer than until something committed during the look is due."""
        if self.due_while_looking is not None:
            rest = min(rest, max((self.due_while_looking - now).total_seconds(), 0.0))
        self.due_while_looking = None
        self.scanner_looks_at = now + timedelta(seconds=rest)
        return rest
