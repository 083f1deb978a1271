"""Express processes over the real engine, and fire-and-forget commands counted across a restart
(the fault suite, tests/faults, does the same under SIGKILL for the saga's OrderCompleted)."""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from pathlib import Path

import pytest

from tests.integration.harness import running_bridge

pytestmark = [pytest.mark.integration, pytest.mark.sqlite_only]

EXPRESS = {
    "ProcessType": "EXPRESS",
    "StartAt": "Total",
    "States": {
        "Total": {"Type": "Pass", "Parameters": {"sum.$": "States.MathAdd($.a, $.b)"},
                  "Next": "Big?"},
        "Big?": {
            "Type": "Choice",
            "Choices": [{"Variable": "$.sum", "NumericGreaterThan": 10, "Next": "Big"}],
            "Default": "Small",
        },
        "Big": {"Type": "Pass", "Parameters": {"size": "big", "sum.$": "$.sum"}, "End": True},
        "Small": {"Type": "Pass", "Parameters": {"size": "small", "sum.$": "$.sum"}, "End": True},
    },
}  # fmt: skip

SLOW_EXPRESS = {
    "ProcessType": "EXPRESS",
    "TimeoutSeconds": 1,
    "StartAt": "Nap",
    "States": {"Nap": {"Type": "Wait", "Seconds": 60, "End": True}},
}


async def test_express_processes(database_url: str, kafka: str, tmp_path: Path) -> None:
    folder = tmp_path / "definitions"
    folder.mkdir()
    (folder / "total.asl.json").write_text(json.dumps(EXPRESS))
    (folder / "slow.asl.json").write_text(json.dumps(SLOW_EXPRESS))
    async with running_bridge(database_url, kafka, tmp_path, definitions=folder) as bridge:
        start = {"definition": "total", "input": {"a": 7, "b": 5}}
        status, done = await bridge.post("/processes?wait=5", start)
        assert status == 200 and done["status"] == "SUCCEEDED", done
        assert done["output"] == {"size": "big", "sum": 12}
        _, history = await bridge.get(f"/processes/{done['id']}/history")
        assert [e["type"] for e in history["items"]] == ["ProcessStarted", "ProcessSucceeded"]
        _, listed = await bridge.get("/definitions")
        kinds = {d["name"]: d["processType"] for d in listed["items"]}
        assert kinds == {"total": "EXPRESS", "slow": "EXPRESS"}

        status, slow = await bridge.post("/processes?wait=10", {"definition": "slow"})
        assert status == 200 and slow["status"] == "TIMED_OUT", slow
        _, history = await bridge.get(f"/processes/{slow['id']}/history")
        assert [e["type"] for e in history["items"]] == ["ProcessStarted", "ProcessTimedOut"]


def notify(topic: str) -> dict[str, object]:
    def send(step: str, then: dict[str, object]) -> dict[str, object]:
        return {
            "Type": "Task",
            "Resource": "bridge:kafka:send",
            "Parameters": {
                "Topic": topic,
                "Key.$": "$.id",
                "Headers": {"x-step": step},
                "Message": {"id.$": "$.id", "step": step},
            },
            "ResultPath": f"$.{step}",
            **then,
        }

    return {
        "StartAt": "First",
        "States": {
            "First": send("first", {"Next": "Pause"}),
            "Pause": {"Type": "Wait", "Seconds": 3, "Next": "Second"},
            "Second": send("second", {"End": True}),
        },
    }


async def test_fire_and_forget_once_per_step_across_a_restart(
    database_url: str, kafka: str, tmp_path: Path
) -> None:
    suffix = uuid.uuid4().hex[:8]
    topic = f"notes.{suffix}"
    folder = tmp_path / "definitions"
    folder.mkdir()
    (folder / "notify.asl.json").write_text(json.dumps(notify(topic)))
    group = {"kafka_group_id": f"bridge-{suffix}"}
    ids = [f"n-{i}" for i in range(5)]
    async with running_bridge(database_url, kafka, tmp_path, definitions=folder, **group) as bridge:
        started = []
        for note_id in ids:
            status, body = await bridge.post(
                "/processes", {"definition": "notify", "input": {"id": note_id}}
            )
            assert status == 201
            started.append(body["id"])
        _, first = await bridge.get(f"/processes/{started[0]}")
        # The first command went out and the process continued at once, into its Wait.
        assert first["currentState"] == "Pause", first
    # Restarted while every process waits; the second command goes out from the new worker.
    async with running_bridge(database_url, kafka, tmp_path, definitions=folder, **group) as bridge:
        for process_id in started:
            body = await bridge.process_by_id(process_id, timeout=60)
            assert body["status"] == "SUCCEEDED", body
            assert (
                body["output"]["first"]["Topic"] == topic and body["output"]["first"]["MessageId"]
            )
        # The relay publishes at least once: a message published just as the first worker
        # stopped, and not yet marked sent, goes out again from the second with the same ce_id
        # (a copy its consumers drop). Two ce_ids for one step would be a step done twice.
        wanted = {(i, s) for i in ids for s in ("first", "second")}
        ce_ids: dict[tuple[str, str], set[str]] = defaultdict(set)

        async def read(timeout: float) -> None:
            value, record = await bridge.next_message(topic, timeout=timeout)
            headers = {name: raw.decode() for name, raw in record.headers}
            assert headers["x-step"] == value["step"] and record.key == value["id"].encode()
            ce_ids[(value["id"], value["step"])].add(headers["ce_id"])

        while not wanted <= set(ce_ids):
            await read(20.0)
        assert set(ce_ids) == wanted
        assert all(len(found) == 1 for found in ce_ids.values()), ce_ids
        # And nothing more: every process has ended and the outbox is empty, so whatever else
        # there is on the topic is there already for the consumer to read; copies aside, none.
        await bridge.until_published()
        with pytest.raises(AssertionError, match="no matching message"):
            while True:
                await read(1.5)
        assert set(ce_ids) == wanted
        assert all(len(found) == 1 for found in ce_ids.values()), ce_ids
