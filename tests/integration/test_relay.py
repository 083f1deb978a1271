"""The outbox relay against the real broker: a row holds the messages of one transaction, published
in order and then deleted; a message that can never be published is parked on its own and does
not hold back the others; a failure that may pass keeps the order; an interruption between
publishing and deleting publishes again, with the same ids.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, MessageSizeTooLargeError
from click.testing import CliRunner
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

import bridge.faults
import bridge.relay
from bridge.cli import main
from bridge.metrics import Metrics
from bridge.relay import BUSY_RETRY_SECONDS, PublishingFailed, Relay
from bridge.store import outbox
from bridge.store.database import is_postgres, open_database, reading
from bridge.store.migrate import upgrade
from bridge.store.outbox import RELAY_LOCK
from bridge.store.schema import outbox as outbox_table

pytestmark = pytest.mark.integration

#: Five times the producer's 1 MB request limit.
HUGE = "x" * (5 * 1024 * 1024)


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = open_database(database_url)
    await upgrade(engine)
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture
async def producer(kafka: str) -> AsyncIterator[AIOKafkaProducer]:
    started = AIOKafkaProducer(bootstrap_servers=kafka, acks="all", enable_idempotence=False)
    await started.start()
    try:
        yield started
    finally:
        await started.stop()


def row(topic: str, value: Any, key: str | None = "k") -> dict[str, Any]:
    """A message as the engine hands it to the outbox."""
    message_id = uuid.uuid4().hex
    return {
        "message_id": message_id,
        "process_id": None,
        "topic": topic,
        "key": key,
        "value": value,
        "headers": {"ce_id": message_id, "ce_type": "test"},
        "created_at": datetime.now(UTC),
        "traceparent": None,
        "tracestate": None,
    }


async def write(db: AsyncEngine, rows: list[dict[str, Any]]) -> None:
    """The messages of one transaction: one outbox row."""
    async with db.begin() as conn:
        await outbox.add(conn, rows)


async def row_count(db: AsyncEngine) -> int:
    async with reading(db) as conn:
        return int(await conn.scalar(select(func.count()).select_from(outbox_table)) or 0)


async def records(kafka: str, topic: str, count: int) -> list[tuple[str, dict[str, str]]]:
    """The first ``count`` records of ``topic``: value and headers."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=kafka, auto_offset_reset="earliest", fetch_max_wait_ms=10
    )
    await consumer.start()
    found: list[tuple[str, dict[str, str]]] = []
    try:
        async with asyncio.timeout(20):
            while len(found) < count:
                batch = await consumer.getmany(timeout_ms=200)
                found.extend(
                    (r.value.decode(), {name: value.decode() for name, value in r.headers})
                    for rs in batch.values()
                    for r in rs
                )
    finally:
        await consumer.stop()
    return found


async def received(kafka: str, topic: str, count: int) -> list[Any]:
    return [value for value, _ in await records(kafka, topic, count)]


async def test_the_messages_of_a_row_are_published_in_order_and_the_row_deleted(
    db: AsyncEngine, producer: AIOKafkaProducer, kafka: str
) -> None:
    topic = f"relay.{uuid.uuid4().hex[:8]}"
    first = [row(topic, {"n": n}) for n in (1, 2, 3)]
    for number, message in enumerate(first):
        message["traceparent"] = f"00-{'a' * 31}{number}-{'b' * 16}-01"
    second = [row(topic, {"n": n}) for n in (4, 5)]
    await write(db, first)
    await write(db, second)
    assert await row_count(db) == 2
    async with reading(db) as conn:
        assert await outbox.backlog(conn) == 5
    metrics = Metrics()
    relay = Relay(db, producer, asyncio.Event(), poll_seconds=0.05, batch_size=10, metrics=metrics)

    assert await relay.publish_once() == 5

    found = await records(kafka, topic, 5)
    assert [value for value, _ in found] == [f'{{"n":{n}}}' for n in range(1, 6)]
    # Each message keeps its own trace context (no tracing records here: the stored one).
    assert [headers.get("traceparent") for _, headers in found[:3]] == [
        message["traceparent"] for message in first
    ]
    assert "traceparent" not in found[3][1]
    assert await row_count(db) == 0
    assert relay.published == 5
    assert "bridge_outbox_published_total 5.0" in (await metrics.scrape(db)).decode()


async def test_a_relay_that_finds_another_publishing_looks_again_soon(
    db: AsyncEngine, producer: AIOKafkaProducer, kafka: str
) -> None:
    """With several workers, one relay publishes at a time; the others must not rest until the
    next poll while rows committed after that relay's claim wait."""
    if not is_postgres(db):
        pytest.skip("SQLite has one writer and no advisory lock")
    topic = f"relay.{uuid.uuid4().hex[:8]}"
    await write(db, [row(topic, {"n": 1})])
    relay = Relay(db, producer, asyncio.Event(), poll_seconds=30.0, batch_size=10)
    async with db.begin() as other:  # another relay, in the middle of its round
        await other.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": RELAY_LOCK})
        assert await relay._round() == BUSY_RETRY_SECONDS
        assert relay.lock_busy
    assert await relay._round() is False
    assert not relay.lock_busy
    assert [value for value, _ in await records(kafka, topic, 1)] == ['{"n":1}']


async def test_a_round_takes_whole_rows_up_to_about_the_batch_size(
    db: AsyncEngine, producer: AIOKafkaProducer, kafka: str
) -> None:
    topic = f"relay.{uuid.uuid4().hex[:8]}"
    await write(db, [row(topic, {"n": n}) for n in range(1, 11)])
    for first in (11, 14, 17):
        await write(db, [row(topic, {"n": n}) for n in range(first, first + 3)])
    relay = Relay(db, producer, asyncio.Event(), poll_seconds=0.05, batch_size=4)

    # A row larger than a round goes alone, whole.
    assert await relay.publish_once() == 10
    assert await row_count(db) == 3
    # 3 messages are fewer than 4, so the next row comes whole; 6 are enough.
    assert await relay.publish_once() == 6
    assert await relay.publish_once() == 3
    assert await relay.publish_once() == 0
    assert await received(kafka, topic, 19) == [f'{{"n":{n}}}' for n in range(1, 20)]


async def test_an_unpublishable_message_is_parked_alone_and_the_others_go_on_in_order(
    db: AsyncEngine, producer: AIOKafkaProducer, kafka: str
) -> None:
    topic = f"relay.{uuid.uuid4().hex[:8]}"
    rows = [
        row(topic, {"n": 1}),
        row(topic, {"n": 2, "pad": HUGE}),
        row("not a topic!", {"n": 3}),
        row(topic, {"n": 4}),
        row(topic, {"n": 5}),
    ]
    await write(db, rows)
    metrics = Metrics()
    relay = Relay(db, producer, asyncio.Event(), poll_seconds=0.05, batch_size=10, metrics=metrics)

    assert await relay.publish_once() == 5
    assert await received(kafka, topic, 3) == ['{"n":1}', '{"n":4}', '{"n":5}']

    async with reading(db) as conn:
        left = (await conn.execute(select(outbox_table))).all()
        parked = await outbox.parked(conn)
        assert await outbox.backlog(conn) == 0
        assert await outbox.pending(conn) == []
    # The row is gone; the two messages that can never be published wait in rows of their own,
    # in order, with their reasons.
    assert [(r.message_count, r.messages[0]["message_id"]) for r in left] == [
        (1, rows[1]["message_id"]),
        (1, rows[2]["message_id"]),
    ]
    assert all(r.parked_at is not None for r in left)
    assert [p.message_id for p in parked] == [rows[1]["message_id"], rows[2]["message_id"]]
    assert [(p.topic, p.key, p.process_id) for p in parked] == [
        (topic, "k", None),
        ("not a topic!", "k", None),
    ]
    reasons = {p.message_id: p.reason for p in parked}
    assert reasons[rows[1]["message_id"]].startswith("MessageSizeTooLargeError")
    assert "not a valid Kafka topic name" in reasons[rows[2]["message_id"]]
    assert relay.parked == 2 and relay.published == 3

    text = (await metrics.scrape(db)).decode()
    assert "bridge_outbox_parked_total 2.0" in text
    assert "bridge_outbox_parked_rows 2.0" in text
    assert "bridge_outbox_backlog 0.0" in text
    assert "bridge_outbox_published_total 3.0" in text

    # Nothing is taken again until an operator retries; a retried message that still cannot be
    # published is parked again.
    assert await relay.publish_once() == 0
    async with db.begin() as conn:
        assert await outbox.unpark(conn, [rows[1]["message_id"]]) == 1
    async with reading(db) as conn:
        assert await outbox.backlog(conn) == 1
    assert await relay.publish_once() == 1
    async with reading(db) as conn:
        assert [p.message_id for p in await outbox.parked(conn)] == [
            rows[2]["message_id"],
            rows[1]["message_id"],
        ]
    assert await row_count(db) == 2


class _RefusingProducer:
    """Sends through the real producer, but refuses the records of one topic as too large while
    ``refusing`` (as a broker would until its size limit is raised)."""

    def __init__(self, real: AIOKafkaProducer, refused_topic: str) -> None:
        self.real = real
        self.refused_topic = refused_topic
        self.refusing = True

    async def send(self, topic: str, **kwargs: Any) -> Any:
        if topic == self.refused_topic and self.refusing:
            raise MessageSizeTooLargeError("the broker refuses this size")
        return await self.real.send(topic, **kwargs)


async def test_a_parked_message_goes_out_when_retried_once_its_cause_is_fixed(
    db: AsyncEngine, producer: AIOKafkaProducer, kafka: str
) -> None:
    topic, refused = f"relay.{uuid.uuid4().hex[:8]}", f"refused.{uuid.uuid4().hex[:8]}"
    rows = [row(topic, {"n": 1}), row(refused, {"n": 2}), row(topic, {"n": 3})]
    await write(db, rows)
    sender = _RefusingProducer(producer, refused)
    relay = Relay(
        db, cast(AIOKafkaProducer, sender), asyncio.Event(), poll_seconds=0.05, batch_size=10
    )

    assert await relay.publish_once() == 3
    assert await received(kafka, topic, 2) == ['{"n":1}', '{"n":3}']
    async with reading(db) as conn:
        assert [p.message_id for p in await outbox.parked(conn)] == [rows[1]["message_id"]]

    sender.refusing = False
    async with db.begin() as conn:
        assert await outbox.unpark(conn, [rows[1]["message_id"]]) == 1
    assert await relay.publish_once() == 1

    [(value, headers)] = await records(kafka, refused, 1)
    assert value == '{"n":2}' and headers["ce_type"] == "test"
    assert await row_count(db) == 0
    assert relay.published == 3 and relay.parked == 1


class _FlakyProducer:
    """Sends through the real producer, but the first send of one topic fails as a lost
    connection would."""

    def __init__(self, real: AIOKafkaProducer, failing_topic: str) -> None:
        self.real = real
        self.failing_topic = failing_topic
        self.failed = False

    async def send(self, topic: str, **kwargs: Any) -> Any:
        if topic == self.failing_topic and not self.failed:
            self.failed = True
            raise KafkaConnectionError("the broker went away")
        return await self.real.send(topic, **kwargs)


async def test_a_failure_that_may_pass_leaves_that_message_and_those_after_it(
    db: AsyncEngine, producer: AIOKafkaProducer, kafka: str
) -> None:
    topic, flaky = f"relay.{uuid.uuid4().hex[:8]}", f"flaky.{uuid.uuid4().hex[:8]}"
    first = [row(topic, {"n": 1})]
    second = [row(topic, {"n": 2}), row(flaky, {"n": 3}), row(topic, {"n": 4})]
    third = [row(topic, {"n": 5})]
    for messages in (first, second, third):
        await write(db, messages)
    sender = cast(AIOKafkaProducer, _FlakyProducer(producer, flaky))
    relay = Relay(db, sender, asyncio.Event(), poll_seconds=0.05, batch_size=10)

    with pytest.raises(PublishingFailed, match="KafkaConnectionError"):
        await relay.publish_once()
    # The first row went out and is gone; the second keeps only what was not sent, in its place.
    async with reading(db) as conn:
        left = [m.message_id for m in await outbox.pending(conn)]
        assert await outbox.parked(conn) == []
        assert await outbox.backlog(conn) == 3
    assert left == [second[1]["message_id"], second[2]["message_id"], third[0]["message_id"]]
    assert await row_count(db) == 2

    assert await relay.publish_once() == 3
    # Nothing twice: the messages sent before the failure left the row.
    assert await received(kafka, topic, 4) == ['{"n":1}', '{"n":2}', '{"n":4}', '{"n":5}']
    assert await received(kafka, flaky, 1) == ['{"n":3}']
    assert await row_count(db) == 0


class _StallingProducer:
    """Sends to ``stalling_topic`` never return (a buffer that stays full, metadata that never
    comes); the rest goes to the real producer."""

    def __init__(self, real: AIOKafkaProducer, stalling_topic: str) -> None:
        self.real = real
        self.stalling_topic = stalling_topic

    async def send(self, topic: str, **kwargs: Any) -> Any:
        if topic == self.stalling_topic:
            await asyncio.Event().wait()
        return await self.real.send(topic, **kwargs)


async def test_a_send_that_never_returns_is_given_up_and_the_rest_waits_in_order(
    db: AsyncEngine, producer: AIOKafkaProducer, kafka: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bridge.relay, "SEND_TIMEOUT_SECONDS", 0.5)
    topic, stuck = f"relay.{uuid.uuid4().hex[:8]}", f"stuck.{uuid.uuid4().hex[:8]}"
    messages = [row(topic, {"n": 1}), row(stuck, {"n": 2}), row(topic, {"n": 3})]
    await write(db, messages)
    sender = cast(AIOKafkaProducer, _StallingProducer(producer, stuck))
    relay = Relay(db, sender, asyncio.Event(), poll_seconds=0.05, batch_size=10)

    async with asyncio.timeout(10):
        with pytest.raises(PublishingFailed, match="TimeoutError"):
            await relay.publish_once()
    async with reading(db) as conn:
        left = [m.message_id for m in await outbox.pending(conn)]
    assert left == [messages[1]["message_id"], messages[2]["message_id"]]

    assert (
        await Relay(db, producer, asyncio.Event(), poll_seconds=0.05, batch_size=10).publish_once()
        == 2
    )
    assert await received(kafka, topic, 2) == ['{"n":1}', '{"n":3}']
    assert await received(kafka, stuck, 1) == ['{"n":2}']


class _Interrupted(Exception):
    """The relay stopped between publishing and deleting (as a crash there would)."""


async def test_an_interruption_between_publishing_and_deleting_publishes_again(
    db: AsyncEngine, producer: AIOKafkaProducer, kafka: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    topic = f"relay.{uuid.uuid4().hex[:8]}"
    rows = [row(topic, {"n": 1}), row("not a topic!", {"n": 2}), row(topic, {"n": 3})]
    await write(db, rows)

    def interrupt(name: str) -> None:
        if name == "after-publish-before-mark":
            raise _Interrupted(name)

    monkeypatch.setattr(bridge.faults, "point", interrupt)
    relay = Relay(db, producer, asyncio.Event(), poll_seconds=0.05, batch_size=10)
    with pytest.raises(_Interrupted):
        await relay.publish_once()
    # Published, but nothing settled: the row is whole and nothing is parked.
    async with reading(db) as conn:
        assert [m.message_id for m in await outbox.pending(conn)] == [r["message_id"] for r in rows]
        assert await outbox.parked(conn) == []

    monkeypatch.undo()
    again = Relay(db, producer, asyncio.Event(), poll_seconds=0.05, batch_size=10)
    assert await again.publish_once() == 3

    # Each message went out twice with the same ce_id, which is what consumers drop copies by.
    found = await records(kafka, topic, 4)
    assert [value for value, _ in found] == ['{"n":1}', '{"n":3}', '{"n":1}', '{"n":3}']
    ids = [headers["ce_id"] for _, headers in found]
    assert ids[:2] == ids[2:] == [rows[0]["message_id"], rows[2]["message_id"]]
    assert await row_count(db) == 1
    async with reading(db) as conn:
        assert [p.message_id for p in await outbox.parked(conn)] == [rows[1]["message_id"]]


async def test_the_relay_loop_goes_on_past_a_parked_message_and_stops_at_once(
    db: AsyncEngine, producer: AIOKafkaProducer, kafka: str
) -> None:
    topic = f"relay.{uuid.uuid4().hex[:8]}"
    wake = asyncio.Event()
    relay = Relay(db, producer, wake, poll_seconds=5.0, batch_size=2)
    running = asyncio.create_task(relay.run())
    try:
        await write(db, [row(topic, {"n": 1})])
        await write(db, [row(topic, {"pad": HUGE}), row(topic, {"n": 2})])
        await write(db, [row(topic, {"n": 3})])
        wake.set()
        assert await received(kafka, topic, 3) == ['{"n":1}', '{"n":2}', '{"n":3}']
    finally:
        running.cancel()
        async with asyncio.timeout(1):
            await asyncio.gather(running, return_exceptions=True)
    assert running.cancelled()


def test_an_operator_lists_and_retries_parked_messages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/bridge.db"
    rows = [row("t", {"n": 1}), row("t", {"n": 2}), row("t", {"n": 3})]

    async def prepare() -> None:
        engine = open_database(url)
        await upgrade(engine)
        await write(engine, rows[2:])
        async with engine.begin() as conn:
            now = datetime.now(UTC)
            await outbox.park(
                conn,
                [
                    outbox.Parking(
                        outbox.OutboxMessage.from_json(rows[0]),
                        "MessageSizeTooLargeError: big",
                        now,
                    ),
                    outbox.Parking(
                        outbox.OutboxMessage.from_json(rows[1]), "InvalidTopicError", now
                    ),
                ],
                now,
            )
        await engine.dispose()

    asyncio.run(prepare())
    monkeypatch.setenv("BRIDGE_DATABASE_URL", url)
    runner = CliRunner()

    listed = runner.invoke(main, ["outbox", "parked", "--json"])
    assert listed.exit_code == 0, listed.output
    shown = json.loads(listed.output)
    assert [item["messageId"] for item in shown] == [rows[0]["message_id"], rows[1]["message_id"]]
    assert shown[0]["reason"] == "MessageSizeTooLargeError: big" and shown[0]["topic"] == "t"
    assert shown[0]["key"] == "k" and shown[0]["processId"] is None
    assert all("value" not in item for item in shown)

    assert runner.invoke(main, ["outbox", "retry"]).exit_code == 2
    retried = runner.invoke(main, ["outbox", "retry", rows[1]["message_id"]])
    assert retried.exit_code == 0 and "1 message(s)" in retried.output
    listed = runner.invoke(main, ["outbox", "parked"])
    assert rows[0]["message_id"] in listed.output and "1 parked message(s)" in listed.output
    retried = runner.invoke(main, ["outbox", "retry", "--all"])
    assert "1 message(s)" in retried.output
