"""`bridge dlq list` and `bridge dlq replay`: a dead letter comes back once its cause is fixed."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from bridge.dlq import read_letters
from tests.integration.harness import running_bridge

pytestmark = pytest.mark.integration


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bridge", "dlq", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_a_too_large_event_is_replayed_after_the_limit_is_raised(
    kafka: str, tmp_path: Path
) -> None:
    suffix = uuid.uuid4().hex[:8]
    topic, dlq = f"replay.{suffix}", f"dlq.{suffix}"
    folder = tmp_path / "definitions"
    folder.mkdir()
    (folder / "go.asl.json").write_text(
        json.dumps(
            {
                "Triggers": [
                    {"Topic": topic, "EventType": "Go", "CorrelationKey": "$.k", "EventId": "$.id"}
                ],
                "StartAt": "Done",
                "States": {"Done": {"Type": "Succeed"}},
            }
        )
    )
    database = f"sqlite+aiosqlite:///{tmp_path}/bridge.db"
    settings = {"kafka_dlq_topic": dlq, "kafka_group_id": f"g-{suffix}", "definitions": folder}
    big = {"type": "Go", "id": "e-1", "k": "big", "padding": "x" * 3000}

    async with running_bridge(database, kafka, tmp_path, max_event_bytes=1024, **settings) as b:
        await b.publish(topic, big, key="big")
        deadline = time.monotonic() + 20
        letters = []
        while not letters and time.monotonic() < deadline:
            letters = await read_letters(kafka, dlq)
            await asyncio.sleep(0.2)
        assert len(letters) == 1
        assert "larger than 1024 bytes" in letters[0].reason

    env = {
        "BRIDGE_KAFKA_BOOTSTRAP": kafka,
        "BRIDGE_DATABASE_URL": database,
        "BRIDGE_KAFKA_DLQ_TOPIC": dlq,
    }
    listed = _cli("list", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    [summary] = json.loads(listed.stdout)
    assert summary["source"] == f"{topic}/0/0" or summary["source"].startswith(f"{topic}/")
    assert _cli("replay", env=env).returncode == 2  # nothing named: a usage error
    assert _cli("replay", "x/1", env=env).returncode == 2
    missing = _cli("replay", f"{summary['partition']}/{summary['offset'] + 5}", env=env)
    assert missing.returncode == 2 and "no dead letter at" in missing.stderr

    # The cause is fixed: the limit is raised. The replayed event now starts its process.
    async with running_bridge(database, kafka, tmp_path, **settings) as bridge:
        letter = f"{summary['partition']}/{summary['offset']}"
        replayed = _cli("replay", letter, "--json", env=env)
        assert replayed.returncode == 0, replayed.stderr
        [done] = json.loads(replayed.stdout)
        assert done["topic"] == topic and f"{done['partition']}/{done['offset']}" == letter
        process = await bridge.process_for("big", "SUCCEEDED")
        assert process["definition"] == "go"


def test_without_a_cluster_named_the_cli_looks_at_the_dev_broker() -> None:
    from bridge.broker import free_port

    port = free_port()  # nothing listens there
    env = {"BRIDGE_KAFKA_BOOTSTRAP": "", "BRIDGE_EMBEDDED_BROKER_PORT": str(port)}
    for args in (("list",), ("replay", "--all")):
        result = _cli(*args, env=env)
        assert result.returncode == 1, result.stderr
        assert f"no Kafka broker answers at 127.0.0.1:{port}: start `bridge dev`" in result.stderr
        assert "Traceback" not in result.stderr
