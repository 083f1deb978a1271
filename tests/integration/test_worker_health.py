"""The worker's probes served in process (aiohttp's test client over the listener's app), on a
real database: liveness follows the worker's loops, readiness the database, the group and the
outbox, and /metrics is this worker's exposition."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import update

from bridge.bootstrap import Core, open_core
from bridge.intake import StartRequested
from bridge.settings import Settings
from bridge.store.schema import outbox
from bridge.worker_health import GroupState, WorkerHealth

pytestmark = pytest.mark.integration

SEND = {
    "StartAt": "Tell",
    "States": {
        "Tell": {
            "Type": "Task",
            "Resource": "bridge:kafka:send",
            "Parameters": {"Topic": "told", "Message": {"hello": "world"}},
            "End": True,
        }
    },
}


@pytest.fixture
async def core(database_url: str, tmp_path: Path) -> AsyncIterator[Core]:
    (tmp_path / "tell.asl.json").write_text(json.dumps(SEND))
    opened = await open_core(Settings(database_url=database_url, definitions_dir=tmp_path))
    try:
        yield opened
    finally:
        await opened.close()


async def test_probes_follow_the_loops_the_database_the_group_and_the_outbox(core: Core) -> None:
    group = GroupState(joined=False, partitions=0)
    loop = asyncio.create_task(asyncio.sleep(3600), name="relay")
    health = WorkerHealth(core.db, core.engine.metrics, lambda: group, lambda: [loop], 60.0)
    async with TestClient(TestServer(health.app())) as client:
        alive = await client.get("/livez")
        assert alive.status == 200

        waiting = await client.get("/readyz")
        assert waiting.status == 503
        assert (await waiting.json())["reasons"] == [
            "the consumer group has not given this worker its partitions yet"
        ]

        group = GroupState(joined=True, partitions=1)
        ready = await client.get("/readyz")
        assert ready.status == 200, await ready.text()

        # A message that waits too long to be published: the broker must be away.
        assert (await core.engine.apply_one(StartRequested("tell", {}))).ok
        async with core.db.begin() as conn:
            await conn.execute(
                update(outbox).values(created_at=datetime.now(UTC) - timedelta(minutes=5))
            )
        stuck = await client.get("/readyz")
        body = await stuck.json()
        assert stuck.status == 503
        assert "is the broker away?" in body["reasons"][0]
        assert body["outboxAgeSeconds"] >= 299

        metrics = await client.get("/metrics")
        text = await metrics.text()
        assert 'bridge_inputs_total{kind="start",result="applied"} 1.0' in text
        assert "bridge_outbox_oldest_seconds" in text

        loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)
        dead = await client.get("/livez")
        assert dead.status == 503
        assert (await dead.json())["ended"] == ["relay"]
