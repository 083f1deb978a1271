"""The one runner: split a failing batch, keep order, wait out outages, give up on one input."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from sqlalchemy import exc as sa

from bridge import runner
from bridge.engine import EngineInput, Outcome, PoisonInput, StartRequested


class _Outage(Exception):
    sqlstate = "08006"


class FakeEngine:
    """Applies starts named ``ok-*``; ``bad-*`` raise while stepping, ``refused-*`` at write."""

    def __init__(self, outages: int = 0) -> None:
        self.outages = outages
        self.committed: list[str] = []
        self.given_up: list[tuple[str, bool]] = []
        self.transactions = 0
        self.refuse_give_up = False

    async def transact(self, batch: Sequence[EngineInput]) -> list[Outcome]:
        self.transactions += 1
        if self.outages:
            self.outages -= 1
            raise sa.OperationalError("SELECT 1", {}, _Outage("the server closed the connection"))
        names = [item.definition for item in batch if isinstance(item, StartRequested)]
        for index, name in enumerate(names):
            if name.startswith("bad"):
                raise PoisonInput(index, (f"p-{name}",), RuntimeError(f"{name} breaks"))
        if any(name.startswith("refused") for name in names):
            raise sa.DataError("INSERT", {}, Exception("value too long"))
        self.committed += names
        return [Outcome("applied", name) for name in names]

    async def give_up(
        self, item: EngineInput, reason: str, process_ids: Sequence[str], *, thorough: bool
    ) -> Outcome:
        assert isinstance(item, StartRequested)
        if self.refuse_give_up and thorough:
            raise sa.DataError("UPDATE", {}, Exception("still refused"))
        self.given_up.append((item.definition, thorough))
        return Outcome("invalid", reason, tuple(process_ids))

    def count_given_up(self, item: EngineInput) -> None:
        pass


def starts(*names: str) -> list[EngineInput]:
    return [StartRequested(name, {}) for name in names]


async def test_the_good_inputs_commit_in_order_and_the_bad_ones_are_given_up() -> None:
    engine = FakeEngine()
    names = ("ok-1", "ok-2", "bad-3", "ok-4", "refused-5", "ok-6", "ok-7")
    outcomes = await runner.run(engine, starts(*names))
    assert [outcome.status for outcome in outcomes] == [
        "applied",
        "applied",
        "invalid",
        "applied",
        "invalid",
        "applied",
        "applied",
    ]
    assert engine.committed == ["ok-1", "ok-2", "ok-4", "ok-6", "ok-7"]
    assert engine.given_up == [("bad-3", True), ("refused-5", True)]
    assert "bad-3 breaks" in outcomes[2].reason
    assert "the database refused it" in outcomes[4].reason
    assert "value too long" in outcomes[4].reason


async def test_an_outage_is_waited_out_with_the_whole_batch() -> None:
    engine = FakeEngine(outages=3)
    outcomes = await runner.run(engine, starts("ok-1", "ok-2"))
    assert [outcome.status for outcome in outcomes] == ["applied", "applied"]
    assert engine.transactions == 4


async def test_an_impatient_caller_hears_that_the_database_is_unavailable() -> None:
    engine = FakeEngine(outages=1000)
    with pytest.raises(runner.Unavailable):
        await runner.run(engine, starts("ok-1"), patience=0.3)
    assert engine.committed == []


async def test_a_stop_is_prompt_while_the_database_is_away() -> None:
    engine = FakeEngine(outages=10**6)
    task = asyncio.create_task(runner.run(engine, starts("ok-1")))
    await asyncio.sleep(0.5)
    started = asyncio.get_running_loop().time()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert asyncio.get_running_loop().time() - started < 0.1


async def test_when_failing_its_processes_is_refused_too_less_is_recorded() -> None:
    engine = FakeEngine()
    engine.refuse_give_up = True
    outcomes = await runner.run(engine, starts("bad-1", "ok-2"))
    assert [outcome.status for outcome in outcomes] == ["invalid", "applied"]
    assert engine.given_up == [("bad-1", False)]
