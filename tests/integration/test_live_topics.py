"""Live topics: a definition deployed while the workers run, whose trigger or event wait reads a
topic they do not consume yet, has its events consumed without a restart."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import Bridge, running_bridge

pytestmark = pytest.mark.integration


def started_by(topic: str, name: str) -> dict[str, Any]:
    return {
        "Comment": f"started by Hello events on {topic}",
        "Triggers": [{"Topic": topic, "EventType": "Hello", "CorrelationKey": "$.id"}],
        "StartAt": "Wave",
        "States": {"Wave": {"Type": "Pass", "Result": name, "End": True}},
    }


def shows_lag_of(metrics: str, topic: str) -> bool:
    return any(
        line.startswith("bridge_consumer_lag{") and f'topic="{topic}"' in line
        for line in metrics.splitlines()
    )


async def started(bridge: Bridge, key: str, timeout: float = 40.0) -> dict[str, Any]:
    """The process for ``key``, once there."""
    deadline = time.monotonic() + timeout
    while True:
        code, body = await bridge.get(f"/processes?correlationKey={key}")
        assert code == 200, body
        if body["items"]:
            return dict(body["items"][0])
        if time.monotonic() > deadline:
            raise AssertionError(f"no process for {key} within {timeout}s")
        await asyncio.sleep(0.2)


async def test_a_definition_deployed_at_runtime_is_fed_from_its_new_topic(
    database_url: str, kafka: str, tmp_path: Path
) -> None:
    suffix = uuid.uuid4().hex[:8]
    first, second = f"first.{suffix}", f"second.{suffix}"
    folder = tmp_path / "definitions"
    folder.mkdir()
    (folder / "first.asl.json").write_text(json.dumps(started_by(first, "first")))
    async with running_bridge(database_url, kafka, tmp_path, definitions=folder) as bridge:
        await bridge.publish(first, {"type": "Hello", "id": "a"})
        assert (await started(bridge, "a"))["definition"] == "first"

        code, body = await bridge.http_put("/definitions/second", started_by(second, "second"))
        assert code in (200, 201), body
        # Published before the workers read the topic: consumed from its start once they do.
        await bridge.publish(second, {"type": "Hello", "id": "b"})

        process = await started(bridge, "b")
        assert process["definition"] == "second"
        # And the first topic goes on.
        await bridge.publish(first, {"type": "Hello", "id": "c"})
        assert (await started(bridge, "c"))["definition"] == "first"


@pytest.mark.sqlite_only
async def test_workers_that_started_with_no_event_topic_follow_the_first_one(
    database_url: str, kafka: str, tmp_path: Path
) -> None:
    suffix = uuid.uuid4().hex[:8]
    topic = f"late.{suffix}"
    folder = tmp_path / "definitions"
    folder.mkdir()
    quiet = {"StartAt": "A", "States": {"A": {"Type": "Pass", "End": True}}}
    (folder / "quiet.asl.json").write_text(json.dumps(quiet))
    async with running_bridge(database_url, kafka, tmp_path, definitions=folder) as bridge:
        code, body = await bridge.http_put("/definitions/late", started_by(topic, "late"))
        assert code in (200, 201), body
        await bridge.publish(topic, {"type": "Hello", "id": "z"})

        assert (await started(bridge, "z"))["definition"] == "late"
        # The lag of the new topic is shown too, once the group has committed an offset there.
        deadline = time.monotonic() + 30
        while not shows_lag_of((await bridge.get("/metrics"))[1], topic):
            assert time.monotonic() < deadline, f"no consumer lag of {topic} within 30s"
            await asyncio.sleep(0.5)
