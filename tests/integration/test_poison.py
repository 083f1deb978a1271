"""Poison input: an input whose processing raises is tried a bounded number of times, then
dead-lettered with its reason and its process failed; the inputs around it go through."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

import bridge.batch
from bridge.asl.model import parse_definition
from bridge.definitions import Registry
from bridge.engine import Engine, EngineConfig, EventReceived
from bridge.events import KafkaRecord
from bridge.runner import MAX_ATTEMPTS
from bridge.store.database import open_engine, reading
from bridge.store.migrate import upgrade
from bridge.store.schema import outbox, processes

pytestmark = pytest.mark.integration

DEFINITION = {
    "Triggers": [{"Topic": "t", "EventType": "Go", "CorrelationKey": "$.k", "EventId": "$.id"}],
    "StartAt": "Wait",
    "States": {
        "Wait": {
            "Type": "Task",
            "Resource": "bridge:kafka:send.waitForTaskToken",
            "Parameters": {"Topic": "out", "Message": {"t.$": "$$.Task.Token"}},
            "End": True,
        }
    },
}


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[Engine]:
    db = open_engine(f"sqlite+aiosqlite:///{tmp_path}/poison.db")
    await upgrade(db)
    registry = Registry()
    registry.add(parse_definition(DEFINITION, "go"))
    try:
        yield Engine(db, registry, EngineConfig(dlq_topic="dlq"))
    finally:
        await db.dispose()


def record(offset: int, key: str) -> EventReceived:
    value = json.dumps({"type": "Go", "id": f"e-{key}", "k": key}).encode()
    return EventReceived(KafkaRecord("t", 0, offset, key.encode(), value))


async def test_a_poison_event_is_dead_lettered_and_the_others_go_through(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_step = bridge.batch.step
    calls: list[str] = []

    def failing_step(definition: Any, process: Any, event: Any, now: Any, entropy: Any) -> Any:
        key = getattr(event, "correlation_key", None)
        if key == "bad":
            calls.append(key)
            raise RuntimeError("the interpreter broke on this input")
        return real_step(definition, process, event, now, entropy)

    monkeypatch.setattr(bridge.batch, "step", failing_step)
    outcomes = await engine.apply([record(0, "a"), record(1, "bad"), record(2, "b")])

    assert [outcome.status for outcome in outcomes] == ["applied", "invalid", "applied"]
    assert "failed 3 times" in outcomes[1].reason
    assert len(calls) == MAX_ATTEMPTS + 1  # once in the whole batch, then alone until given up
    async with reading(engine.db) as conn:
        keys = set((await conn.execute(select(processes.c.correlation_key))).scalars())
        letters = (await conn.execute(select(outbox.c.value).where(outbox.c.topic == "dlq"))).all()
    assert keys == {"a", "b"}
    assert len(letters) == 1
    letter = letters[0].value
    assert letter["offset"] == 1 and letter["topic"] == "t"
    assert "the interpreter broke" in letter["reason"]

    # The same event again is a duplicate of the dead-lettered one, not a second failure.
    again = await engine.apply([record(1, "bad")])
    assert again[0].status == "duplicate"


async def test_the_process_a_poison_input_was_stepping_is_failed_with_the_reason(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bridge.engine import CallbackReceived
    from bridge.store.schema import outbox as outbox_table

    await engine.apply([record(0, "p")])
    async with reading(engine.db) as conn:
        message = (
            await conn.execute(select(outbox_table.c.value).where(outbox_table.c.topic == "out"))
        ).scalar_one()
    real_step = bridge.batch.step

    def failing_step(definition: Any, process: Any, event: Any, now: Any, entropy: Any) -> Any:
        if type(event).__name__ == "TaskSucceeded":
            raise ValueError("cannot digest this output")
        return real_step(definition, process, event, now, entropy)

    monkeypatch.setattr(bridge.batch, "step", failing_step)
    outcomes = await engine.apply([CallbackReceived(message["t"], "success", output={})])
    assert outcomes[0].status == "invalid"
    async with reading(engine.db) as conn:
        row = (await conn.execute(select(processes.c.status, processes.c.state))).one()
    assert row.status == "FAILED"
    assert row.state["error"] == "Bridge.InputFailed"
    assert "cannot digest this output" in row.state["cause"]


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"{not json", "not JSON"),
        (b"\xff\xfe\x00garbage", "not UTF-8"),
        (json.dumps({"type": "Go", "id": "x"}).encode(), "no value at $.k"),
        (json.dumps({"type": "Go", "id": "y", "k": {"a": 1}}).encode(), "non-empty string"),
        (b"[" * 10_000 + b"]" * 10_000, "nested deeper than 64 levels"),
        (json.dumps({"type": "Go", "k": "z", "pad": "x" * 300_000}).encode(), "larger than"),
    ],
    ids=["malformed", "invalid-utf8", "missing-key", "wrong-type", "deep-nesting", "too-large"],
)
async def test_poison_records_go_to_the_dead_letter_topic_and_the_partition_flows(
    engine: Engine, value: bytes, reason: str
) -> None:
    bad = EventReceived(KafkaRecord("t", 0, 7, b"k", value))
    outcomes = await engine.apply([bad, record(8, "after")])
    assert [outcome.status for outcome in outcomes] == ["invalid", "applied"]
    async with reading(engine.db) as conn:
        letters = (await conn.execute(select(outbox.c.value).where(outbox.c.topic == "dlq"))).all()
    assert len(letters) == 1
    letter = letters[0].value
    assert reason in letter["reason"]
    assert (letter["topic"], letter["partition"], letter["offset"]) == ("t", 0, 7)
    assert letter["at"]
