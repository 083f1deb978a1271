"""What the crash tests' rig observes and concludes: the history of one order when everything
happened exactly once, what the simulated services saw, the ``Result`` of a scenario (lost,
duplicated, redelivered, recovery time) and its report line."""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from aiokafka.structs import ConsumerRecord

Record: TypeAlias = "ConsumerRecord[bytes, bytes]"

#: What the history of one order says, step by step, when everything happened exactly once.
SMALL_ORDER_HISTORY = [
    ("ProcessStarted", None),
    ("StateEntered", "ReserveInventory"),
    ("CommandEmitted", "ReserveInventory"),
    ("TaskSucceeded", "ReserveInventory"),
    ("StateExited", "ReserveInventory"),
    ("StateEntered", "ChargePayment"),
    ("CommandEmitted", "ChargePayment"),
    ("TaskSucceeded", "ChargePayment"),
    ("StateExited", "ChargePayment"),
    ("StateEntered", "CheckAmount"),
    ("StateExited", "CheckAmount"),
    ("StateEntered", "CompleteOrder"),
    ("CommandEmitted", "CompleteOrder"),
    ("StateExited", "CompleteOrder"),
    ("ProcessSucceeded", "CompleteOrder"),
]
_APPROVAL = [
    ("StateEntered", "ApproveOrder"),
    ("ApprovalRequested", "ApproveOrder"),
    ("ApprovalVoted", "ApproveOrder"),
    ("ApprovalDecided", "ApproveOrder"),
    ("StateExited", "ApproveOrder"),
]
BIG_ORDER_HISTORY = SMALL_ORDER_HISTORY[:11] + _APPROVAL + SMALL_ORDER_HISTORY[11:]

#: Output kinds: one message of each per order (approvals only for big orders).
KINDS = ("ReserveInventory", "ChargePayment", "approval", "OrderCompleted")


def now() -> float:
    return time.monotonic()


def header(record: Record, name: str) -> str | None:
    for key, value in record.headers or ():
        if key == name:
            return value.decode("utf-8", "replace") if value is not None else None
    return None


@dataclass
class Observed:
    sent_at: dict[str, float] = field(default_factory=dict)
    big: set[str] = field(default_factory=set)
    #: kind -> ce_id -> deliveries seen by the services
    deliveries: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    completed_at: dict[str, float] = field(default_factory=dict)
    replies_sent: int = 0
    duplicate_replies_sent: int = 0
    approvals_posted: int = 0
    approval_answers: Counter[str] = field(default_factory=Counter)
    stray: Counter[str] = field(default_factory=Counter)
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def see(self, kind: str, ce_id: str) -> bool:
        """Count one delivery; True when its ce_id is new (a service acts on it)."""
        self.deliveries[kind][ce_id] += 1
        return self.deliveries[kind][ce_id] == 1

    def check_done(self) -> None:
        if self.sent_at and self.sent_at.keys() <= self.completed_at.keys():
            self.done.set()


@dataclass
class Result:
    scenario: str
    events_in: int
    completed: int
    lost: list[str]
    duplicated: dict[str, int]
    redelivered: dict[str, int]
    inbox_duplicates: int
    recovery_s: float | None
    all_done_s: float | None
    problems: list[str]
    notes: list[str] = field(default_factory=list)

    def line(self) -> str:
        def total(counts: dict[str, int]) -> str:
            detail = ", ".join(f"{kind} {count}" for kind, count in counts.items() if count)
            return f"{sum(counts.values())}" + (f" ({detail})" if detail else "")

        recovery = "n/a" if self.recovery_s is None else f"{self.recovery_s:.1f}s"
        all_done = "n/a" if self.all_done_s is None else f"{self.all_done_s:.1f}s"
        return (
            f"FAULTS {self.scenario}: events in {self.events_in}, processes completed "
            f"{self.completed}, lost {len(self.lost)}, duplicated effects "
            f"{total(self.duplicated)}, redelivered copies (same ce_id) "
            f"{total(self.redelivered)}, duplicate events dropped by the inbox "
            f"{self.inbox_duplicates}, recovery {recovery} (all done {all_done} after the fault)"
            + (f"; {'; '.join(self.notes)}" if self.notes else "")
        )


def history_diff(got: list[tuple[str, str | None]], wanted: list[tuple[str, str | None]]) -> str:
    extra = Counter(got) - Counter(wanted)
    missing = Counter(wanted) - Counter(got)
    return f"extra {dict(extra)}, missing {dict(missing)}"


def grep(text: str, word: str, limit: int = 3) -> str:
    return " | ".join([line for line in text.splitlines() if word in line][:limit])


def report(result: Result, request: Any | None = None) -> None:
    """Print the scenario's line (pytest -s shows it) and attach it to the test report."""
    line = result.line()
    print("\n" + line)
    if result.problems:
        print("  problems:\n    " + "\n    ".join(result.problems[:30]))
    if request is not None:
        request.node.user_properties.append(("faults", line))
