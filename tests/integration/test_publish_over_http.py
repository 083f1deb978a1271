"""``POST /events``: an event posted over HTTP is produced to Kafka and consumed like any other:
it starts the process its trigger names, a repeated CloudEvent changes nothing, and what the
workers could not read, or a topic no definition reads, is refused before anything is produced.

One bridge per database (the order saga, its topics renamed) serves every test; each test uses
its own order ids.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition
from click.testing import CliRunner

from approvals.app import build_app
from bridge.cli import main
from tests.conftest import create_postgres_database, drop_postgres_database
from tests.integration.harness import Bridge, running_bridge

pytestmark = pytest.mark.integration


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
async def bridge(
    request: pytest.FixtureRequest, kafka: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Bridge]:
    tmp_path = tmp_path_factory.mktemp("publish")
    if request.param == "sqlite":
        database_url = f"sqlite+aiosqlite:///{tmp_path}/bridge.db"
    else:
        database_url = await create_postgres_database()
    try:
        async with running_bridge(database_url, kafka, tmp_path) as running:
            yield running
    finally:
        if request.param == "postgres":
            await drop_postgres_database(database_url)


def order(order_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": "OrderPlaced",
        "eventId": f"evt-{order_id}",
        "orderId": order_id,
        "amount": 10,
        "customerId": "c-1",
        "items": [{"sku": "book", "qty": 1}],
        **extra,
    }


async def post_event(
    bridge: Bridge,
    body: bytes | Any,
    *,
    topic: str | None = "orders.events",
    key: str | None = None,
    content_type: str = "application/json",
    headers: dict[str, str] | None = None,
) -> tuple[int, Any, Mapping[str, str]]:
    query = {}
    if topic is not None:
        query["topic"] = bridge.topics.get(topic, topic)
    if key is not None:
        query["key"] = key
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with bridge.http.post(
        bridge.url + "/events",
        params=query,
        data=data,
        headers={"Content-Type": content_type, **(headers or {})},
    ) as response:
        text = await response.text()
        return response.status, json.loads(text) if text else None, response.headers


async def explained(bridge: Bridge, url: str, timeout: float = 20.0) -> dict[str, Any]:
    """The explanation at ``url`` once a worker has read the event."""
    deadline = time.monotonic() + timeout
    while True:
        async with bridge.http.get(url) as response:
            if response.status == 200:
                return dict((await response.json())["events"][0])
            assert response.status == 404, await response.text()
        if time.monotonic() > deadline:
            raise AssertionError(f"{url} was not explained within {timeout}s")
        await asyncio.sleep(0.05)


async def test_a_plain_json_event_starts_its_process_and_is_keyed(bridge: Bridge) -> None:
    order_id = f"o-{uuid.uuid4().hex[:8]}"

    status, body, headers = await post_event(bridge, order(order_id), key=order_id)

    assert status == 202, body
    topic = bridge.topics["orders.events"]
    assert body["topic"] == topic
    assert body["eventId"] == f"{topic}/{body['partition']}/{body['offset']}"
    assert headers["Location"] == body["explanation"]
    assert body["explanation"] == f"{bridge.url}/events/{body['eventId']}"
    process = await bridge.process_for(order_id)
    assert process["definition"] == "order-saga"
    explanation = await explained(bridge, body["explanation"])
    assert explanation["outcome"] == "started 1 process(es)"
    assert explanation["started"][0]["processId"] == process["id"]
    # The record carries the key, so it is ordered with the rest of the order's events.
    record = await read_back(bridge, topic, body["partition"], body["offset"])
    assert record.key == order_id.encode()


async def read_back(bridge: Bridge, topic: str, partition: int, offset: int) -> Any:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bridge.kafka, enable_auto_commit=False, fetch_max_wait_ms=10
    )
    await consumer.start()
    try:
        where = TopicPartition(topic, partition)
        consumer.assign([where])
        consumer.seek(where, offset)
        return await consumer.getone()
    finally:
        await consumer.stop()


async def test_a_binary_cloudevent_posted_twice_starts_one_process(bridge: Bridge) -> None:
    order_id = f"o-{uuid.uuid4().hex[:8]}"
    ce = {
        "ce-specversion": "1.0",
        "ce-id": f"ce/{order_id}",
        "ce-source": "/shop",
        "ce-type": "OrderPlaced",
        "ce-partitionkey": order_id,
    }
    data = order(order_id)
    del data["type"], data["eventId"]

    first = await post_event(bridge, data, headers=ce)
    again = await post_event(bridge, data, headers=ce)

    assert (first[0], again[0]) == (202, 202), (first[1], again[1])
    assert first[1]["eventId"] == f"ce/{order_id}"
    assert (first[1]["source"], first[1]["type"]) == ("/shop", "OrderPlaced")
    # Found by its id, the retried post included (the id holds a slash: it is escaped).
    assert first[1]["explanation"] == f"{bridge.url}/events/ce%2F{order_id}"
    await bridge.process_for(order_id)
    deadline = time.monotonic() + 20
    while (explanation := await explained(bridge, first[1]["explanation"]))["duplicates"] < 1:
        assert time.monotonic() < deadline, explanation
        await asyncio.sleep(0.05)
    assert explanation["eventId"] == f"ce/{order_id}"
    code, page = await bridge.get(f"/processes?correlationKey={order_id}")
    assert code == 200 and len(page["items"]) == 1
    record = await read_back(bridge, first[1]["topic"], first[1]["partition"], first[1]["offset"])
    assert record.key == order_id.encode()
    assert dict(record.headers)["ce_type"] == b"OrderPlaced"


async def test_a_structured_cloudevent_starts_its_process(bridge: Bridge) -> None:
    order_id = f"o-{uuid.uuid4().hex[:8]}"
    envelope = {
        "specversion": "1.0",
        "id": f"s-{order_id}",
        "source": "/shop",
        "type": "OrderPlaced",
        "data": order(order_id),
    }

    status, body, _ = await post_event(
        bridge, envelope, content_type="application/cloudevents+json", key=order_id
    )

    assert status == 202, body
    assert body["eventId"] == f"s-{order_id}"
    await bridge.process_for(order_id)


@pytest.mark.parametrize(
    ("kwargs", "status", "says"),
    [
        ({"topic": None}, 400, "?topic="),
        ({"topic": "bridge.replies"}, 422, "no deployed definition reads"),
        ({"body": b"{oops"}, 400, "not JSON"),
        ({"body": b'{"a": "\\u0000"}'}, 400, "NUL"),
        ({"body": b"[" * 200 + b"]" * 200}, 400, "deeper"),
        ({"content_type": "text/plain"}, 415, "Content-Type"),
        ({"headers": {"ce-specversion": "1.0"}}, 400, "needs id, source, type"),
    ],
)
async def test_what_cannot_be_read_is_refused_and_nothing_is_produced(
    bridge: Bridge, kwargs: dict[str, Any], status: int, says: str
) -> None:
    kwargs.setdefault("body", order("never"))
    before = await end_offset(bridge)

    code, body, _ = await post_event(bridge, **kwargs)

    assert code == status, body
    assert says in body["detail"]
    assert await end_offset(bridge) == before


async def end_offset(bridge: Bridge) -> int:
    topic = bridge.topics["orders.events"]
    partitions = [TopicPartition(topic, p) for p in await bridge.producer.partitions_for(topic)]
    consumer = AIOKafkaConsumer(bootstrap_servers=bridge.kafka, enable_auto_commit=False)
    await consumer.start()
    try:
        return sum((await consumer.end_offsets(partitions)).values())
    finally:
        await consumer.stop()


async def test_a_page_of_another_site_cannot_post_an_event(bridge: Bridge) -> None:
    code, body, _ = await post_event(
        bridge, order("x"), headers={"Origin": "https://elsewhere.example"}
    )
    assert code == 403, body


async def test_the_metrics_count_what_was_posted(bridge: Bridge) -> None:
    await post_event(bridge, order(f"o-{uuid.uuid4().hex[:8]}"))
    await post_event(bridge, order("m"), topic="nobody.reads.this")
    code, text = await bridge.get("/metrics")
    assert code == 200
    assert 'bridge_http_events_total{result="refused"}' in text
    assert 'bridge_http_events_total{result="accepted"}' in text


async def test_without_a_broker_the_answer_is_503_with_retry_after(bridge: Bridge) -> None:
    """A web process that knows no broker says which setting is missing; one whose broker is
    away says so too, and the client retries."""
    for kafka_bootstrap, says in ((None, "BRIDGE_KAFKA_BOOTSTRAP"), ("127.0.0.1:9", "no broker")):
        app = build_app(bridge.core.engine, "secret", kafka_bootstrap=kafka_bootstrap)
        async with TestClient(TestServer(app)) as client:
            response = await client.post(
                "/events",
                params={"topic": bridge.topics["orders.events"]},
                json=order("away"),
            )
            body = await response.json()
        assert response.status == 503, body
        assert response.headers["Retry-After"] == "5"
        assert says in body["detail"]


async def test_bridge_publish_over_http_prints_where_to_follow_each_event(bridge: Bridge) -> None:
    order_id = f"o-{uuid.uuid4().hex[:8]}"
    topic = bridge.topics["orders.events"]

    # The command is synchronous; the bridge answers from this test's event loop.
    result = await asyncio.to_thread(
        CliRunner().invoke,
        main,
        ["publish", "--http", "--key", order_id, topic, json.dumps(order(order_id))],
        env={"BRIDGE_URL": bridge.url},
    )

    assert result.exit_code == 0, result.output
    event_id, explanation = result.output.splitlines()[0].split()
    assert event_id.startswith(f"{topic}/")
    assert explanation == f"{bridge.url}/events/{event_id}"
    assert f"published 1 event(s) to {topic} through {bridge.url}" in result.output
    await bridge.process_for(order_id)
    refused = await asyncio.to_thread(
        CliRunner().invoke,
        main,
        ["publish", "--http", "nobody.reads", "{}"],
        env={"BRIDGE_URL": bridge.url},
    )
    assert refused.exit_code == 1
    assert "HTTP 422: no deployed definition reads 'nobody.reads'" in refused.output
