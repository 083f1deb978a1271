"""The one poll loop: full batches go again at once, idle rounds rest or wake, failures back off,
and a cancellation ends it at once whatever it was doing."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from bridge.poller import backoff, poll


async def test_full_batches_go_again_at_once_and_an_idle_round_rests() -> None:
    rounds: list[float] = []

    async def round_() -> bool:
        rounds.append(time.monotonic())
        return len(rounds) < 4

    task = asyncio.create_task(poll(round_, name="test", poll_seconds=30.0))
    await asyncio.sleep(0.2)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert len(rounds) == 4, "three full batches, then one idle round that rests"
    assert rounds[-1] - rounds[0] < 0.1


async def test_a_wake_up_ends_the_rest() -> None:
    wake = asyncio.Event()
    rounds = 0

    async def round_() -> bool:
        nonlocal rounds
        rounds += 1
        return False

    task = asyncio.create_task(poll(round_, name="test", poll_seconds=30.0, wake=wake))
    await asyncio.sleep(0.05)
    wake.set()
    await asyncio.sleep(0.05)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert rounds == 2
    assert not wake.is_set()


async def test_a_round_may_ask_for_a_shorter_rest_never_a_longer_one() -> None:
    """The timer scanner rests until the next due time it knows of, at most the poll interval."""
    times: list[float] = []
    rests = [0.1, 60.0]

    async def round_() -> float:
        times.append(time.monotonic())
        return rests.pop(0) if rests else 60.0

    task = asyncio.create_task(poll(round_, name="test", poll_seconds=0.3))
    await asyncio.sleep(0.55)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert len(times) == 3, "0.1 s as asked, then 0.3 s (the poll interval) instead of 60"
    assert 0.08 <= times[1] - times[0] < 0.25
    assert 0.25 <= times[2] - times[1] < 0.45


async def test_failures_back_off_and_a_good_round_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "bridge.poller")
    outcomes: list[bool | Exception] = [RuntimeError("down"), RuntimeError("down"), True, False]
    times: list[float] = []

    async def round_() -> bool:
        times.append(time.monotonic())
        outcome = outcomes.pop(0) if outcomes else False
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    task = asyncio.create_task(poll(round_, name="the test loop", poll_seconds=0.05))
    await asyncio.sleep(0.4)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert times[1] - times[0] >= 0.05 and times[2] - times[1] >= 0.1
    assert times[3] - times[2] < 0.05, "a full batch after the failures goes again at once"
    messages = [record.getMessage() for record in caplog.records]
    assert any("the test loop failed; trying again in 0.1s" in m for m in messages)
    assert any("the test loop failed again (RuntimeError('down'))" in m for m in messages)
    assert any("works again after 2 failed rounds" in m for m in messages)


def test_the_backoff_doubles_up_to_its_cap() -> None:
    assert [backoff(0.1, n, 5.0) for n in (1, 2, 3, 7, 100)] == [0.1, 0.2, 0.4, 5.0, 5.0]
    assert backoff(0.001, 1, 5.0) == 0.05, "a fast poll does not become a busy loop"


async def test_a_stop_does_not_wait_behind_a_backoff() -> None:
    async def round_() -> bool:
        raise RuntimeError("always")

    task = asyncio.create_task(poll(round_, name="test", poll_seconds=5.0))
    await asyncio.sleep(0.05)
    started = time.monotonic()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert task.cancelled() and time.monotonic() - started < 0.05
