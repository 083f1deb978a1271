"""The outbox relay against the real broker: published rows are deleted, a message that can never
be published is parked and does not hold back the others, a failure that may pass keeps the order.
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
from aiokafka.errors import KafkaConnectionError
from click.testing import CliRunner
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bridge.cli import main
from bridge.metrics import Metrics
from bridge.relay import PublishingFailed, Relay
from bridge.store import outbox
from bridge.store.database import open_engine, reading
from bridge.store.migrate import upgrade
from bridge.store.schema import outbox as outbox_table

pytestmark = pytest.mark.integration

#: Five times the producer's 1 MB request limit.
HUGE = "x" * (5 * 1024 * 1024)


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = open_engine(database_url)
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
    return {
        "message_id": uuid.uuid4().hex,
        "process_id": None,
        "topic": topic,
        "key": key,
        "value": value,
        "headers": {"ce_type": "test"},
        "created_at": datetime.now(UTC),
        "traceparent": None,
        "tracestate": None,
    }


async def write(db: AsyncEngine, rows: list[dict[str, Any]]) -> None:
    async with db.begin() as conn:
        await outbox.add(conn, rows)


async def received(kafka: str, topic: str, count: int) -> list[Any]:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=kafka, auto_offset_reset="earliest", fetch_max_wait_ms=10
    )
    await consumer.start()
    values: list[Any] = []
    try:
        async with asyncio.timeout(20):
            while len(values) < count:
                batch = await consumer.getmany(timeout_ms=200)
                values.extend(r.value.decode() for rs in batch.values() for r in rs)
    finally:
        await consumer.stop()
    return values


async def test_an_unpublishable_message_is_parked_and_the_others_go_on_in_order(
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
    # Published rows are gone; the two that can never be published wait, with their reasons.
    assert {r.message_id for r in left} == {rows[i]["message_id"] for i in (1, 2)}
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
        assert len(await outbox.parked(conn)) == 2


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


async def test_a_failure_that_may_pass_leaves_that_row_and_those_after_it(
    db: AsyncEngine, producer: AIOKafkaProducer, kafka: str
) -> None:
    topic, flaky = f"relay.{uuid.uuid4().hex[:8]}", f"flaky.{uuid.uuid4().hex[:8]}"
    rows = [row(topic, {"n": 1}), row(flaky, {"n": 2}), row(topic, {"n": 3})]
    await write(db, rows)
    sender = cast(AIOKafkaProducer, _FlakyProducer(producer, flaky))
    relay = Relay(db, sender, asyncio.Event(), poll_seconds=0.05, batch_size=10)

    with pytest.raises(PublishingFailed, match="KafkaConnectionError"):
        await relay.publish_once()
    async with reading(db) as conn:
        left = (await conn.execute(select(outbox_table.c.message_id))).scalars().all()
        assert await outbox.parked(conn) == []
    assert set(left) == {rows[1]["message_id"], rows[2]["message_id"]}

    assert await relay.publish_once() == 2
    assert await received(kafka, topic, 2) == ['{"n":1}', '{"n":3}']
    assert await received(kafka, flaky, 1) == ['{"n":2}']
    async with reading(db) as conn:
        assert await conn.scalar(select(func.count()).select_from(outbox_table)) == 0


async def test_the_relay_loop_goes_on_past_a_parked_message_and_stops_at_once(
    db: AsyncEngine, producer: AIOKafkaProducer, kafka: str
) -> None:
    topic = f"relay.{uuid.uuid4().hex[:8]}"
    wake = asyncio.Event()
    relay = Relay(db, producer, wake, poll_seconds=5.0, batch_size=2)
    running = asyncio.create_task(relay.run())
    try:
        await write(db, [row(topic, {"n": 1}), row(topic, {"pad": HUGE}), row(topic, {"n": 2})])
        wake.set()
        assert await received(kafka, topic, 2) == ['{"n":1}', '{"n":2}']
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
        engine = open_engine(url)
        await upgrade(engine)
        await write(engine, rows)
        async with engine.begin() as conn:
            ids = (await conn.execute(select(outbox_table.c.id))).scalars().all()
            await outbox.park(conn, {ids[0]: "MessageSizeTooLargeError: big"}, datetime.now(UTC))
            await outbox.park(conn, {ids[1]: "InvalidTopicError"}, datetime.now(UTC))
        await engine.dispose()

    asyncio.run(prepare())
    monkeypatch.setenv("BRIDGE_DATABASE_URL", url)
    runner = CliRunner()

    listed = runner.invoke(main, ["outbox", "parked", "--json"])
    assert listed.exit_code == 0, listed.output
    shown = json.loads(listed.output)
    assert [item["messageId"] for item in shown] == [rows[0]["message_id"], rows[1]["message_id"]]
    assert shown[0]["reason"] == "MessageSizeTooLargeError: big" and shown[0]["topic"] == "t"

    assert runner.invoke(main, ["outbox", "retry"]).exit_code == 2
    retried = runner.invoke(main, ["outbox", "retry", rows[1]["message_id"]])
    assert retried.exit_code == 0 and "1 message(s)" in retried.output
    listed = runner.invoke(main, ["outbox", "parked"])
    assert rows[0]["message_id"] in listed.output and "1 parked message(s)" in listed.output
    retried = runner.invoke(main, ["outbox", "retry", "--all"])
    assert "1 message(s)" in retried.output
