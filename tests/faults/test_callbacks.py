"""Callbacks under contention, over HTTP: concurrent copies of one callback, a callback after the
task's timeout, and a callback racing the timeout. Each takes effect at most once, and exactly
one of "the task succeeded" and "the task timed out" ever happens."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bridge.bootstrap import Web, open_core
from bridge.broker import free_port
from bridge.engine import EventReceived
from bridge.events import KafkaRecord
from bridge.settings import Settings
from bridge.store import outbox
from bridge.store.database import reading
from tests.integration.harness import Bridge, running_bridge

pytestmark = pytest.mark.integration


async def _history(bridge: Bridge, process_id: str) -> list[dict[str, Any]]:
    status, body = await bridge.get(f"/processes/{process_id}/history")
    assert status == 200, body
    return list(body["items"])


def _count(history: list[dict[str, Any]], kind: str, state: str | None = None) -> int:
    return sum(1 for e in history if e["type"] == kind and (state is None or e["state"] == state))


async def _no_more(bridge: Bridge, topic: str, predicate: Any, wait: float) -> bool:
    """True when no further message on ``topic`` passes ``predicate``: looked for once
    everything committed is published (the outbox is empty), for ``wait`` seconds."""
    await bridge.until_published()
    try:
        await bridge.next_message(topic, predicate, timeout=wait)
    except AssertionError:
        return True
    return False


# --------------------------------------------------------------------- concurrent copies


async def test_fifty_concurrent_copies_of_one_success_callback(
    database_url: str, kafka: str, tmp_path: Path
) -> None:
    async with running_bridge(database_url, kafka, tmp_path) as bridge:
        await bridge.place_order("o-copies", 120)
        reserve = await bridge.command("inventory.commands", "o-copies")
        url = f"/tasks/{reserve['taskToken']}/success"
        statuses = await asyncio.gather(
            *[bridge.post(url, {"reserved": True, "copy": n}) for n in range(50)]
        )
        codes = Counter(code for code, _ in statuses)
        winner = next(body for code, body in statuses if code == 200)

        charge = await bridge.command("payments.commands", "o-copies")
        assert charge["type"] == "ChargePayment"
        alone = await _no_more(
            bridge, "payments.commands", lambda v: v.get("orderId") == "o-copies", 1.0
        )
        process = await bridge.process_for("o-copies")
        history = await _history(bridge, process["id"])
        print(
            f"\nFAULTS 50 concurrent copies of one callback ({database_url.split(':')[0]}): "
            f"HTTP {dict(sorted(codes.items()))}, ChargePayment commands "
            f"{1 if alone else '2+'}, TaskSucceeded(ReserveInventory) "
            f"{_count(history, 'TaskSucceeded', 'ReserveInventory')}"
        )
        assert codes == {200: 1, 409: 49}, statuses
        assert alone, "a second ChargePayment command"
        assert _count(history, "TaskSucceeded", "ReserveInventory") == 1
        assert _count(history, "CommandEmitted", "ChargePayment") == 1
        assert process["currentState"] == "ChargePayment"
        # The copy answered 200 is the one whose output the step took.
        assert winner["processId"] == process["id"]
        took = next(e for e in history if e["type"] == "TaskSucceeded")
        assert took["details"]["output"]["copy"] == [code for code, _ in statuses].index(200)


# --------------------------------------------------------------------- timeouts


def _timed_definition(folder: Path, suffix: str, timeout_seconds: int = 1) -> dict[str, str]:
    """A job that sends one command, waits ``timeout_seconds`` for its callback, then announces."""
    topics = {
        "events": f"jobs.events.{suffix}",
        "work": f"jobs.work.{suffix}",
        "done": f"jobs.done.{suffix}",
    }
    document = {
        "Comment": "one command with a short timeout",
        "Triggers": [
            {
                "Topic": topics["events"],
                "EventType": "JobPlaced",
                "CorrelationKey": "$.jobId",
                "EventId": "$.eventId",
            }
        ],
        "StartAt": "Work",
        "States": {
            "Work": {
                "Type": "Task",
                "Resource": "bridge:kafka:send.waitForTaskToken",
                "Parameters": {
                    "Topic": topics["work"],
                    "Key.$": "$.jobId",
                    "Message": {
                        "type": "DoWork",
                        "jobId.$": "$.jobId",
                        "taskToken.$": "$$.Task.Token",
                    },
                },
                "TimeoutSeconds": timeout_seconds,
                "ResultPath": "$.work",
                "Next": "Finish",
            },
            "Finish": {
                "Type": "Task",
                "Resource": "bridge:kafka:send",
                "Parameters": {
                    "Topic": topics["done"],
                    "Key.$": "$.jobId",
                    "Message": {"type": "JobDone", "jobId.$": "$.jobId"},
                },
                "End": True,
            },
        },
    }
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "timed-job.asl.json").write_text(json.dumps(document))
    return topics


def _job(job_id: str) -> dict[str, str]:
    return {"type": "JobPlaced", "eventId": f"evt-{job_id}", "jobId": job_id}


# SQLite's refusals after a fired timeout are covered by the race below (its late callbacks).
@pytest.mark.parametrize(
    "database_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
async def test_callback_after_the_timeout_is_refused(
    database_url: str, kafka: str, tmp_path: Path
) -> None:
    suffix = uuid.uuid4().hex[:8]
    topics = _timed_definition(tmp_path / "definitions", suffix)
    async with running_bridge(
        database_url, kafka, tmp_path, definitions=tmp_path / "definitions"
    ) as bridge:
        await bridge.publish(topics["events"], _job("j-late"), key="j-late")
        work, _ = await bridge.next_message(topics["work"], lambda v: v["jobId"] == "j-late")
        process = await bridge.process_for("j-late", "FAILED", timeout=10)
        assert process["error"] == "States.Timeout", process
        before = await _history(bridge, process["id"])

        code, body = await bridge.post(f"/tasks/{work['taskToken']}/success", {"late": True})
        assert code == 409, body
        # The same answer through Kafka changes nothing either.
        await bridge.publish(
            "bridge.replies", {"taskToken": work["taskToken"], "output": {"late": True}}
        )
        await bridge.until_counted("bridge_callbacks_total", 1, via="kafka")
        after = await _history(bridge, process["id"])
        assert after == before
        assert _count(after, "TaskTimedOut", "Work") == 1
        assert _count(after, "TaskSucceeded") == 0
        assert await _no_more(bridge, topics["done"], lambda v: True, 0.5)
        assert (await bridge.process_for("j-late"))["status"] == "FAILED"


async def test_callback_after_the_timeout_is_refused_while_no_worker_runs_the_timers(
    database_url: str, tmp_path: Path
) -> None:
    """Production split: ``bridge web`` answers callbacks, only ``bridge worker`` fires timers.
    With the workers down (a deploy, a crash loop), a callback that comes after the task's
    deadline must still be refused, not let the process go on."""
    suffix = uuid.uuid4().hex[:8]
    topics = _timed_definition(tmp_path / "definitions", suffix)
    settings = Settings(
        database_url=database_url,
        http_port=free_port(),
        definitions_dir=tmp_path / "definitions",
        kafka_lifecycle_topic="",
    )
    core = await open_core(settings)
    web = Web(core, settings.http_host, settings.http_port)
    await web.start()
    try:
        record = KafkaRecord(
            topic=topics["events"],
            partition=0,
            offset=0,
            key=b"j-nobody",
            value=json.dumps(_job("j-nobody")).encode(),
        )
        outcome = (await core.engine.apply([EventReceived(record)]))[0]
        assert outcome.status == "applied", outcome
        async with reading(core.db) as conn:
            [value] = [m.value for m in await outbox.pending(conn) if m.topic == topics["work"]]
        await asyncio.sleep(1.6)  # past the 1 s deadline; no worker, so no timer fires
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                f"{settings.base_url}/tasks/{value['taskToken']}/success", json={"late": True}
            ) as response,
        ):
            code, body = response.status, await response.text()
        async with reading(core.db) as conn:
            done = [m.value for m in await outbox.pending(conn) if m.topic == topics["done"]]
        print(
            f"\nFAULTS callback 0.6 s after the deadline, timers not running "
            f"({database_url.split(':')[0]}): HTTP {code}, JobDone commands {len(done)}"
        )
        assert code == 409, f"a callback after the deadline was accepted: {code} {body}"
        assert not done
    finally:
        await web.stop()
        await core.close()


async def test_callback_racing_the_timeout(database_url: str, kafka: str, tmp_path: Path) -> None:
    """Callbacks sent around each job's deadline (from 60 ms before to 60 ms after, and three
    well after it): for every job exactly one of the two wins, and the HTTP answer says which."""
    suffix = uuid.uuid4().hex[:8]
    topics = _timed_definition(tmp_path / "definitions", suffix)
    offsets = [-0.06 + 0.012 * n for n in range(11)] + [0.5, 1.5, 2.5]
    async with running_bridge(
        database_url, kafka, tmp_path, definitions=tmp_path / "definitions", relay_poll_ms=10
    ) as bridge:
        names = [f"j-race-{n:02d}" for n in range(len(offsets))]
        for name in names:
            await bridge.publish(topics["events"], _job(name), key=name)
        tokens: dict[str, str] = {}
        for _ in names:
            work, _ = await bridge.next_message(topics["work"], lambda v: v["jobId"] in names)
            tokens[work["jobId"]] = work["taskToken"]
        deadlines: dict[str, datetime] = {}
        for name in names:
            process = await bridge.process_for(name)
            history = await _history(bridge, process["id"])
            entered = next(e for e in history if e["type"] == "StateEntered")
            deadlines[name] = datetime.fromisoformat(entered["at"]) + timedelta(seconds=1)

        async def answer(name: str, offset: float) -> tuple[int, float]:
            due = deadlines[name] + timedelta(seconds=offset)
            await asyncio.sleep(max(0.0, (due - datetime.now(UTC)).total_seconds()))
            sent = (datetime.now(UTC) - deadlines[name]).total_seconds()
            code, _ = await bridge.post(f"/tasks/{tokens[name]}/success", {"in": "time"})
            return code, sent

        answers = await asyncio.gather(*[answer(n, o) for n, o in zip(names, offsets, strict=True)])
        codes = [code for code, _ in answers]
        latest_accepted = max((sent for code, sent in answers if code == 200), default=None)
        latest_timer = 0.0
        outcomes: Counter[str] = Counter()
        problems = []
        deadline = time.monotonic() + 15
        for name, code in zip(names, codes, strict=True):
            while True:
                process = await bridge.process_for(name)
                if process["status"] != "RUNNING" or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.05)
            history = await _history(bridge, process["id"])
            for entry in history:
                if entry["type"] == "TaskTimedOut":
                    fired = datetime.fromisoformat(entry["at"]) - deadlines[name]
                    latest_timer = max(latest_timer, fired.total_seconds())
            won = _count(history, "TaskSucceeded", "Work")
            timed_out = _count(history, "TaskTimedOut", "Work")
            outcomes[f"{process['status']}/HTTP {code}"] += 1
            if won + timed_out != 1:
                problems.append(f"{name}: TaskSucceeded {won}, TaskTimedOut {timed_out}")
            if process["status"] == "SUCCEEDED" and (code != 200 or not won):
                problems.append(f"{name}: SUCCEEDED but HTTP {code}")
            elif process["status"] == "FAILED" and (
                code != 409 or not timed_out or process["error"] != "States.Timeout"
            ):
                problems.append(f"{name}: FAILED {process['error']} with HTTP {code}")
            elif process["status"] not in ("SUCCEEDED", "FAILED"):
                problems.append(f"{name}: {process['status']}")
        done: Counter[str] = Counter()
        while True:
            try:
                value, _ = await bridge.next_message(topics["done"], timeout=1.0)
            except AssertionError:
                break
            done[value["jobId"]] += 1
        for name in names:
            succeeded = (await bridge.process_for(name))["status"] == "SUCCEEDED"
            if done[name] != (1 if succeeded else 0):
                problems.append(f"{name}: {done[name]} JobDone messages")
        print(
            f"\nFAULTS callback racing the timeout ({database_url.split(':')[0]}): "
            f"{dict(sorted(outcomes.items()))}; latest callback accepted "
            f"{_ms(latest_accepted)} after the deadline, latest timeout fired "
            f"{_ms(latest_timer)} after it; problems {problems or 'none'}"
        )
        assert not problems


def _ms(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds * 1000:+.0f} ms"
