"""Bulk operations: stop or redrive every process a filter matches, as a tracked job carried out
through the engine's one path, at a rate, skipping what no longer qualifies, cancellable; over
the API (in process: aiohttp's test client over the app), the CLI and the pages."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from click.testing import CliRunner

from approvals.app import build_app
from bridge.bootstrap import Core, open_core
from bridge.bulk import BulkRunner
from bridge.cli import main
from bridge.intake import StartRequested, StopRequested
from bridge.settings import Settings
from bridge.store import processes as store
from bridge.store.database import reading

pytestmark = pytest.mark.integration

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
FAILS = {"StartAt": "Boom", "States": {"Boom": {"Type": "Fail", "Error": "E", "Cause": "c"}}}
ADMIN, READER = "admin-token", "read-token"


@dataclass
class Rig:
    core: Core
    client: TestClient

    async def start(self, definition: str, count: int) -> list[str]:
        outcomes = await self.core.engine.apply(
            [StartRequested(definition, {"n": n}) for n in range(count)]
        )
        assert all(outcome.ok for outcome in outcomes), outcomes
        return [outcome.process_ids[0] for outcome in outcomes]

    async def statuses(self, ids: list[str]) -> list[str]:
        async with reading(self.core.db) as conn:
            found = [await store.get(conn, pid) for pid in ids]
        return [process.status.value for process in found if process is not None]

    async def ask(self, body: dict[str, Any], token: str = ADMIN) -> tuple[int, Any]:
        response = await self.client.post(
            "/bulk-operations", json=body, headers={"Authorization": f"Bearer {token}"}
        )
        return response.status, await response.json()

    async def get(self, path: str, token: str = READER) -> Any:
        response = await self.client.get(path, headers={"Authorization": f"Bearer {token}"})
        assert response.status == 200, await response.text()
        return await response.json()


@pytest.fixture
async def rig(database_url: str, tmp_path: Path) -> AsyncIterator[Rig]:
    for name, document in {"waits": WAITS, "other": WAITS, "fails": FAILS}.items():
        (tmp_path / f"{name}.asl.json").write_text(json.dumps(document))
    core = await open_core(Settings(database_url=database_url, definitions_dir=tmp_path))
    app = build_app(core.engine, "secret", admin_tokens=[ADMIN], read_tokens=[READER])
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        yield Rig(core, client)
    finally:
        await client.close()
        await core.close()


def stop(**filter_: Any) -> dict[str, Any]:
    return {
        "action": "stop",
        "filter": filter_,
        "reason": "the catalog is wrong",
        "ratePerSecond": 1000,
    }


async def test_stop_every_running_process_of_a_definition(rig: Rig) -> None:
    waiting = await rig.start("waits", 12)
    others = await rig.start("other", 3)

    code, asked = await rig.ask(stop(definition="waits") | {"ratePerSecond": 5})

    assert code == 202, asked
    assert (asked["status"], asked["total"], asked["applied"]) == ("RUNNING", 12, 0)
    assert asked["filter"]["statuses"] == ["RUNNING"]
    assert await BulkRunner(rig.core.engine).run_one()
    done = await rig.get(f"/bulk-operations/{asked['id']}")
    assert (done["status"], done["applied"], done["skipped"]) == ("DONE", 12, 0)
    assert done["finishedAt"] is not None
    assert set(await rig.statuses(waiting)) == {"ABORTED"}
    assert set(await rig.statuses(others)) == {"RUNNING"}
    async with reading(rig.core.db) as conn:
        stopped = await store.get(conn, waiting[0])
    assert stopped is not None and "the catalog is wrong" in (stopped.cause or "")
    listed = await rig.get("/bulk-operations")
    assert [item["id"] for item in listed["items"]] == [asked["id"]]
    # Nothing left to run.
    assert not await BulkRunner(rig.core.engine).run_one()
    metrics = await (await rig.client.get("/metrics", headers=auth(READER))).text()
    assert 'bridge_bulk_processes_total{action="stop",result="applied"} 12.0' in metrics


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_redrive_every_failed_process_and_skip_what_changed_meanwhile(rig: Rig) -> None:
    failed = await rig.start("fails", 4)
    waiting = await rig.start("waits", 3)

    code, redrive = await rig.ask(
        {"action": "redrive", "filter": {"definition": "fails"}, "reason": "fixed"}
    )
    assert code == 202 and redrive["total"] == 4
    code, stopping = await rig.ask(stop(definition="waits"))
    assert code == 202 and stopping["total"] == 3
    # One of them ends before the operation reaches it.
    assert (await rig.core.engine.apply_one(StopRequested(waiting[0]))).ok

    runner = BulkRunner(rig.core.engine)
    assert await runner.run_one() and await runner.run_one()

    redriven = await rig.get(f"/bulk-operations/{redrive['id']}")
    assert (redriven["applied"], redriven["skipped"]) == (4, 0)
    # Redriven, they failed again at once: the same statuses, one more run each.
    assert set(await rig.statuses(failed)) == {"FAILED"}
    stopped = await rig.get(f"/bulk-operations/{stopping['id']}")
    assert (stopped["applied"], stopped["skipped"], stopped["status"]) == (2, 1, "DONE")


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        (stop(), 400, "name at least one of definition"),
        (stop(status="RUNNING"), 400, "a status alone would take every process"),
        (stop(definition="waits", status="SUCCEEDED"), 400, "not SUCCEEDED"),
        ({**stop(definition="waits"), "action": "delete"}, 400, "action"),
        ({**stop(definition="waits"), "reason": ""}, 400, "reason"),
        ({**stop(definition="waits"), "ratePerSecond": 0}, 400, "ratePerSecond"),
    ],
)
async def test_what_cannot_be_asked_for_is_refused(
    rig: Rig, body: dict[str, Any], status: int, says: str
) -> None:
    code, answer = await rig.ask(body)
    assert code == status, answer
    assert says in answer["detail"]


async def test_only_admins_ask_or_cancel(rig: Rig) -> None:
    code, answer = await rig.ask(stop(definition="waits"), token=READER)
    assert code == 403, answer


async def test_a_cancelled_operation_stops_between_chunks(rig: Rig) -> None:
    waiting = await rig.start("waits", 6)
    code, asked = await rig.ask(stop(definition="waits") | {"ratePerSecond": 2})
    assert code == 202

    running = asyncio.create_task(BulkRunner(rig.core.engine).run_one())
    while (await rig.get(f"/bulk-operations/{asked['id']}"))["applied"] < 2:
        await asyncio.sleep(0.05)
    cancelled = await rig.client.post(f"/bulk-operations/{asked['id']}/cancel", headers=auth(ADMIN))
    assert cancelled.status == 200, await cancelled.text()
    await asyncio.wait_for(running, 10)

    final = await rig.get(f"/bulk-operations/{asked['id']}")
    assert final["status"] == "CANCELLED"
    assert 2 <= final["applied"] < 6
    statuses = await rig.statuses(waiting)
    assert statuses.count("ABORTED") == final["applied"] and "RUNNING" in statuses
    again = await rig.client.post(f"/bulk-operations/{asked['id']}/cancel", headers=auth(ADMIN))
    assert again.status == 409


async def test_two_workers_never_run_one_operation_twice(rig: Rig) -> None:
    waiting = await rig.start("waits", 30)
    code, asked = await rig.ask(stop(definition="waits") | {"ratePerSecond": 10})
    assert code == 202

    first, second = await asyncio.gather(
        BulkRunner(rig.core.engine).run_one(), BulkRunner(rig.core.engine).run_one()
    )

    assert sorted([first, second]) == [False, True]
    final = await rig.get(f"/bulk-operations/{asked['id']}")
    assert (final["applied"], final["skipped"]) == (30, 0)
    assert set(await rig.statuses(waiting)) == {"ABORTED"}


async def test_the_cli_asks_and_shows(rig: Rig) -> None:
    await rig.start("waits", 2)
    url = str(rig.client.make_url("/")).rstrip("/")
    runner = CliRunner()

    asked = await asyncio.to_thread(
        runner.invoke,
        main,
        ["bulk", "stop", "--definition", "waits", "--reason", "cli", "--json"],
        env={"BRIDGE_URL": url, "BRIDGE_TOKEN": ADMIN},
    )
    assert asked.exit_code == 0, asked.output
    operation = json.loads(asked.output)
    assert operation["total"] == 2
    await BulkRunner(rig.core.engine).run_one()
    shown = await asyncio.to_thread(
        runner.invoke,
        main,
        ["bulk", "show", operation["id"]],
        env={"BRIDGE_URL": url, "BRIDGE_TOKEN": READER},
    )
    assert shown.exit_code == 0, shown.output
    assert "DONE" in shown.output and "2/2 (2 applied, 0 skipped)  cli" in shown.output


async def test_the_pages_offer_the_action_and_show_the_progress(rig: Rig) -> None:
    await rig.start("waits", 2)
    page = {"Accept": "text/html", **auth(ADMIN)}

    listing = await rig.client.get("/processes?definition=waits", headers=page)
    html = await listing.text()
    assert "Act on every process this filter matches" in html
    assert "Stop every matching running process" in html
    unfiltered = await (await rig.client.get("/processes", headers=page)).text()
    assert "Act on every process" not in unfiltered
    as_reader = await (
        await rig.client.get(
            "/processes?definition=waits", headers={"Accept": "text/html", **auth(READER)}
        )
    ).text()
    assert "Act on every process" not in as_reader

    _, asked = await rig.ask(stop(definition="waits"))
    shown = await (await rig.client.get(f"/bulk-operations/{asked['id']}", headers=page)).text()
    assert "Bulk stop" in shown and "Cancel the rest" in shown
    await BulkRunner(rig.core.engine).run_one()
    shown = await (await rig.client.get(f"/bulk-operations/{asked['id']}", headers=page)).text()
    assert ">DONE<" in shown and "Cancel the rest" not in shown


async def test_the_list_page_form_starts_one_with_the_page_filter(rig: Rig) -> None:
    await rig.start("waits", 3)
    page = {"Accept": "text/html", **auth(ADMIN)}
    # The filter as a browser's datetime-local field sends it: no seconds, no zone (UTC).
    listing = await rig.client.get(
        "/processes?definition=waits&startedBefore=2099-01-01T10:00", headers=page
    )
    html = await listing.text()
    start = html.index('class="action bulk-stop"')
    form = html[start : html.index("</form>", start)]
    nonce = re.search(r'name="csrf" value="([^"]+)"', form)
    assert nonce is not None
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', form))
    assert fields["startedBefore"] == "2099-01-01T10:00"

    posted = await rig.client.post(
        "/ui/bulk-operations",
        data={**fields, "csrf": nonce.group(1), "reason": "from the page"},
        headers=page,
        allow_redirects=False,
    )

    assert posted.status == 303, await posted.text()
    asked = await rig.get(posted.headers["Location"])
    assert (asked["action"], asked["total"], asked["reason"]) == ("stop", 3, "from the page")
    forged = await rig.client.post(
        "/ui/bulk-operations",
        data={**fields, "csrf": "forged", "reason": "x"},
        headers=page,
        allow_redirects=False,
    )
    assert forged.status == 403
