"""Hostile input never stops the world: each bad input is refused with its reason or given up on
alone, and the good inputs of the same batch commit. On SQLite and PostgreSQL, which refuses
what SQLite stores without a word (NUL characters, values longer than their column)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, update
from sqlalchemy.exc import DataError

import bridge.effects_writer
from bridge.asl.loading import parse_definition
from bridge.dlq import Letter, original
from bridge.engine import CallbackReceived, Engine, EventReceived, TimerDue
from bridge.events import KafkaRecord
from bridge.messages import LETTER_VALUE_BYTES
from bridge.relay import encode_value
from bridge.runner import MAX_ATTEMPTS
from bridge.store import outbox, timers
from bridge.store.database import reading
from bridge.store.schema import processes
from processors.app import reply_input
from tests.integration.engines import engine_for

pytestmark = pytest.mark.integration

DEFINITION = {
    "Triggers": [{"Topic": "t", "EventType": "Go", "CorrelationKey": "$.k", "EventId": "$.id"}],
    "StartAt": "Wait",
    "States": {
        "Wait": {
            "Type": "Task",
            "Resource": "bridge:kafka:send.waitForTaskToken",
            "Parameters": {"Topic": "out", "Message": {"t.$": "$$.Task.Token", "k.$": "$.k"}},
            "TimeoutSeconds": 3600,
            "End": True,
        }
    },
}


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[Engine]:
    async with engine_for(database_url, DEFINITION, "go") as engine:
        yield engine


def event(offset: int, value: bytes, key: bytes | None = b"k") -> EventReceived:
    return EventReceived(KafkaRecord("t", offset % 3, offset, key, value))


def good(offset: int, key: str) -> EventReceived:
    return event(offset, json.dumps({"type": "Go", "id": f"e-{key}", "k": key}).encode())


async def started_keys(engine: Engine) -> set[str]:
    async with reading(engine.db) as conn:
        return set((await conn.execute(select(processes.c.correlation_key))).scalars())


async def dead_letters(engine: Engine) -> list[dict[str, Any]]:
    return await outbox_values(engine, "dlq")


async def outbox_values(engine: Engine, topic: str) -> list[Any]:
    """The values of the messages to ``topic`` waiting in the outbox, in order."""
    async with reading(engine.db) as conn:
        return [m.value for m in await outbox.pending(conn) if m.topic == topic]


def nested(depth: int) -> Any:
    value: Any = "bottom"
    for _ in range(depth):
        value = [value]
    return value


HOSTILE = {
    "deep-array": (
        json.dumps({"type": "Go", "id": "d", "k": "d", "items": nested(300)}).encode(),
        "nested deeper than 64 levels",
    ),
    "very-deep": (b'{"type":"Go","k":"v","x":' + b"[" * 5000 + b"]" * 5000 + b"}", "nested deeper"),
    "long-key": (json.dumps({"type": "Go", "id": "l", "k": "x" * 600}).encode(), "longer than 500"),
    "nul-in-data": (
        b'{"type":"Go","id":"n","k":"n","customerId":"c\\u0000x"}',
        "NUL character",
    ),
    "nul-in-key": (b'{"type":"Go","id":"m","k":"a\\u0000b"}', "NUL character"),
    "lone-surrogate": (b'{"type":"Go","id":"s","k":"s","name":"\\ud800"}', "surrogate"),
    "avro-framed": (b"\x00\x00\x00\x00\x01\x0ahello\x00", "not JSON"),
    "binary": (b"\x00\xff\xfe\x01", "not UTF-8"),
    "zero-bytes": (b"\x00" * 64, "not JSON"),
    "array": (b"[]", "must be a JSON object"),
    "string": (b'"text"', "must be a JSON object"),
    "number": (b"42", "must be a JSON object"),
    "null": (b"null", "must be a JSON object"),
    "missing-key": (json.dumps({"type": "Go", "id": "x"}).encode(), "no value at $.k"),
    "wrong-key-type": (json.dumps({"type": "Go", "id": "y", "k": {"a": 1}}).encode(), "non-empty"),
    "long-event-id": (json.dumps({"type": "Go", "id": "i" * 300, "k": "i"}).encode(), "longer"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
async def test_a_hostile_event_is_dead_lettered_and_its_batch_commits(
    engine: Engine, case: str
) -> None:
    value, reason = HOSTILE[case]
    outcomes = await engine.apply([good(0, "a"), event(1, value), good(2, "b")])
    assert [outcome.status for outcome in outcomes] == ["applied", "invalid", "applied"]
    assert reason in outcomes[1].reason
    assert await started_keys(engine) == {"a", "b"}
    [letter] = await dead_letters(engine)
    assert reason in letter["reason"]
    assert (letter["topic"], letter["partition"], letter["offset"]) == ("t", 1, 1)
    # Once is enough: the same record again is known.
    again = await engine.apply([event(1, value)])
    assert again[0].status == "duplicate"


async def test_a_record_with_a_nul_key_and_zero_bytes_is_dead_lettered_whole(
    engine: Engine,
) -> None:
    value = b"\x00\x00\x00\x00\x07" + b"avro-body"
    outcomes = await engine.apply([event(4, value, key=b"k\x00ey"), good(5, "after")])
    assert [outcome.status for outcome in outcomes] == ["invalid", "applied"]
    [letter] = await dead_letters(engine)
    assert letter["value"] == {"base64": "AAAAAAdhdnJvLWJvZHk="}
    assert letter["key"] == {"base64": "awBleQ=="}


async def test_an_oversized_event_leaves_a_dead_letter_that_can_be_published(
    engine: Engine,
) -> None:
    huge = json.dumps({"type": "Go", "k": "big", "pad": "x" * (5 * 1024 * 1024)}).encode()
    outcomes = await engine.apply([event(7, huge), good(8, "after")])
    assert [outcome.status for outcome in outcomes] == ["invalid", "applied"]
    [letter] = await dead_letters(engine)
    assert "larger than" in letter["reason"]
    assert letter["valueTruncated"] is True and letter["valueBytes"] == len(huge)
    assert len(letter["value"]) == LETTER_VALUE_BYTES
    # Far below a producer's 1 MB limit.
    assert len(encode_value(letter)) < 256 * 1024
    # Replaying the start of an event would publish another event: refused, with where it is.
    with pytest.raises(ValueError, match="only the start of its event"):
        original(Letter(0, 0, letter))


async def test_a_failing_write_in_the_middle_of_a_batch_is_isolated(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write the database refuses (whatever the reason) takes only its own input down: the
    batch is split until the one input whose write fails is found."""
    real_insert = bridge.effects_writer.store.insert_processes

    async def refusing_insert(conn: Any, rows: Any, now: Any) -> None:
        if any(process.correlation_key == "refused" for process, *_ in rows):
            raise DataError("INSERT ...", {}, Exception("value too long (simulated)"))
        await real_insert(conn, rows, now)

    monkeypatch.setattr(bridge.effects_writer.store, "insert_processes", refusing_insert)
    batch = [good(offset, key) for offset, key in enumerate("abcdefg")]
    batch.insert(4, good(10, "refused"))
    outcomes = await engine.apply(batch)
    assert [outcome.status for outcome in outcomes].count("applied") == 7
    assert outcomes[4].status == "invalid"
    assert "the database refused it" in outcomes[4].reason
    assert await started_keys(engine) == set("abcdefg")
    [letter] = await dead_letters(engine)
    assert letter["offset"] == 10


async def pending_timers(engine: Engine) -> dict[str, tuple[list[str], datetime | None]]:
    """Each process's pending timers (by correlation key) and its wake time."""
    async with reading(engine.db) as conn:
        rows = (
            await conn.execute(
                select(processes.c.correlation_key, processes.c.state, processes.c.wake_at)
            )
        ).all()
    return {key: (sorted(state.get("timers", {})), wake_at) for key, state, wake_at in rows}


async def test_a_timer_whose_step_fails_fails_its_process_and_the_others_fire(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    await engine.apply([good(0, "a"), good(1, "b")])
    async with reading(engine.db) as conn:
        keys = dict((await conn.execute(select(processes.c.id, processes.c.correlation_key))).all())
    pending = await pending_timers(engine)
    ids = {pid: pending[key][0][0] for pid, key in keys.items()}
    assert all(len(pending[key][0]) == 1 and pending[key][1] is not None for key in "ab")
    bad_process = next(pid for pid, key in keys.items() if key == "a")

    real_step = bridge.batch.step

    def failing_step(definition: Any, process: Any, trigger: Any, now: Any, entropy: Any) -> Any:
        if process is not None and process.id == bad_process and "Timer" in type(trigger).__name__:
            raise RuntimeError("this timer's step breaks")
        return real_step(definition, process, trigger, now, entropy)

    monkeypatch.setattr(bridge.batch, "step", failing_step)
    outcomes = await engine.apply([TimerDue(ids[pid], pid) for pid in sorted(ids)])
    by_process = dict(zip(sorted(ids), outcomes, strict=True))
    assert by_process[bad_process].status == "invalid"
    assert "this timer's step breaks" in by_process[bad_process].reason
    async with reading(engine.db) as conn:
        states = dict(
            (await conn.execute(select(processes.c.correlation_key, processes.c.state))).all()
        )
    assert states["a"]["status"] == "FAILED" and states["a"]["error"] == "Bridge.InputFailed"
    assert "this timer's step breaks" in states["a"]["cause"]
    # The other timer fired (a TimeoutSeconds: its task timed out) and neither is left.
    assert states["b"]["status"] == "FAILED" and states["b"]["error"] == "States.Timeout"
    assert await pending_timers(engine) == {"a": ([], None), "b": ([], None)}


async def test_an_invalid_reply_on_kafka_is_dead_lettered(engine: Engine) -> None:
    await engine.apply([good(0, "a")])
    [command] = await outbox_values(engine, "out")
    token = command["t"]
    replies = [
        KafkaRecord("bridge.replies", 0, 0, None, b'{"output": {"no": "token"}}'),
        KafkaRecord("bridge.replies", 0, 1, None, b"[" * 3000),
        KafkaRecord(
            "bridge.replies", 0, 2, None, b'{"taskToken": "x", "error": "E\\u0000", "cause": ""}'
        ),
        KafkaRecord(
            "bridge.replies",
            0,
            3,
            None,
            json.dumps({"taskToken": "y", "output": "x" * 300_000}).encode(),
        ),
        KafkaRecord("bridge.replies", 0, 4, None, json.dumps({"taskToken": token}).encode()),
    ]
    inputs = [reply_input(record) for record in replies]
    outcomes = await engine.apply(inputs)
    assert [outcome.status for outcome in outcomes] == ["invalid"] * 4 + ["applied"]
    letters = await dead_letters(engine)
    assert sorted(letter["offset"] for letter in letters) == [0, 1, 2, 3]
    assert all(letter["reason"].startswith("invalid reply") for letter in letters)
    assert isinstance(inputs[4], CallbackReceived)


async def test_a_step_whose_output_cannot_be_stored_fails_with_a_named_error(
    engine: Engine,
) -> None:
    """A value made inside the process (here by an intrinsic) is bounded like one from outside."""
    definition = {
        "StartAt": "Make",
        "States": {
            "Make": {
                "Type": "Pass",
                "Parameters": {"nul.$": "States.Base64Decode('AA==')"},
                "End": True,
            }
        },
    }
    engine.registry.add(parse_definition(definition, "nul"))
    from bridge.engine import StartRequested

    outcome = await engine.apply_one(StartRequested("nul", {}))
    assert outcome.status == "applied"
    async with reading(engine.db) as conn:
        state = (
            await conn.execute(
                select(processes.c.state).where(processes.c.id == outcome.process_ids[0])
            )
        ).scalar_one()
    assert state["status"] == "FAILED"
    assert state["error"] == "States.Runtime"
    assert "NUL character" in state["cause"]


async def test_a_row_the_database_refuses_to_read_does_not_stall_the_timers(
    engine: Engine,
) -> None:
    """A process whose stored state no longer loads: its timer is given up on and it no longer
    wakes; the process is left as it is (it cannot be stepped), and the timers after it fire.
    The timer scan does not find such a process again and again either."""
    await engine.apply([good(0, "a"), good(1, "b"), good(2, "c")])
    pending = await pending_timers(engine)
    async with engine.db.begin() as conn:
        rows = dict((await conn.execute(select(processes.c.correlation_key, processes.c.id))).all())
        for key in "ac":
            await conn.execute(
                update(processes).where(processes.c.id == rows[key]).values(state={"broken": True})
            )
    outcomes = await engine.apply(
        [TimerDue(pending["a"][0][0], rows["a"]), TimerDue(pending["b"][0][0], rows["b"])]
    )
    assert [outcome.status for outcome in outcomes] == ["invalid", "applied"]
    after = await pending_timers(engine)
    assert after["a"] == ([], None) and after["b"] == ([], None)

    # The scan, past every wake time: c names no timer it can read, so it wakes no more.
    async with engine.db.begin() as conn:
        await conn.execute(
            update(processes)
            .where(processes.c.id == rows["c"])
            .values(wake_at=datetime.now(UTC) - timedelta(seconds=1))
        )
        due, stale = await timers.due(conn, datetime.now(UTC) + timedelta(days=1), 10)
        assert due == [] and [item.process_id for item in stale] == [rows["c"]]
        await timers.repair(conn, stale)
    assert (await pending_timers(engine))["c"] == ([], None)


# --------------------------------------------------------------------------------------------
# Inputs whose step raises


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
    outcomes = await engine.apply([good(0, "a"), good(1, "bad"), good(2, "b")])

    assert [outcome.status for outcome in outcomes] == ["applied", "invalid", "applied"]
    assert "failed 3 times" in outcomes[1].reason
    assert len(calls) == MAX_ATTEMPTS + 1  # once in the whole batch, then alone until given up
    async with reading(engine.db) as conn:
        keys = set((await conn.execute(select(processes.c.correlation_key))).scalars())
    letters = await dead_letters(engine)
    assert keys == {"a", "b"}
    assert len(letters) == 1
    letter = letters[0]
    assert letter["offset"] == 1 and letter["topic"] == "t" and letter["partition"] == 1
    assert "the interpreter broke" in letter["reason"]

    # The same event again is a duplicate of the dead-lettered one, not a second failure.
    again = await engine.apply([good(1, "bad")])
    assert again[0].status == "duplicate"


async def test_the_process_a_poison_input_was_stepping_is_failed_with_the_reason(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bridge.engine import CallbackReceived

    await engine.apply([good(0, "p")])
    [message] = await outbox_values(engine, "out")
    real_step = bridge.batch.step

    def failing_step(definition: Any, process: Any, event: Any, now: Any, entropy: Any) -> Any:
        if type(event).__name__ == "TaskSucceeded":
            raise ValueError("cannot digest this output")
        return real_step(definition, process, event, now, entropy)

    monkeypatch.setattr(bridge.batch, "step", failing_step)
    outcomes = await engine.apply([CallbackReceived(message["t"], "success", output={})])
    assert outcomes[0].status == "invalid"
    async with reading(engine.db) as conn:
        row = (
            await conn.execute(
                select(processes.c.status, processes.c.state).where(
                    processes.c.correlation_key == "p"
                )
            )
        ).one()
    assert row.status == "FAILED"
    assert row.state["error"] == "Bridge.InputFailed"
    assert "cannot digest this output" in row.state["cause"]


# --------------------------------------------------------------------------------------------
# Property: whatever the mix, exactly the good inputs commit

_offsets = iter(range(1_000, 10**9))
_KINDS = ["good", "good", "good", "write-refused", "step-raises", *sorted(HOSTILE)]


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(kinds=st.lists(st.sampled_from(_KINDS), min_size=1, max_size=10))
async def test_exactly_the_good_inputs_of_a_mixed_batch_commit(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, kinds: list[str]
) -> None:
    real_insert = bridge.effects_writer.store.insert_processes
    real_step = bridge.batch.step

    async def refusing_insert(conn: Any, rows: Any, now: Any) -> None:
        if any(str(process.correlation_key).startswith("w-") for process, *_ in rows):
            raise DataError("INSERT ...", {}, Exception("refused (simulated)"))
        await real_insert(conn, rows, now)

    def raising_step(definition: Any, process: Any, trigger: Any, now: Any, entropy: Any) -> Any:
        if str(getattr(trigger, "correlation_key", "")).startswith("s-"):
            raise RuntimeError("the step breaks (simulated)")
        return real_step(definition, process, trigger, now, entropy)

    monkeypatch.setattr(bridge.effects_writer.store, "insert_processes", refusing_insert)
    monkeypatch.setattr(bridge.batch, "step", raising_step)

    inputs, good_keys, bad_offsets = [], set(), set()
    for kind in kinds:
        offset = next(_offsets)
        if kind == "good":
            good_keys.add(f"g-{offset}")
            inputs.append(good(offset, f"g-{offset}"))
            continue
        bad_offsets.add(offset)
        if kind == "write-refused":
            inputs.append(good(offset, f"w-{offset}"))
        elif kind == "step-raises":
            inputs.append(good(offset, f"s-{offset}"))
        else:
            inputs.append(event(offset, HOSTILE[kind][0]))
    outcomes = await engine.apply(inputs)

    assert len(outcomes) == len(inputs)
    for item, outcome in zip(inputs, outcomes, strict=True):
        expected = "invalid" if item.record.offset in bad_offsets else "applied"
        assert outcome.status == expected, (item.record.offset, outcome)
    started = await started_keys(engine)
    mine = {
        key
        for key in started
        if key and int(key.split("-")[1]) in {i.record.offset for i in inputs}
    }
    assert mine == good_keys
    letters = {letter["offset"] for letter in await dead_letters(engine)}
    assert letters & {i.record.offset for i in inputs} == bad_offsets
