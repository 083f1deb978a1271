"""The one runner for every input path: apply a batch, and isolate the input that breaks it.

Kafka events and replies, HTTP starts, callbacks, decisions, stops and redrives, fired timers,
expired buffered events and the answers of HTTP calls all come through here. A batch is applied
in one transaction (``Applier.transact``); when that fails:

- because the database is away (``Retry.LATER``): the same batch again after a pause, for as
  long as it takes, or until the caller's patience runs out (an HTTP request cannot wait
  forever): ``Unavailable``;
- because of what the batch holds (``Retry.NEVER``, or a conflict that kept coming back): the
  batch is split, around the input that raised when that one is known, else in halves, so that
  the good inputs commit and the bad one is found. An input that fails alone ``MAX_ATTEMPTS``
  times is given up on (``Applier.give_up``): a Kafka input goes to the dead-letter topic with
  its reason and position, a timer or an internal input fails its process with
  ``Bridge.InputFailed``, an HTTP input is answered with the reason.

Order is kept: the parts of a split batch are applied one after the other, in order.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any, Protocol, assert_never

from sqlalchemy.exc import DBAPIError

from bridge import logs
from bridge.asl.errors import BridgeError
from bridge.asl.limits import clean_text
from bridge.failures import Retry, classify, sqlstate
from bridge.intake import (
    KINDS,
    BufferExpired,
    CallbackReceived,
    DecisionReceived,
    DeliveryEnded,
    EngineInput,
    EventReceived,
    HttpCallEnded,
    InvalidInput,
    Outcome,
    PoisonInput,
    RedriveRequested,
    ScheduleDue,
    SeatChangeRequested,
    StartRequested,
    StopRequested,
    TimerDue,
)
from bridge.poller import backoff

log = logging.getLogger(__name__)

#: How often one input alone is tried before it is given up on.
MAX_ATTEMPTS = 3
#: The first and the longest pause between two tries while the database is away (the pauses
#: double in between, as the pollers' do).
FIRST_PAUSE_SECONDS = 0.05
MAX_PAUSE_SECONDS = 5.0
#: The longest text kept of why an input failed.
MAX_REASON = 2000


class Unavailable(BridgeError):
    """The database stayed away longer than the caller would wait; nothing was applied."""


class Applier(Protocol):
    """What the runner needs of the engine."""

    async def transact(self, batch: Sequence[EngineInput]) -> list[Outcome]:
        """Apply ``batch`` in one transaction, or raise."""

    async def give_up(
        self, item: EngineInput, reason: str, process_ids: Sequence[str], *, thorough: bool
    ) -> Outcome:
        """Record that ``item`` failed for good, in one transaction. ``thorough``: also fail
        the processes it was stepping (a first try); without, only what must be kept (the
        dead letter, the input's mark, a timer's removal)."""

    def count_given_up(self, item: EngineInput) -> None:
        """Count an input given up on."""


async def run(
    applier: Applier, inputs: Sequence[EngineInput], *, patience: float | None = None
) -> list[Outcome]:
    """Apply ``inputs``, isolating any that fails; an outcome per input, in order.

    ``patience``: how many seconds to wait for an unavailable database before raising
    ``Unavailable``; None waits as long as it takes (a Kafka partition must not move past its
    inputs). Cancellation is honoured at once, whatever is under way.
    """
    if not inputs:
        return []
    deadline = None if patience is None else time.monotonic() + patience
    return await _run(applier, list(inputs), deadline)


async def _run(
    applier: Applier, inputs: list[EngineInput], deadline: float | None
) -> list[Outcome]:
    outages = 0
    attempts = 0
    while True:
        try:
            return await applier.transact(inputs)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            failure = exc.cause if isinstance(exc, PoisonInput) else exc
            verdict = Retry.NEVER if isinstance(exc, PoisonInput) else classify(exc)
            if verdict is Retry.LATER:
                outages += 1
                pause = backoff(FIRST_PAUSE_SECONDS, outages, MAX_PAUSE_SECONDS)
                if deadline is not None and time.monotonic() + pause > deadline:
                    raise Unavailable(_why(exc)) from exc
                log.warning("the database is unavailable (%s); retrying in %.1fs", _why(exc), pause)
                await asyncio.sleep(pause)
                continue
            # NEVER, or NOW after the engine's own tries: the batch itself is the trouble.
            if len(inputs) > 1:
                parts = _split(inputs, exc)
                log.warning(
                    "a batch of %d inputs failed (%s); applying it in %d parts",
                    len(inputs),
                    _why(failure),
                    len(parts),
                )
                return [
                    outcome for part in parts for outcome in await _run(applier, part, deadline)
                ]
            attempts += 1
            item = inputs[0]
            if attempts < MAX_ATTEMPTS:
                log.warning(
                    "%s failed (attempt %d of %d): %s",
                    describe(item),
                    attempts,
                    MAX_ATTEMPTS,
                    _why(failure),
                )
                await asyncio.sleep(0.02 * attempts)
                continue
            process_ids = exc.process_ids if isinstance(exc, PoisonInput) else ()
            reason = clean_text(f"failed {attempts} times: {_why(failure)}", MAX_REASON)
            return [await _give_up(applier, item, reason, process_ids, deadline)]


def _split(inputs: list[EngineInput], exc: Exception) -> list[list[EngineInput]]:
    """The parts to apply one after the other: around the input that raised, else halves."""
    if isinstance(exc, PoisonInput) and 0 <= exc.index < len(inputs):
        index = exc.index
        parts = [inputs[:index], inputs[index : index + 1], inputs[index + 1 :]]
    else:
        middle = len(inputs) // 2
        parts = [inputs[:middle], inputs[middle:]]
    return [part for part in parts if part]


async def _give_up(
    applier: Applier,
    item: EngineInput,
    reason: str,
    process_ids: Sequence[str],
    deadline: float | None,
) -> Outcome:
    """Record the failure; if even that is refused, record less; if that is refused too, log it
    and let the input go, rather than hold everything behind it."""
    with logs.about(**_context_of(item)):
        log.error("giving up on %s: %s", describe(item), reason)
    applier.count_given_up(item)
    outages = 0
    for thorough in (True, False):
        while True:
            try:
                return await applier.give_up(item, reason, process_ids, thorough=thorough)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if classify(exc) is not Retry.LATER:
                    log.error(
                        "could not record the failure of %s%s: %s",
                        describe(item),
                        "" if thorough else " (even without its processes)",
                        _why(exc),
                    )
                    break
                outages += 1
                pause = backoff(FIRST_PAUSE_SECONDS, outages, MAX_PAUSE_SECONDS)
                if deadline is not None and time.monotonic() + pause > deadline:
                    raise Unavailable(_why(exc)) from exc
                await asyncio.sleep(pause)
    return Outcome("invalid", reason, tuple(process_ids))


def _why(exc: BaseException) -> str:
    """A short, single-line reason; a database error by its code and first line, never the
    statement or its parameters (they may hold the very value that was refused)."""
    if isinstance(exc, DBAPIError):
        original = exc.orig
        code = sqlstate(exc) or getattr(original, "sqlite_errorname", None)
        first = str(original).strip().splitlines()[0] if str(original).strip() else ""
        kind = type(original).__name__ if original is not None else type(exc).__name__
        return clean_text(f"the database refused it ({code or kind}): {first}", 500)
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return clean_text(f"{type(exc).__name__}: {text}" if text else type(exc).__name__, 500)


def describe(item: EngineInput) -> str:
    """What an input is, for logs: where it came from, never a token."""
    kind = KINDS.get(type(item), "input")
    match item:
        case EventReceived(record=record) | InvalidInput(record=record):
            return f"{kind} at {record.position}"
        case CallbackReceived(via=via, record=record):
            return f"callback via {via}" + (f" at {record.position}" if record else "")
        case TimerDue(timer_id=timer_id, process_id=process_id):
            return f"timer {timer_id} of process {process_id}"
        case BufferExpired(buffer_id=buffer_id):
            return f"expiry of buffered event {buffer_id}"
        case HttpCallEnded(call_id=call_id):
            return f"answer of HTTP call {call_id}"
        case DeliveryEnded(delivery_id=delivery_id):
            return f"end of delivery {delivery_id}"
        case StartRequested(definition=definition):
            return f"start of {definition}"
        case SeatChangeRequested(approval_id=approval_id, action=action):
            return f"{action} of a seat of approval {approval_id}"
        case ScheduleDue(schedule_id=schedule_id, tick=tick):
            return f"tick {tick.isoformat()} of schedule {schedule_id}"
        case StopRequested(process_id=process_id) | RedriveRequested(process_id=process_id):
            return f"{kind} of process {process_id}"
        case DecisionReceived():
            return kind
        case _:
            assert_never(item)


def _context_of(item: EngineInput) -> dict[str, Any]:
    """The log context of one input: an event's position (no other input's)."""
    record = getattr(item, "record", None)
    if record is None:
        return {}
    return {"topic": record.topic, "partition": record.partition, "offset": record.offset}
