"""``bridge worker`` and ``bridge web`` as separate processes sharing PostgreSQL and Kafka."""

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

import aiohttp
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition

from bridge.broker import free_port
from tests.conftest import create_postgres_database, drop_postgres_database
from tests.integration.harness import saga_definition

pytestmark = [pytest.mark.integration, pytest.mark.postgres]


async def _wait_healthy(url: str, processes: list[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + 60
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            assert all(p.poll() is None for p in processes), "a bridge process exited"
            try:
                async with http.get(url + "/healthz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    raise AssertionError("the web endpoint did not become healthy")


async def _message(consumer: AIOKafkaConsumer, order_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for records in (await consumer.getmany(timeout_ms=100)).values():
            for record in records:
                value = json.loads(record.value or b"null")
                if value.get("orderId") == order_id:
                    return dict(value)
    raise AssertionError(f"no message for {order_id}")


async def _worker_probes(url: str) -> None:
    """The worker's own listener: alive, ready (it holds the partition), and its metrics count
    what it applied."""
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{url}/livez") as r:
            assert r.status == 200, await r.text()
        async with http.get(f"{url}/readyz") as r:
            ready = await r.json()
            assert r.status == 200, ready
        assert ready["partitions"] >= 1 and ready["reasons"] == []
        async with http.get(f"{url}/metrics") as r:
            text = await r.text()
        assert 'bridge_inputs_total{kind="event",result="applied"}' in text
        assert "bridge_consumer_lag" in text


async def test_worker_and_web_processes_run_the_saga(kafka: str, tmp_path: Path) -> None:
    database = await create_postgres_database()
    suffix = uuid.uuid4().hex[:8]
    topics = saga_definition(tmp_path / "definitions", suffix)
    port, worker_port = free_port(), free_port()
    env = {
        **os.environ,
        "BRIDGE_KAFKA_BOOTSTRAP": kafka,
        "BRIDGE_DATABASE_URL": database,
        "BRIDGE_DATABASE_MIGRATE": "false",
        "BRIDGE_DEFINITIONS_DIR": str(tmp_path / "definitions"),
        "BRIDGE_KAFKA_GROUP_ID": f"bridge-{suffix}",
        "BRIDGE_KAFKA_REPLIES_TOPIC": f"replies.{suffix}",
        "BRIDGE_HTTP_PORT": str(port),
        "BRIDGE_WORKER_HTTP_PORT": str(worker_port),
        "BRIDGE_RELAY_POLL_MS": "20",
    }
    bridge = [sys.executable, "-m", "bridge"]
    upgrade = subprocess.run([*bridge, "db", "upgrade"], env=env, capture_output=True, timeout=60)
    assert upgrade.returncode == 0, upgrade.stderr
    logs = [open(tmp_path / f"{name}.log", "wb") for name in ("worker", "web")]  # noqa: SIM115
    processes = [
        subprocess.Popen([*bridge, name], env=env, stdout=log, stderr=subprocess.STDOUT)
        for name, log in zip(("worker", "web"), logs, strict=True)
    ]
    producer = AIOKafkaProducer(bootstrap_servers=kafka, enable_idempotence=False)
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka, fetch_max_wait_ms=10)
    try:
        url = f"http://127.0.0.1:{port}"
        await _wait_healthy(url, processes)
        await producer.start()
        await consumer.start()
        wanted = [topics[t] for t in ("inventory.commands", "payments.commands", "orders.done")]
        consumer.assign(
            [TopicPartition(t, p) for t in wanted for p in await producer.partitions_for(t)]
        )
        await consumer.seek_to_beginning()
        event = {"type": "OrderPlaced", "eventId": "e-1", "orderId": "o-split", "amount": 5}
        event |= {"customerId": "c", "items": []}
        await producer.send_and_wait(topics["orders.events"], json.dumps(event).encode())

        reserve = await _message(consumer, "o-split")
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{url}/tasks/{reserve['taskToken']}/success", json={}) as r:
                assert r.status == 200
            charge = await _message(consumer, "o-split")
            assert charge["type"] == "ChargePayment"
            reply = {"taskToken": charge["taskToken"], "output": {"paid": True}}
            await producer.send_and_wait(f"replies.{suffix}", json.dumps(reply).encode())
            done = await _message(consumer, "o-split")
            assert done["type"] == "OrderCompleted"
            async with http.get(f"{url}/processes?correlationKey=o-split") as r:
                body = await r.json()
        assert body["items"][0]["status"] == "SUCCEEDED"
        await _worker_probes(f"http://127.0.0.1:{worker_port}")

        for process in processes:
            process.send_signal(signal.SIGTERM)
        assert [process.wait(timeout=30) for process in processes] == [0, 0]
    finally:
        await consumer.stop()
        await producer.stop()
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
        for log in logs:
            log.close()
        await drop_postgres_database(database)
