"""How the worker's agents cut their streams into batches (processors.batching.BatchBuffer)."""

from __future__ import annotations

import asyncio

from processors.batching import BatchBuffer


class Stream:
    """Stands in for the faust stream's waits: an event, a timeout, or the stream stopping."""

    def __init__(self) -> None:
        self.stopped = asyncio.Event()

    async def wait(self, event: asyncio.Event, timeout: float | None = None) -> bool:
        waiters = {asyncio.ensure_future(event.wait()), asyncio.ensure_future(self.stopped.wait())}
        _, pending = await asyncio.wait(
            waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
        for waiter in pending:
            waiter.cancel()
        return self.stopped.is_set()


async def test_a_batch_is_the_first_event_and_what_follows_within_the_window() -> None:
    stream, buffer = Stream(), BatchBuffer(max_events=10, within=0.05)
    taking = asyncio.ensure_future(buffer.take(stream.wait))
    await asyncio.sleep(0.01)
    assert not taking.done(), "no event, no batch: it waits without a deadline"
    await buffer.put(1, stream.wait)
    await asyncio.sleep(0.01)
    await buffer.put(2, stream.wait)
    assert await taking == [1, 2]


async def test_a_full_batch_goes_at_once() -> None:
    stream, buffer = Stream(), BatchBuffer(max_events=3, within=10)
    for value in range(3):
        await buffer.put(value, stream.wait)
    assert await asyncio.wait_for(buffer.take(stream.wait), 1) == [0, 1, 2]


async def test_events_gather_while_a_batch_is_consumed_and_come_next_without_waiting() -> None:
    stream, buffer = Stream(), BatchBuffer(max_events=100, within=10)
    # The window is long: only a full batch, or one that gathered meanwhile, comes at once.
    for value in range(100):
        await buffer.put(value, stream.wait)
    assert await asyncio.wait_for(buffer.take(stream.wait), 1) == list(range(100))
    # While the batch is consumed, more arrive; the next take hands them over at once.
    await buffer.put("d", stream.wait)
    await buffer.put("e", stream.wait)
    buffer.consumed()
    assert await asyncio.wait_for(buffer.take(stream.wait), 1) == ["d", "e"]


async def test_no_more_than_max_events_wait_while_a_batch_is_consumed() -> None:
    stream, buffer = Stream(), BatchBuffer(max_events=2, within=10)
    await buffer.put(1, stream.wait)
    await buffer.put(2, stream.wait)
    assert await buffer.take(stream.wait) == [1, 2]
    await buffer.put(3, stream.wait)
    await buffer.put(4, stream.wait)
    fifth = asyncio.ensure_future(buffer.put(5, stream.wait))
    await asyncio.sleep(0.01)
    assert not fifth.done(), "the buffer is full: the stream waits"
    assert buffer.pending == [3, 4]
    buffer.consumed()
    assert await asyncio.wait_for(buffer.take(stream.wait), 1) == [3, 4]
    await asyncio.wait_for(fifth, 1)
    assert buffer.pending == [5]


async def test_order_is_kept_across_batches() -> None:
    stream, buffer = Stream(), BatchBuffer(max_events=7, within=0.001)
    taken: list[int] = []

    async def consume() -> None:
        while len(taken) < 100:
            batch = await buffer.take(stream.wait)
            assert batch is not None and len(batch) <= 7
            taken.extend(batch)
            await asyncio.sleep(0)
            buffer.consumed()

    consuming = asyncio.ensure_future(consume())
    for value in range(100):
        await buffer.put(value, stream.wait)
        if value % 13 == 0:
            await asyncio.sleep(0.002)
    await asyncio.wait_for(consuming, 5)
    assert taken == list(range(100))


async def test_take_says_so_when_the_stream_stops() -> None:
    stream, buffer = Stream(), BatchBuffer(max_events=10, within=0.01)
    taking = asyncio.ensure_future(buffer.take(stream.wait))
    await asyncio.sleep(0.01)
    stream.stopped.set()
    assert await asyncio.wait_for(taking, 1) is None
