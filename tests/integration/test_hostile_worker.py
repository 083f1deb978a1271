"""A running ``bridge worker`` on PostgreSQL meets hostile events: each is dead-lettered with its
reason, the good orders around them (on the same partition and on another) go on within
seconds, and the worker still stops promptly."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.structs import TopicPartition

from tests.conftest import create_postgres_database, drop_postgres_database
from tests.integration.harness import saga_definition

pytestmark = [pytest.mark.integration, pytest.mark.postgres]


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


def _order(order_id: str, **extra: Any) -> bytes:
    event = {"type": "OrderPlaced", "eventId": f"e-{order_id}", "orderId": order_id, "amount": 5}
    return json.dumps(event | {"customerId": "c", "items": []} | extra).encode()


#: Each of these once stalled every partition of a worker on PostgreSQL.
HOSTILE: dict[str, bytes] = {
    "deep": _order("o-deep", items=_nested(300)),
    "long-key": _order("k" * 600),
    "nul": _order("o-nul").replace(b'"customerId": "c"', b'"customerId": "c\\u0000x"'),
    "zero-byte": b"\x00\x00\x00\x00\x01avro",
    "non-object": b"[]",
    "huge": _order("o-huge", pad="x" * (5 * 1024 * 1024)),
}


COMPRESSED = ("gzip", "snappy", "lz4", "zstd")
GOOD = ("o-after", "o-other", *(f"o-{codec}" for codec in COMPRESSED))


async def _messages(
    consumer: AIOKafkaConsumer, wanted: int, match: Any, seconds: float
) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and len(found) < wanted:
        for records in (await consumer.getmany(timeout_ms=100)).values():
            for record in records:
                value = json.loads(record.value or b"null")
                if match(value):
                    found.append(value)
    return found


async def test_hostile_events_are_dead_lettered_and_the_good_orders_go_on(
    kafka: str, tmp_path: Path
) -> None:
    database = await create_postgres_database()
    suffix = uuid.uuid4().hex[:8]
    topics = saga_definition(tmp_path / "definitions", suffix)
    dlq = f"dlq.{suffix}"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(topics["orders.events"], num_partitions=2, replication_factor=1)]
        )
    finally:
        await admin.close()
    env = {
        **os.environ,
        "BRIDGE_KAFKA_BOOTSTRAP": kafka,
        "BRIDGE_DATABASE_URL": database,
        "BRIDGE_DEFINITIONS_DIR": str(tmp_path / "definitions"),
        "BRIDGE_KAFKA_GROUP_ID": f"bridge-{suffix}",
        "BRIDGE_KAFKA_REPLIES_TOPIC": f"replies.{suffix}",
        "BRIDGE_KAFKA_DLQ_TOPIC": dlq,
        "BRIDGE_RELAY_POLL_MS": "20",
    }
    log = open(tmp_path / "worker.log", "wb")  # noqa: SIM115
    worker = subprocess.Popen(
        [sys.executable, "-m", "bridge", "worker"], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka, enable_idempotence=False, max_request_size=8 * 1024 * 1024
    )
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka, fetch_max_wait_ms=10)
    try:
        await producer.start()
        await consumer.start()
        events = topics["orders.events"]
        inventory = topics["inventory.commands"]
        for topic in (inventory, dlq):
            # Created empty now, so that the consumer can be assigned before anything arrives.
            await producer.send_and_wait(topic, b"{}", key=b"-")
        consumer.assign(
            [
                TopicPartition(topic, partition)
                for topic in (inventory, dlq)
                for partition in await producer.partitions_for(topic)
            ]
        )
        await consumer.seek_to_beginning()
        # The hostile events and a good order after them on partition 0, a good one on 1.
        for value in HOSTILE.values():
            await producer.send_and_wait(events, value, key=b"same", partition=0)
        await producer.send_and_wait(events, _order("o-after"), key=b"o-after", partition=0)
        await producer.send_and_wait(events, _order("o-other"), key=b"o-other", partition=1)
        # Producers (librdkafka's often) compress their batches: every codec is read.
        for codec in COMPRESSED:
            compressing = AIOKafkaProducer(
                bootstrap_servers=kafka, enable_idempotence=False, compression_type=codec
            )
            await compressing.start()
            try:
                order = f"o-{codec}"
                await compressing.send_and_wait(
                    events, _order(order), key=order.encode(), partition=1
                )
            finally:
                await compressing.stop()

        started = time.monotonic()
        found = await _messages(
            consumer,
            len(GOOD) + len(HOSTILE),
            lambda v: v.get("orderId") in GOOD or v.get("type") == "bridge.DeadLetter",
            seconds=60,
        )
        elapsed = time.monotonic() - started
        output = (tmp_path / "worker.log").read_text()[-4000:]
        commands = sorted(v["orderId"] for v in found if v.get("type") != "bridge.DeadLetter")
        letters = [v for v in found if v.get("type") == "bridge.DeadLetter"]
        assert commands == sorted(GOOD), output
        assert len(letters) == len(HOSTILE), output
        reasons = " | ".join(letter["reason"] for letter in letters)
        for expected in ("nested deeper", "longer than 500", "NUL", "not JSON", "JSON object"):
            assert expected in reasons
        assert "larger than" in reasons
        assert elapsed < 30, f"the good orders took {elapsed:.1f}s"
        assert worker.poll() is None, "the worker stopped"

        stopping = time.monotonic()
        worker.send_signal(signal.SIGINT)
        assert worker.wait(timeout=30) == 0
        assert time.monotonic() - stopping < 30
    finally:
        await consumer.stop()
        await producer.stop()
        if worker.poll() is None:
            worker.kill()
            worker.wait()
        log.close()
        await drop_postgres_database(database)
        await asyncio.sleep(0)
