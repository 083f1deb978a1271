"""The one poll loop: full batches go again at once, idle rounds rest or wake, failures back off,
and a cancellation ends it at once whatever it was doing.

The rests are recorded as asked (``bridge.poller.idle`` replaced), not timed: a busy machine
must not decide these tests. Every wait for the loop has a deadline and says what it waited for.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import pytest

import bridge.poller
from bridge.poller import backoff, poll


class Rests:
    """Stands in for ``bridge.poller.idle``: records each rest asked for and rests not at all,
    until ``limit`` rests were asked for: that one lasts until the loop is cancelled."""

    def __init__(self, limit: int | None = None) -> None:
        self.asked: list[float] = []
        self.changed = asyncio.Event()
        self.limit = limit

    async def __call__(self, seconds: float, wake: asyncio.Event | None) -> None:
        self.asked.append(seconds)
        self.changed.set()
        if len(self.asked) == self.limit:
            await asyncio.Event().wait()
        await asyncio.sleep(0)

    async def until(self, done: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            assert time.monotonic() < deadline, f"{what} within {timeout}s: rests {self.asked}"
            self.changed.clear()
            await asyncio.wait([asyncio.ensure_future(self.changed.wait())], timeout=0.05)


@pytest.fixture
def rests(monkeypatch: pytest.MonkeyPatch) -> Rests:
    recorder = Rests()
    monkeypatch.setattr(bridge.poller, "idle", recorder)
    return recorder


async def stopped(task: asyncio.Task[object]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_full_batches_go_again_at_once_and_an_idle_round_rests(rests: Rests) -> None:
    rounds = 0

    async def round_() -> bool:
        nonlocal rounds
        rounds += 1
        return rounds < 4

    rests.limit = 1
    task = asyncio.create_task(poll(round_, name="test", poll_seconds=30.0))
    try:
        await rests.until(lambda: bool(rests.asked), "the first rest")
    finally:
        await stopped(task)
    assert rounds == 4, "three full batches, then one idle round that rests"
    assert rests.asked == [30.0]


async def test_a_wake_up_ends_the_rest() -> None:
    wake = asyncio.Event()
    rounds: list[asyncio.Event] = [asyncio.Event(), asyncio.Event()]
    count = 0

    async def round_() -> bool:
        nonlocal count
        if count < len(rounds):
            rounds[count].set()
        count += 1
        return False

    task = asyncio.create_task(poll(round_, name="test", poll_seconds=30.0, wake=wake))
    try:
        await asyncio.wait_for(rounds[0].wait(), 10)
        wake.set()
        # 30 s of rest unless the wake-up ends it.
        await asyncio.wait_for(rounds[1].wait(), 10)
    finally:
        await stopped(task)
    assert count == 2
    assert not wake.is_set(), "the wake-up is used up by the rest it ended"


async def test_a_round_may_ask_for_a_shorter_rest_never_a_longer_one(rests: Rests) -> None:
    """The timer scanner rests until the next due time it knows of, at most the poll interval."""
    asked = [0.1, 60.0, -1.0]

    async def round_() -> float:
        return asked.pop(0) if asked else 60.0

    task = asyncio.create_task(poll(round_, name="test", poll_seconds=0.3))
    try:
        await rests.until(lambda: len(rests.asked) >= 3, "three rests")
    finally:
        await stopped(task)
    assert rests.asked[:3] == [0.1, 0.3, 0.0], "as asked; never beyond the poll interval"


async def test_failures_back_off_and_a_good_round_goes_on(
    rests: Rests, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "bridge.poller")
    outcomes: list[bool | Exception] = [RuntimeError("down"), RuntimeError("down"), True, False]

    async def round_() -> bool:
        outcome = outcomes.pop(0) if outcomes else False
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    task = asyncio.create_task(poll(round_, name="the test loop", poll_seconds=0.05))
    try:
        await rests.until(lambda: len(rests.asked) >= 3, "two back-offs and a rest")
    finally:
        await stopped(task)
    # Doubling back-offs; the full batch after them goes again at once; then the idle rest.
    assert rests.asked[:3] == [0.05, 0.1, 0.05]
    messages = [record.getMessage() for record in caplog.records]
    assert any("the test loop failed; trying again in 0.1s" in m for m in messages)
    assert any("the test loop failed again (RuntimeError('down'))" in m for m in messages)
    assert any("works again after 2 failed rounds" in m for m in messages)


def test_the_backoff_doubles_up_to_its_cap() -> None:
    assert [backoff(0.1, n, 5.0) for n in (1, 2, 3, 7, 100)] == [0.1, 0.2, 0.4, 5.0, 5.0]
    assert backoff(0.001, 1, 5.0) == 0.05, "a fast poll does not become a busy loop"


async def test_a_stop_does_not_wait_behind_a_backoff() -> None:
    failed = asyncio.Event()

    async def round_() -> bool:
        failed.set()
        raise RuntimeError("always")

    task = asyncio.create_task(poll(round_, name="test", poll_seconds=5.0))
    await asyncio.wait_for(failed.wait(), 10)
    await asyncio.sleep(0)  # into the five-second back-off
    started = time.monotonic()
    await stopped(task)
    assert task.cancelled()
    assert time.monotonic() - started < 2.0, "the stop waited for the back-off"
