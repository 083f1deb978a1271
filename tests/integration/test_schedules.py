"""Schedules: declared by a definition or made over the API, they start processes at their ticks
through the engine's one path, once per tick however many workers race, with overlap and
catch-up policies, paused and resumed; the clock is the test's."""

from __future__ import annotations

import asyncio
import gc
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from click.testing import CliRunner
from sqlalchemy import select

from approvals.app import build_app
from bridge.bootstrap import Core, open_core
from bridge.cli import main
from bridge.definitions import deploy
from bridge.intake import ScheduleDue, StopRequested
from bridge.schedule_runner import ScheduleRunner
from bridge.settings import Settings
from bridge.store import schedules as schedule_rows
from bridge.store.database import reading
from bridge.store.schema import processes

pytestmark = pytest.mark.integration

ADMIN, READER = "admin-token", "read-token"
WAITS = {
    "StartAt": "Wait",
    "States": {
        "Wait": {
            "Type": "Task",
            "Resource": "bridge:kafka:send.waitForTaskToken",
            "Parameters": {"Topic": "work", "Message": {"token.$": "$$.Task.Token"}},
            "End": True,
        }
    },
}
QUICK = {"StartAt": "Done", "States": {"Done": {"Type": "Pass", "End": True}}}


def scheduled(document: dict[str, Any], *schedules: dict[str, Any]) -> dict[str, Any]:
    return {**document, "Schedules": list(schedules)}


@dataclass
class Clock:
    now: datetime = datetime(2026, 12, 3, 12, 0, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@dataclass
class Rig:
    core: Core
    client: TestClient
    clock: Clock
    others: list[Core] = field(default_factory=list)

    async def round(self, core: Core | None = None) -> None:
        """Rounds until nothing more is due (a late schedule may take a few)."""
        runner = ScheduleRunner((core or self.core).engine)
        for _ in range(20):
            if await runner.round() is not True:
                return
        raise AssertionError("the schedule runner kept finding work")

    async def started(self, definition: str | None = None) -> list[dict[str, Any]]:
        """The processes started by schedules, oldest tick first: their origin and input."""
        async with reading(self.core.db) as conn:
            query = select(processes.c.id, processes.c.status, processes.c.state)
            if definition is not None:
                query = query.where(processes.c.definition == definition)
            rows = (await conn.execute(query)).all()
        found = []
        for row in rows:
            history = await self.get(f"/processes/{row.id}/history")
            details = history["items"][0]["details"]
            found.append({"id": row.id, "status": row.status, **details})
        return sorted(found, key=lambda item: str(item.get("scheduledAt")))

    async def get(self, path: str, token: str = READER) -> Any:
        response = await self.client.get(path, headers=auth(token))
        assert response.status == 200, await response.text()
        return await response.json()

    async def send(
        self, method: str, path: str, body: Any = None, token: str = ADMIN
    ) -> tuple[int, Any]:
        response = await self.client.request(method, path, json=body, headers=auth(token))
        text = await response.text()
        return response.status, json.loads(text) if text else None

    async def deploy(self, name: str, document: dict[str, Any]) -> None:
        await deploy(self.core.db, [(name, document)])
        await self.core.registry.refresh(self.core.db)

    async def open_another(self) -> Core:
        core = await open_core(self.core.settings)
        core.engine.clock = self.clock
        self.others.append(core)
        return core


def moment(text: str) -> datetime:
    return datetime.fromisoformat(text)


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def rig(database_url: str, tmp_path: Path) -> AsyncIterator[Rig]:
    for name, document in {"waits": WAITS, "quick": QUICK}.items():
        (tmp_path / f"{name}.asl.json").write_text(json.dumps(document))
    core = await open_core(Settings(database_url=database_url, definitions_dir=tmp_path))
    clock = Clock()
    core.engine.clock = clock
    app = build_app(core.engine, "secret", admin_tokens=[ADMIN], read_tokens=[READER])
    client = TestClient(TestServer(app))
    await client.start_server()
    rig = Rig(core, client, clock)
    try:
        yield rig
    finally:
        await client.close()
        for other in rig.others:
            await other.close()
        await core.close()


async def test_a_definitions_schedule_starts_a_process_at_each_tick(rig: Rig) -> None:
    # A deploy counts from the database's own clock; the runner from the test's.
    await rig.deploy(
        "report",
        scheduled(QUICK, {"Name": "Minutely", "RateSeconds": 60, "Input": {"kind": "minutely"}}),
    )
    listed = await rig.get("/schedules")
    [item] = listed["items"]
    assert item["id"] == "report.Minutely" and item["declaredBy"] == "report"
    # Rates count from the epoch: each minute's :00.
    next_at = datetime.fromisoformat(item["nextRunAt"])
    assert next_at.second == 0 and next_at.microsecond == 0
    assert [datetime.fromisoformat(run) - next_at for run in item["nextRuns"]] == [
        timedelta(minutes=n) for n in range(5)
    ]

    rig.clock.now = next_at
    await rig.round()
    [first] = await rig.started("report")
    assert first["via"] == "schedule" and first["schedule"] == "report.Minutely"
    assert first["scheduledAt"] == next_at.isoformat()
    assert first["input"] == {"kind": "minutely"}
    assert first["status"] == "SUCCEEDED"
    # Looked at again within the same minute: nothing more.
    rig.clock.advance(seconds=30)
    await rig.round()
    assert len(await rig.started("report")) == 1
    rig.clock.advance(seconds=30)
    await rig.round()
    ticks = [item["scheduledAt"] for item in await rig.started("report")]
    assert ticks == [next_at.isoformat(), (next_at + timedelta(minutes=1)).isoformat()]
    shown = await rig.get("/schedules/report.Minutely")
    assert (shown["started"], shown["lastRun"]["result"]) == (2, "started")
    assert shown["lastProcessId"] == (await rig.started("report"))[-1]["id"]
    metrics = await (await rig.client.get("/metrics", headers=auth(READER))).text()
    assert 'bridge_schedule_ticks_total{result="started"} 2.0' in metrics


async def test_racing_workers_start_one_process_per_tick(rig: Rig) -> None:
    code, made = await rig.send(
        "PUT", "/schedules/fast", {"definition": "quick", "rateSeconds": 10}
    )
    assert code == 201, made
    others = [await rig.open_another() for _ in range(2)]
    cores = [rig.core, *others]
    start = datetime.fromisoformat(made["nextRunAt"])
    for tick in range(6):
        rig.clock.now = start + timedelta(seconds=10 * tick)
        await asyncio.gather(*(rig.round(core) for core in cores))
    started = await rig.started("quick")
    assert [item["scheduledAt"] for item in started] == [
        (start + timedelta(seconds=10 * tick)).isoformat() for tick in range(6)
    ]
    # The same tick applied again (a redelivery, a crash before the runner knew) changes nothing.
    again = await rig.core.engine.apply([ScheduleDue("fast", start)])
    assert again[0].status == "ignored"
    assert len(await rig.started("quick")) == 6


async def test_overlap_skip_buffer_and_allow(rig: Rig) -> None:
    for name, overlap in (("skip", "Skip"), ("buffer", "BufferOne"), ("allow", "Allow")):
        code, made = await rig.send(
            "PUT",
            f"/schedules/{name}",
            {"definition": "waits", "rateSeconds": 60, "overlap": overlap, "input": {"s": name}},
        )
        assert code == 201, made
    first = datetime.fromisoformat(made["nextRunAt"])
    for minute in range(3):
        rig.clock.now = first + timedelta(minutes=minute)
        await rig.round()

    def of(name: str, found: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [item for item in found if item["schedule"] == name]

    started = await rig.started("waits")
    assert len(of("skip", started)) == 1
    assert len(of("buffer", started)) == 1
    assert len(of("allow", started)) == 3
    skip = await rig.get("/schedules/skip")
    assert (skip["started"], skip["skipped"], skip["lastRun"]["result"]) == (1, 2, "skipped")
    buffer = await rig.get("/schedules/buffer")
    # The second tick waits for the first process; the third is skipped (one is kept).
    assert moment(buffer["bufferedAt"]) == first + timedelta(minutes=1)
    assert (buffer["skipped"], buffer["lastRun"]["result"]) == (1, "skipped")

    # The buffered tick starts once the running process ends.
    await finish(rig, of("buffer", started)[0]["id"])
    await rig.round()
    started = await rig.started("waits")
    assert [item["scheduledAt"] for item in of("buffer", started)] == [
        first.isoformat(),
        (first + timedelta(minutes=1)).isoformat(),
    ]
    buffer = await rig.get("/schedules/buffer")
    assert buffer["bufferedAt"] is None and buffer["started"] == 2


async def finish(rig: Rig, process_id: str) -> None:
    outcome = await rig.core.engine.apply_one(StopRequested(process_id, cause="done"))
    assert outcome.ok, outcome


@pytest.mark.parametrize("catch_up", ["RunOnce", "Skip"])
async def test_catch_up_after_downtime(rig: Rig, catch_up: str) -> None:
    code, made = await rig.send(
        "PUT",
        "/schedules/five",
        {"definition": "quick", "rateSeconds": 300, "catchUp": catch_up},
    )
    assert code == 201, made
    first = moment(made["nextRunAt"])
    # No worker ran for five hours and two minutes: 61 ticks fell, the latest 2 minutes ago.
    rig.clock.now = first + timedelta(hours=5, minutes=2)
    await rig.round()
    started = await rig.started("quick")
    shown = await rig.get("/schedules/five")
    latest = first + timedelta(hours=5)
    if catch_up == "RunOnce":
        assert [item["scheduledAt"] for item in started] == [latest.isoformat()]
        assert (shown["missed"], shown["lastRun"]["result"]) == (60, "started")
    else:
        assert started == []
        assert (shown["missed"], shown["lastRun"]["result"]) == (61, "missed")
    # Never a burst of old ticks: the schedule goes on from now.
    assert moment(shown["nextRunAt"]) == latest + timedelta(minutes=5)

    # A tick looked at 30 s late is on time, whatever the policy.
    rig.clock.now = latest + timedelta(minutes=5, seconds=30)
    await rig.round()
    started = await rig.started("quick")
    assert started[-1]["scheduledAt"] == (latest + timedelta(minutes=5)).isoformat()
    metrics = await (await rig.client.get("/metrics", headers=auth(READER))).text()
    assert (
        f'bridge_schedule_ticks_total{{result="missed"}} {60 if catch_up == "RunOnce" else 61}.0'
        in metrics
    )


async def test_pause_resume_and_the_api_refusals(rig: Rig) -> None:
    code, made = await rig.send(
        "PUT",
        "/schedules/nightly",
        {
            "definition": "quick",
            "cron": "30 2 * * *",
            "timeZone": "Europe/Berlin",
            "description": "the nightly report",
        },
    )
    assert code == 201, made
    assert made["when"] == "cron 30 2 * * * (Europe/Berlin)"
    # 02:30 in Berlin is 01:30 UTC in winter.
    assert [run[11:16] for run in made["nextRuns"]] == ["01:30"] * 5
    code, paused = await rig.send("POST", "/schedules/nightly/pause", {"note": "holidays"})
    assert code == 200 and paused["paused"] and paused["pausedNote"] == "holidays"
    assert paused["nextRuns"] == [] and paused["nextRunAt"] is None
    rig.clock.advance(days=3)
    await rig.round()
    assert await rig.started("quick") == []
    code, resumed = await rig.send("POST", "/schedules/nightly/resume")
    assert code == 200 and not resumed["paused"]
    # Resumed: from its next tick after now, nothing owed for the paused days.
    assert datetime.fromisoformat(resumed["nextRunAt"]) > rig.clock.now
    await rig.round()
    assert await rig.started("quick") == []

    # Refusals: each names its field; nothing is written.
    for body, word in (
        ({"definition": "quick", "cron": "61 * * * *"}, "Cron"),
        ({"definition": "quick", "cron": "0 * * * *", "timeZone": "Mars/Olympus"}, "TimeZone"),
        ({"definition": "quick"}, "exactly one"),
        ({"definition": "quick", "rateSeconds": 60, "cron": "0 * * * *"}, "exactly one"),
        ({"definition": "quick", "at": "2026-12-24 18:00"}, "At"),
        ({"definition": "quick", "rateSeconds": 0}, "rateSeconds"),
        ({"definition": "quick", "rateSeconds": 60, "input": {"a": "\u0000"}}, "NUL"),
        ({"definition": "quick", "rateSeconds": 60, "description": "x\u0000"}, "NUL"),
        ({"definition": "quick", "rateSeconds": 60, "overlap": "Sometimes"}, "overlap"),
    ):
        code, refused = await rig.send("PUT", "/schedules/bad", body)
        assert code in (400, 422), (body, code, refused)
        assert word in json.dumps(refused), (word, refused)
    for bad_id in ("has.dot", "x" * 201, "sp ace"):
        code, refused = await rig.send(
            "PUT", f"/schedules/{bad_id}", {"definition": "quick", "rateSeconds": 5}
        )
        assert code in (400, 404), (bad_id, code, refused)
    assert [item["id"] for item in (await rig.get("/schedules"))["items"]] == ["nightly"]
    # Reading is not writing: a reader cannot make or pause schedules.
    code, _ = await rig.send("POST", "/schedules/nightly/pause", {}, token=READER)
    assert code == 403
    code, _ = await rig.send("DELETE", "/schedules/nightly")
    assert code == 204
    code, _ = await rig.send("DELETE", "/schedules/nightly")
    assert code == 404


async def test_a_start_the_definition_refuses_is_recorded_and_the_schedule_goes_on(
    rig: Rig,
) -> None:
    code, made = await rig.send(
        "PUT", "/schedules/orphan", {"definition": "gone", "rateSeconds": 60}
    )
    assert code == 201, made
    first = datetime.fromisoformat(made["nextRunAt"])
    rig.clock.now = first
    await rig.round()
    shown = await rig.get("/schedules/orphan")
    assert shown["lastRun"]["result"] == "failed"
    assert "no definition 'gone'" in shown["lastRun"]["note"]
    assert moment(shown["nextRunAt"]) == first + timedelta(minutes=1)


async def test_redeploying_keeps_the_pause_and_removes_what_is_no_longer_declared(
    rig: Rig,
) -> None:
    one = {"Name": "One", "RateSeconds": 60}
    two = {"Name": "Two", "Cron": "0 6 * * 1-5", "TimeZone": "America/New_York"}
    await rig.deploy("report", scheduled(QUICK, one, two))
    code, _ = await rig.send("POST", "/schedules/report.One/pause")
    assert code == 200
    # Declared schedules are changed by deploying, not through the API.
    code, refused = await rig.send(
        "PUT", "/schedules/report.One", {"definition": "quick", "rateSeconds": 5}
    )
    assert code in (400, 404, 409), refused
    code, refused = await rig.send("DELETE", "/schedules/report.Two")
    assert code == 409, refused
    await rig.deploy("report", scheduled(QUICK, {**one, "RateSeconds": 120}))
    listed = (await rig.get("/schedules"))["items"]
    assert [(item["id"], item["paused"], item["rateSeconds"]) for item in listed] == [
        ("report.One", True, 120)
    ]
    page = await rig.client.get(
        "/definitions/report", headers={"Accept": "text/html", **auth(READER)}
    )
    html = await page.text()
    assert 'href="/schedules/report.One"' in html and "every 2 minutes, paused" in html
    await rig.deploy("report", QUICK)
    assert (await rig.get("/schedules"))["items"] == []


@pytest.mark.sqlite_only
async def test_the_cli_makes_shows_pauses_and_deletes(rig: Rig) -> None:
    url = str(rig.client.make_url("/")).rstrip("/")
    runner = CliRunner()

    async def cli(*args: str, token: str = ADMIN) -> Any:
        result = await asyncio.to_thread(
            runner.invoke,
            main,
            ["schedules", *args],
            env={"BRIDGE_URL": url, "BRIDGE_TOKEN": token},
        )
        return result

    made = await cli(
        "put",
        "hourly",
        "--definition",
        "quick",
        "--cron",
        "@hourly",
        "--input",
        '{"a": 1}',
        "--overlap",
        "BufferOne",
        "--json",
    )
    assert made.exit_code == 0, made.output
    assert json.loads(made.output)["overlap"] == "BufferOne"
    shown = await cli("show", "hourly", token=READER)
    assert shown.exit_code == 0, shown.output
    assert "hourly  quick  cron @hourly (UTC)  next 2026-12-03T13:00:00Z" in shown.output
    assert shown.output.count("  next: ") == 5
    paused = await cli("pause", "hourly", "--note", "maintenance")
    assert paused.exit_code == 0 and "paused" in paused.output
    listed = await cli("list", "--json", token=READER)
    assert json.loads(listed.output)["items"][0]["pausedNote"] == "maintenance"
    bad = await cli("put", "bad", "--definition", "quick", "--cron", "every day")
    assert bad.exit_code != 0 and "Cron" in bad.output
    bad_input = await cli("put", "bad", "--definition", "quick", "--every", "5", "--input", "{")
    assert bad_input.exit_code != 0 and "not JSON" in bad_input.output
    deleted = await cli("delete", "hourly")
    assert deleted.exit_code == 0, deleted.output
    assert (await rig.get("/schedules"))["items"] == []


@pytest.mark.sqlite_only
async def test_the_pages_show_next_runs_and_pause_with_a_nonce(rig: Rig) -> None:
    code, _ = await rig.send(
        "PUT",
        "/schedules/daily",
        {"definition": "quick", "cron": "0 9 * * *", "timeZone": "Asia/Tokyo"},
    )
    assert code == 201
    page = {"Accept": "text/html", **auth(ADMIN)}
    listing = await (await rig.client.get("/schedules", headers=page)).text()
    assert 'href="/schedules/daily"' in listing and "cron 0 9 * * * (Asia/Tokyo)" in listing
    html = await (await rig.client.get("/schedules/daily", headers=page)).text()
    # 09:00 in Tokyo is midnight UTC.
    assert html.count("00:00:00 UTC</li>") == 5
    nonce = re.search(r'name="csrf" value="([^"]+)"', html)
    assert nonce is not None and 'action="/ui/schedules/daily/pause"' in html
    # A nonce for another schedule or action is refused.
    refused = await rig.client.post(
        "/ui/schedules/daily/resume",
        data={"csrf": nonce.group(1)},
        headers=page,
        allow_redirects=False,
    )
    assert refused.status == 403
    posted = await rig.client.post(
        "/ui/schedules/daily/pause",
        data={"csrf": nonce.group(1), "note": "audit"},
        headers=page,
        allow_redirects=False,
    )
    assert posted.status == 303, await posted.text()
    assert (await rig.get("/schedules/daily"))["pausedNote"] == "audit"
    html = await (await rig.client.get("/schedules/daily", headers=page)).text()
    assert "None while it is paused." in html and 'action="/ui/schedules/daily/resume"' in html
    # A reader sees the page without the button.
    reader = await (
        await rig.client.get("/schedules/daily", headers={"Accept": "text/html", **auth(READER)})
    ).text()
    assert "csrf" not in reader.split("</nav>")[1]
    missing = await rig.client.get("/schedules/none", headers=page)
    assert missing.status == 404 and "Schedule not found" in await missing.text()


async def test_a_look_at_the_schedules_leaves_next_to_no_cyclic_garbage(rig: Rig) -> None:
    # The look runs about once a second in every worker; an alias built per call was ~160
    # objects in reference cycles a look, which the garbage collector then had to find.
    async with reading(rig.core.db) as conn:
        for _ in range(5):  # statements compiled and cached first
            await schedule_rows.buffered_ready(conn, 10)
        gc.collect()
        gc.disable()
        try:
            for _ in range(20):
                await schedule_rows.buffered_ready(conn, 10)
            garbage = gc.collect()
        finally:
            gc.enable()
    assert garbage < 20 * 40
