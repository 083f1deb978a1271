"""Group commit: inputs of concurrent requests that arrive while a transaction is written go
together in the next one.

An HTTP callback, decision or start is one input; applied alone, each pays for a whole
transaction (begin, the clock, the reads, a dozen statements, the announcement, the commit) and
wakes the relay for one message. Under load the next input is usually already waiting while
one is written, so ``GroupCommit`` hands the engine everything that waits, in arrival order, as
one batch: a lone request still goes at once, and a busy web process writes fewer, larger
transactions. The runner isolates an input that fails (``bridge.runner``), so an input never
pays for another one's fault; each caller gets its own outcome, or the exception that stopped
its whole group (``Unavailable`` when the database stayed away).

A request's trace context goes with its input (``traced``): the batch is applied in another
task, where the request's context is not current.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable, Sequence

from bridge import tracing
from bridge.intake import EngineInput, Outcome, TracedInput

#: The most inputs one transaction takes.
MAX_GROUP = 100

Apply = Callable[[Sequence[EngineInput], float | None], Awaitable[list[Outcome]]]


class GroupCommit:
    def __init__(self, apply: Apply, max_group: int = MAX_GROUP) -> None:
        self._apply = apply
        self.max_group = max_group
        #: Inputs waiting for a transaction, per patience (inputs of one group share it).
        self._waiting: dict[float | None, list[tuple[EngineInput, asyncio.Future[Outcome]]]] = {}
        self._writers: dict[float | None, asyncio.Task[None]] = {}

    async def apply(self, item: EngineInput, patience: float | None) -> Outcome:
        """``item``'s outcome, applied with whatever else waits (see the module)."""
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(patience, []).append((traced(item), future))
        writer = self._writers.get(patience)
        if writer is None or writer.done():
            self._writers[patience] = asyncio.create_task(
                self._write(patience), name="bridge group commit"
            )
        # A caller that goes away (a client that hung up) does not take the group with it: the
        # input is applied all the same, as it would have been alone.
        return await asyncio.shield(future)

    async def _write(self, patience: float | None) -> None:
        waiting = self._waiting[patience]
        while waiting:
            group = waiting[: self.max_group]
            del waiting[: self.max_group]
            try:
                outcomes = await self._apply([item for item, _ in group], patience)
            except BaseException as exc:
                for _, future in group:
                    if not future.done():
                        future.set_exception(exc)
                if isinstance(exc, asyncio.CancelledError):
                    for _, future in waiting:
                        future.cancel()
                    waiting.clear()
                    raise
                continue
            for (_, future), outcome in zip(group, outcomes, strict=True):
                if not future.done():
                    future.set_result(outcome)


def traced(item: EngineInput) -> EngineInput:
    """``item`` carrying the trace context current here, unless it brought its own."""
    context = tracing.current()
    if context is None or not isinstance(item, TracedInput) or item.traceparent is not None:
        return item
    return dataclasses.replace(
        item,
        traceparent=tracing.format_traceparent(context),
        tracestate=tracing.format_tracestate(context),
    )
