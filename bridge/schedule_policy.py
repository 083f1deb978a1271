"""What a schedule's due tick does: start a process, skip, buffer it, or catch up on missed ones.

Pure: the decision takes the schedule's policies, the tick, the moment it is looked at and
whether the schedule's previous process still runs, and says what to start and when to look
next. ``bridge.schedule_starts`` carries it out in the engine's transaction.

- Overlap (the previous process still runs): ``Skip`` the tick, ``Allow`` another process, or
  ``BufferOne``: keep one tick and start it when the previous process ends (further ticks in
  the meantime are skipped).
- Catch-up (ticks fell while no worker ran: the tick is more than ``GRACE`` late): ``RunOnce``
  starts one process for the latest missed tick; ``Skip`` starts none. Either way the schedule
  goes on with its next tick after now, never with a burst of old ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Final

from bridge.asl.schedule_times import ScheduleSpec, next_after, ticks_until

#: A tick looked at later than this was missed (no worker ran, or the database was away).
GRACE: Final = timedelta(seconds=60)
#: Missed ticks are counted up to here (a fast rate over a long downtime is "1000 or more").
MISSED_COUNT_CAP: Final = 1000


class Overlap(StrEnum):
    SKIP = "Skip"
    ALLOW = "Allow"
    BUFFER_ONE = "BufferOne"


class CatchUp(StrEnum):
    SKIP = "Skip"
    RUN_ONCE = "RunOnce"


class TickResult(StrEnum):
    """What became of a tick (the schedule's ``lastResult``)."""

    STARTED = "started"
    #: The previous process still ran (overlap Skip, or BufferOne with one buffered already).
    SKIPPED = "skipped"
    #: Kept until the previous process ends (overlap BufferOne).
    BUFFERED = "buffered"
    #: Late, and the catch-up policy is Skip.
    MISSED = "missed"
    #: A start that could not be made (no such definition, a start the definition refuses).
    FAILED = "failed"


@dataclass(frozen=True)
class Decision:
    #: The tick to start a process for (its identity); None: no start.
    start: datetime | None
    result: TickResult
    #: The schedule's next tick; None: it has none (a one-off time done).
    next_at: datetime | None
    #: The tick kept for when the previous process ends, if any.
    buffered_at: datetime | None
    #: Ticks that fell while no one looked and got no process of their own.
    missed: int = 0


def decide_due(
    spec: ScheduleSpec,
    overlap: Overlap,
    catch_up: CatchUp,
    tick: datetime,
    now: datetime,
    *,
    previous_running: bool,
    buffered_at: datetime | None,
) -> Decision:
    """What the due tick ``tick`` (the schedule's next one, at or before ``now``) does."""
    candidate: datetime | None = tick
    missed = 0
    next_at = next_after(spec, tick)
    if now - tick > GRACE:
        latest, count = ticks_until(spec, tick, now, MISSED_COUNT_CAP)
        next_at = next_after(spec, now)
        on_time = now - latest <= GRACE
        if catch_up is CatchUp.RUN_ONCE or on_time:
            candidate, missed = latest, count - 1
        else:
            candidate, missed = None, count
    if candidate is None:
        return Decision(None, TickResult.MISSED, next_at, buffered_at, missed)
    if previous_running and overlap is not Overlap.ALLOW:
        if overlap is Overlap.BUFFER_ONE and buffered_at is None:
            return Decision(None, TickResult.BUFFERED, next_at, candidate, missed)
        return Decision(None, TickResult.SKIPPED, next_at, buffered_at, missed)
    return Decision(candidate, TickResult.STARTED, next_at, buffered_at, missed)


def decide_buffered(
    buffered_at: datetime | None,
    tick: datetime,
    next_at: datetime | None,
    *,
    previous_running: bool,
) -> Decision | None:
    """What the buffered tick ``tick`` does once looked at: start when the previous process has
    ended; None when there is nothing to do (it was started or dropped already, or the previous
    process still runs)."""
    if buffered_at != tick or previous_running:
        return None
    return Decision(tick, TickResult.STARTED, next_at, None)
