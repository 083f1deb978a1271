"""A whole bridge (worker + web) in this process, and Kafka/HTTP clients that talk to it.

Every test gets its own topic names and consumer groups on the shared broker, so tests do not see
each other's events.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import ConsumerRecord, TopicPartition

from bridge.bootstrap import Core, Web, open_core
from bridge.broker import free_port
from bridge.definitions import EXAMPLES_DIR
from bridge.settings import Settings
from bridge.store import outbox
from bridge.store.database import reading
from bridge.tracing import Tracing
from bridge.worker import Worker
from tests.conftest import create_postgres_database, drop_postgres_database

TOPICS = ("orders.events", "inventory.commands", "payments.commands", "orders.done")


def saga_definition(folder: Path, suffix: str) -> dict[str, str]:
    """Write the example order saga into ``folder`` with topics renamed ``<topic>.<suffix>``."""
    text = (EXAMPLES_DIR / "order-saga.asl.yaml").read_text()
    topics = {topic: f"{topic}.{suffix}" for topic in TOPICS}
    document = yaml.safe_load(text)
    rendered = json.dumps(document)
    for old, new in topics.items():
        rendered = rendered.replace(f'"{old}"', f'"{new}"')
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "order-saga.asl.json").write_text(rendered)
    return topics


@dataclass
class Bridge:
    settings: Settings
    core: Core
    kafka: str
    topics: dict[str, str]
    producer: AIOKafkaProducer
    http: aiohttp.ClientSession
    consumers: dict[str, AIOKafkaConsumer] = field(default_factory=dict)
    seen: dict[str, list[ConsumerRecord[bytes, bytes]]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.settings.base_url

    async def publish(
        self, topic: str, value: Any, key: str | None = None, raw: bytes | None = None
    ) -> None:
        payload = raw if raw is not None else json.dumps(value).encode()
        await self.producer.send_and_wait(
            self.topics.get(topic, topic), payload, key=None if key is None else key.encode()
        )

    async def place_order(self, order_id: str, amount: float, event_id: str | None = None) -> None:
        await self.publish(
            "orders.events",
            {
                "type": "OrderPlaced",
                "eventId": event_id or f"evt-{order_id}",
                "orderId": order_id,
                "amount": amount,
                "customerId": "c-1",
                "items": [{"sku": "book", "qty": 1}],
            },
            key=order_id,
        )

    async def next_message(
        self, topic: str, predicate: Any = lambda value: True, timeout: float = 20.0
    ) -> tuple[dict[str, Any], ConsumerRecord[bytes, bytes]]:
        """The first message on ``topic`` (from its start) whose JSON value passes ``predicate``."""
        name = self.topics.get(topic, topic)
        consumer = self.consumers.get(name)
        if consumer is None:
            # No consumer group: a new group's first join takes seconds on the test broker.
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self.kafka,
                group_id=None,
                auto_offset_reset="earliest",
                enable_auto_commit=False,
                fetch_max_wait_ms=10,
            )
            await consumer.start()
            partitions = await self.producer.partitions_for(name)
            consumer.assign([TopicPartition(name, partition) for partition in partitions])
            await consumer.seek_to_beginning()
            self.consumers[name] = consumer
            self.seen[name] = []
        deadline = time.monotonic() + timeout
        checked = 0
        while True:
            records = self.seen[name]
            for record in records[checked:]:
                value = json.loads(record.value or b"null")
                if predicate(value):
                    records.remove(record)
                    return value, record
            checked = len(records)
            if time.monotonic() > deadline:
                raise AssertionError(f"no matching message on {name} within {timeout}s")
            batch = await consumer.getmany(timeout_ms=100)
            for partition_records in batch.values():
                records.extend(partition_records)

    async def command(self, topic: str, order_id: str) -> dict[str, Any]:
        value, _ = await self.next_message(topic, lambda v: v.get("orderId") == order_id)
        return value

    async def get(self, path: str) -> tuple[int, Any]:
        async with self.http.get(self.url + path) as response:
            return response.status, await _body(response)

    async def post(self, path_or_url: str, body: Any = None, **kwargs: Any) -> tuple[int, Any]:
        url = path_or_url if path_or_url.startswith("http") else self.url + path_or_url
        if body is not None:
            kwargs["json"] = body
        async with self.http.post(url, **kwargs) as response:
            return response.status, await _body(response)

    async def http_put(self, path: str, body: Any) -> tuple[int, Any]:
        async with self.http.put(self.url + path, json=body) as response:
            return response.status, await _body(response)

    def counted(self, metric: str, **labels: str) -> float:
        """The sum of ``metric``'s samples (e.g. ``bridge_callbacks_total``) with ``labels``."""
        return sum(
            sample.value
            for family in self.core.engine.metrics.registry.collect()
            for sample in family.samples
            if sample.name == metric
            and all(sample.labels.get(name) == value for name, value in labels.items())
        )

    async def until_counted(
        self, metric: str, at_least: float, timeout: float = 20.0, **labels: str
    ) -> None:
        """Until ``metric`` with ``labels`` reaches ``at_least``: the barrier that proves an
        input was applied (or refused) before a test checks that it changed nothing."""

        async def reached() -> bool:
            return self.counted(metric, **labels) >= at_least

        await eventually(
            reached,
            timeout,
            lambda: (
                f"{metric}{labels} is {self.counted(metric, **labels)}, not {at_least}, "
                f"after {timeout}s"
            ),
        )

    async def until_published(self, timeout: float = 20.0) -> None:
        """Until the outbox is empty: everything committed so far is on its topic."""

        async def published() -> bool:
            async with reading(self.core.db) as conn:
                return not await outbox.pending(conn)

        await eventually(published, timeout, lambda: f"the outbox not empty after {timeout}s")

    async def process_by_id(
        self, process_id: str, done: bool = True, timeout: float = 20.0
    ) -> dict[str, Any]:
        """The process ``process_id``; with ``done``, once it is no longer RUNNING."""
        deadline = time.monotonic() + timeout
        while True:
            code, body = await self.get(f"/processes/{process_id}")
            assert code == 200, body
            if not done or body["status"] != "RUNNING":
                return dict(body)
            if time.monotonic() > deadline:
                raise AssertionError(f"process {process_id} still RUNNING after {timeout}s")
            await asyncio.sleep(0.05)

    async def process_for(
        self, order_id: str, status: str | None = None, timeout: float = 20.0
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            code, body = await self.get(f"/processes?correlationKey={order_id}")
            assert code == 200, body
            items = body["items"]
            if items and (status is None or items[0]["status"] == status):
                return dict(items[0])
            if time.monotonic() > deadline:
                raise AssertionError(f"process for {order_id} not {status}: {items}")
            await asyncio.sleep(0.05)


async def _body(response: aiohttp.ClientResponse) -> Any:
    text = await response.text()
    if "json" in (response.content_type or ""):
        return json.loads(text)
    return text


@asynccontextmanager
async def running_bridge(
    database_url: str,
    kafka: str,
    tmp_path: Path,
    *,
    definitions: Path | None = None,
    tracing: Tracing | None = None,
    **overrides: Any,
) -> AsyncIterator[Bridge]:
    """A bridge running the order saga (topics renamed per call), or, given ``definitions``, the
    definitions of that folder as they are. ``overrides`` replace any Settings field, including
    the ones set here (e.g. ``kafka_group_id`` to restart a worker in the same group).
    ``tracing``: the tracer to record spans with (default: none)."""
    suffix = uuid.uuid4().hex[:8]
    if definitions is None:
        definitions = tmp_path / "definitions"
        topics = saga_definition(definitions, suffix)
    else:
        topics = {}
    topics["bridge.replies"] = f"bridge.replies.{suffix}"
    topics["bridge.approvals"] = f"bridge.approvals.{suffix}"
    values: dict[str, Any] = {
        "database_url": database_url,
        "kafka_bootstrap": kafka,
        "http_port": free_port(),
        "kafka_group_id": f"bridge-{suffix}",
        "kafka_replies_topic": topics["bridge.replies"],
        "kafka_approvals_topic": topics["bridge.approvals"],
        "definitions_dir": definitions,
        # The pollers at their shipped interval: commits wake them (as in production), and a
        # 20-ms poll made every idle bridge of the suite run ~200 transactions a second.
    }
    values.update(overrides)
    settings = Settings(**values)
    core = await open_core(settings, tracing=tracing or Tracing())
    worker = Worker(core, kafka)
    web = Web(core, settings.http_host, settings.http_port)
    producer = AIOKafkaProducer(bootstrap_servers=kafka, enable_idempotence=False)
    http = aiohttp.ClientSession()
    bridge = Bridge(settings, core, kafka, topics, producer, http)
    try:
        await worker.start()
        await web.start()
        await producer.start()
        yield bridge
    finally:
        for consumer in bridge.consumers.values():
            await consumer.stop()
        await http.close()
        await producer.stop()
        await web.stop()
        await worker.stop()
        await core.close()


async def eventually(
    check: Callable[[], Awaitable[bool]], timeout: float, describe: Callable[[], str]
) -> None:
    """Wait until ``check`` passes; after ``timeout`` seconds, fail saying ``describe()``."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(describe())
        await asyncio.sleep(0.05)


@asynccontextmanager
async def scratch_database(database: str, folder: Path) -> AsyncIterator[str]:
    """The URL of a fresh database: ``sqlite``, a file in ``folder``; ``postgres``, a new
    database, dropped afterwards."""
    if database == "sqlite":
        yield f"sqlite+aiosqlite:///{folder}/bridge.db"
        return
    database_url = await create_postgres_database()
    try:
        yield database_url
    finally:
        await drop_postgres_database(database_url)
