"""Batches of events from a faust stream, without waking up while nothing arrives.

faust's ``Stream.take_events(max_, within)`` wakes every ``within`` seconds whether or not an
event came: with a 5 ms fill wait, the worker's agents (two then) woke 400 times a second on an
idle worker and kept a tenth of a core busy. ``take_batches`` is the same buffering (events are
acknowledged only once the batch was consumed, so offsets are committed after the database
commit), with two changes: it waits without a deadline for the first event of a batch, and only
then up to ``within`` for the batch to fill; and events keep coming into the next batch while one
is consumed (faust's buffer stops the stream until then), so that a busy worker hands over the
next batch at once, as large as what arrived meanwhile (up to ``max_``).

Adapted from faust-streaming 0.15.3 (``faust/streams.py``, BSD licence), which this module
relies on: the stream's processors, passive draining, acks and its set of buffering generators.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any

from mode.utils.aiter import aiter

#: Waits for an event, or ``timeout`` seconds when not None; True when the stream stopped.
Waiter = Callable[[asyncio.Event, float | None], Awaitable[bool]]


class BatchBuffer:
    """Events waiting for their batch; no faust here, so it can be tested on its own.

    ``put`` adds an event (waiting while ``max_events`` already wait); ``take`` gives the next
    batch: at once what gathered while the previous batch was consumed, or, when none did, the
    first event to come and what follows it within ``within`` seconds; ``consumed`` says the
    batch taken last is done with, which lets a waiting ``put`` go on.
    """

    def __init__(self, max_events: int, within: float) -> None:
        self.max_events = max_events
        self.within = within
        self.pending: list[Any] = []
        self._started = asyncio.Event()
        self._full = asyncio.Event()
        self._consumed = asyncio.Event()

    async def put(self, event: Any, wait: Callable[[asyncio.Event], Awaitable[object]]) -> None:
        """Add ``event``; ``wait(e)`` waits for ``e`` (or for the stream to stop)."""
        while len(self.pending) >= self.max_events:
            self._consumed.clear()
            await wait(self._consumed)
        self.pending.append(event)
        self._started.set()
        if len(self.pending) >= self.max_events:
            self._full.set()

    async def take(self, wait: Waiter) -> list[Any] | None:
        """The next batch (empty when nothing came after all), or None when the stream stopped."""
        if not self.pending:
            if await wait(self._started, None):
                return None
            if not self._full.is_set():
                await wait(self._full, self.within)
        batch = self.pending[: self.max_events]
        del self.pending[: self.max_events]
        if not self.pending:
            self._started.clear()
        if len(self.pending) < self.max_events:
            self._full.clear()
        return batch

    def consumed(self) -> None:
        self._consumed.set()


def take_batches(stream: Any, max_: int, within: float) -> AsyncGenerator[list[Any], None]:
    """Lists of up to ``max_`` events (see ``BatchBuffer``)."""
    batches = _take(stream, max_, within)
    # The stream closes the generators it knows of when it stops (faust does this for take()).
    stream._active_agens.add(batches)
    return batches


async def _take(stream: Any, max_: int, within: float) -> AsyncGenerator[list[Any], None]:
    buffer = BatchBuffer(max_, within)
    enable_acks: bool = stream.enable_acks
    channel_it = aiter(stream.channel)

    async def add_to_buffer(value: Any) -> Any:
        try:
            event = stream.current_event
            if event is None:
                raise RuntimeError("the batch buffer found no current event")
            await buffer.put(event, stream.wait)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            stream.log.exception("Error adding to the batch buffer: %r", exc)
            await stream.crash(exc)
        return value

    async def wait(event: asyncio.Event, timeout: float | None) -> bool:
        if timeout is None:
            # Waiting for the first event of a batch, for as long as it takes: the stream's
            # stop must end it.
            stopped: bool = await stream.wait_for_stopped(event, timeout=timeout)
            return stopped
        # Filling a batch, a few milliseconds at most: a plain timed wait, where faust's
        # wait_for_stopped started three tasks per batch; a stop meanwhile ends the loop after
        # this batch, as it did (``BatchBuffer.take`` hands over what came either way).
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await event.wait()
        return bool(stream.should_stop)

    # Acks are ours: an event is acknowledged once the batch holding it was consumed.
    stream.enable_acks = False
    stream.add_processor(add_to_buffer)
    stream._enable_passive(channel_it)
    try:
        while not stream.should_stop:
            batch = await buffer.take(wait)
            if batch is None:
                break
            if not batch:
                continue
            try:
                yield batch
            finally:
                for event in batch:
                    await stream.ack(event)
                buffer.consumed()
    finally:
        stream.enable_acks = enable_acks
        stream._processors.remove(add_to_buffer)
