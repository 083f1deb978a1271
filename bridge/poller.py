"""The one loop of every poller (the outbox relay, the timer scanner, the HTTP invoker): run a
round, rest when there was nothing to do, back off when a round fails, stop at once when cancelled.

A copy of this loop in each poller was a bug waiting to differ (one slept after a full batch,
another could not be woken); they all go through :func:`poll`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import NoReturn

log = logging.getLogger(__name__)

#: The longest rest after failed rounds.
MAX_BACKOFF_SECONDS = 5.0


async def poll(
    round_: Callable[[], Awaitable[bool | float]],
    *,
    name: str,
    poll_seconds: float,
    wake: asyncio.Event | None = None,
    max_backoff: float = MAX_BACKOFF_SECONDS,
) -> NoReturn:
    """Run ``round_`` until cancelled.

    ``round_`` says whether there may be more work at once (True: it found a full batch): then it
    runs again without a rest. Otherwise the loop rests ``poll_seconds``, or as many seconds as
    the round returned when that is sooner (the next due time it knows of), or until ``wake`` is
    set.
    A round that raises is logged (with its traceback the first time in a row) and the loop rests
    twice as long as after the previous failure, up to ``max_backoff``; a good round resets that.
    Every rest is a plain ``await``, so cancelling the task that runs this stops it at once.
    """
    failures = 0
    while True:
        try:
            more = await round_()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            failures += 1
            rest = backoff(poll_seconds, failures, max_backoff)
            if failures == 1:
                log.exception("%s failed; trying again in %.1fs", name, rest)
            else:
                log.warning("%s failed again (%r); trying again in %.1fs", name, exc, rest)
            await idle(rest, None)
            continue
        if failures:
            log.info("%s works again after %d failed rounds", name, failures)
            failures = 0
        if more is True:
            # Let other tasks (and a cancellation) in between full batches.
            await asyncio.sleep(0)
        elif more is False:
            await idle(poll_seconds, wake)
        else:
            await idle(min(max(more, 0.0), poll_seconds), wake)


def backoff(poll_seconds: float, failures: int, max_backoff: float) -> float:
    """The rest after the ``failures``-th failed round in a row: doubling from the poll
    interval (at least 50 ms, so that a fast poll does not become a busy loop) up to the cap."""
    first = max(poll_seconds, 0.05)
    return min(first * 2.0 ** min(failures - 1, 30), max_backoff)


async def idle(seconds: float, wake: asyncio.Event | None) -> None:
    """Rest ``seconds``, or less if ``wake`` is set meanwhile (and clear it)."""
    if wake is None:
        await asyncio.sleep(seconds)
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(wake.wait(), timeout=seconds)
    wake.clear()
