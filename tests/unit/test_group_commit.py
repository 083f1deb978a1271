"""Group commit: single inputs that arrive while a transaction is written share the next one."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from bridge.group_commit import GroupCommit, traced
from bridge.intake import CallbackReceived, EngineInput, Outcome, StopRequested, TimerDue


class Engine:
    """Applies groups slowly enough for others to queue up; remembers each group."""

    def __init__(self, fail_with: BaseException | None = None) -> None:
        self.groups: list[list[str]] = []
        self.fail_with = fail_with
        self.release = asyncio.Event()
        self.release.set()

    async def apply(self, batch: Sequence[EngineInput], patience: float | None) -> list[Outcome]:
        self.groups.append([_id(item) for item in batch])
        await self.release.wait()
        await asyncio.sleep(0.01)
        if self.fail_with is not None and len(self.groups) == 1:
            raise self.fail_with
        return [Outcome("applied", _id(item)) for item in batch]


def _id(item: EngineInput) -> str:
    assert isinstance(item, StopRequested)
    return item.process_id


async def test_a_lone_input_goes_at_once() -> None:
    engine = Engine()
    group = GroupCommit(engine.apply)
    outcome = await asyncio.wait_for(group.apply(StopRequested("p1"), None), 1)
    assert outcome == Outcome("applied", "p1")
    assert engine.groups == [["p1"]]


async def test_inputs_that_wait_go_together_in_order_each_with_its_outcome() -> None:
    engine = Engine()
    group = GroupCommit(engine.apply)
    engine.release.clear()
    first = asyncio.ensure_future(group.apply(StopRequested("p0"), None))
    await asyncio.sleep(0)
    rest = [asyncio.ensure_future(group.apply(StopRequested(f"p{i}"), None)) for i in range(1, 6)]
    await asyncio.sleep(0)
    engine.release.set()
    outcomes = await asyncio.wait_for(asyncio.gather(first, *rest), 1)
    assert [outcome.reason for outcome in outcomes] == [f"p{i}" for i in range(6)]
    assert engine.groups == [["p0"], ["p1", "p2", "p3", "p4", "p5"]]


async def test_a_group_is_at_most_max_group_inputs() -> None:
    engine = Engine()
    group = GroupCommit(engine.apply, max_group=2)
    engine.release.clear()
    waiting = [asyncio.ensure_future(group.apply(StopRequested(f"p{i}"), None)) for i in range(5)]
    await asyncio.sleep(0)
    engine.release.set()
    await asyncio.wait_for(asyncio.gather(*waiting), 1)
    assert engine.groups == [["p0", "p1"], ["p2", "p3"], ["p4"]]


async def test_inputs_of_another_patience_go_in_their_own_groups() -> None:
    engine = Engine()
    group = GroupCommit(engine.apply)
    engine.release.clear()
    waiting = [
        asyncio.ensure_future(group.apply(StopRequested("a"), 5.0)),
        asyncio.ensure_future(group.apply(StopRequested("b"), None)),
    ]
    await asyncio.sleep(0)
    engine.release.set()
    await asyncio.wait_for(asyncio.gather(*waiting), 1)
    assert sorted(engine.groups) == [["a"], ["b"]]


async def test_what_stops_a_group_reaches_its_callers_and_the_next_group_goes_on() -> None:
    engine = Engine(fail_with=RuntimeError("the database is away"))
    group = GroupCommit(engine.apply)
    engine.release.clear()
    first = asyncio.ensure_future(group.apply(StopRequested("p0"), 5.0))
    await asyncio.sleep(0)
    second = asyncio.ensure_future(group.apply(StopRequested("p1"), 5.0))
    await asyncio.sleep(0)
    engine.release.set()
    with pytest.raises(RuntimeError, match="away"):
        await asyncio.wait_for(first, 1)
    assert (await asyncio.wait_for(second, 1)).reason == "p1"


async def test_a_caller_that_goes_away_does_not_take_the_group_with_it() -> None:
    engine = Engine()
    group = GroupCommit(engine.apply)
    engine.release.clear()
    leaving = asyncio.ensure_future(group.apply(StopRequested("p0"), None))
    staying = asyncio.ensure_future(group.apply(StopRequested("p1"), None))
    await asyncio.sleep(0)
    leaving.cancel()
    engine.release.set()
    assert (await asyncio.wait_for(staying, 1)).reason == "p1"
    assert engine.groups == [["p0", "p1"]], "the input of the caller that left is applied"


def test_an_input_carries_the_trace_context_of_its_request() -> None:
    context = SpanContext(
        trace_id=0x1234, span_id=0x5678, is_remote=False, trace_flags=TraceFlags(1)
    )
    with trace.use_span(NonRecordingSpan(context)):
        carried = traced(CallbackReceived("token", "success"))
        own = traced(
            CallbackReceived(
                "token", "success", traceparent="00-" + "a" * 32 + "-" + "b" * 16 + "-01"
            )
        )
        untraceable = traced(TimerDue("t", "p"))
    assert isinstance(carried, CallbackReceived)
    assert carried.traceparent == f"00-{0x1234:032x}-{0x5678:016x}-01"
    assert (
        isinstance(own, CallbackReceived)
        and own.traceparent == "00-" + "a" * 32 + "-" + "b" * 16 + "-01"
    )
    assert untraceable == TimerDue("t", "p")
    assert traced(StopRequested("p")) == StopRequested("p"), "no context, nothing carried"
