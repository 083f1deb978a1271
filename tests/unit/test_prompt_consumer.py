"""A record handed over without a task: a coroutine started by hand goes on inside a task from
where it stopped, with its result, its exceptions and a cancel as if it had run there."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from processors.transport import _Started


async def _started(coroutine: Any) -> Any:
    first = coroutine.send(None)  # runs up to its first wait, as a hand-over does
    return _Started(coroutine, first)


async def test_a_started_coroutine_finishes_in_a_task_with_its_result() -> None:
    room = asyncio.get_running_loop().create_future()
    steps: list[str] = []

    async def hand_over() -> str:
        steps.append("before")
        await room
        steps.append("after")
        await asyncio.sleep(0)
        return "delivered"

    task = asyncio.ensure_future(await _started(hand_over()))
    await asyncio.sleep(0)
    assert steps == ["before"]
    room.set_result(None)
    assert await task == "delivered"
    assert steps == ["before", "after"]


async def test_an_error_after_the_wait_reaches_the_task() -> None:
    room = asyncio.get_running_loop().create_future()

    async def hand_over() -> None:
        await room
        raise ValueError("undecodable")

    task = asyncio.ensure_future(await _started(hand_over()))
    room.set_result(None)
    with pytest.raises(ValueError, match="undecodable"):
        await task


async def test_a_cancel_reaches_the_coroutine_where_it_waits() -> None:
    room = asyncio.get_running_loop().create_future()
    cleaned: list[str] = []

    async def hand_over() -> None:
        try:
            await room
        finally:
            cleaned.append("abandoned")

    task = asyncio.ensure_future(await _started(hand_over()))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cleaned == ["abandoned"]
    assert room.cancelled()  # what it waited for is given up, as with a task of its own


async def test_a_wait_it_catches_goes_on() -> None:
    async def hand_over() -> str:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            return "gave up waiting"
        return "waited"

    task = asyncio.ensure_future(await _started(hand_over()))
    await asyncio.sleep(0)
    task.cancel()
    assert await task == "gave up waiting"
