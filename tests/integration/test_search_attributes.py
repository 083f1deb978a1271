"""Search attributes end to end, on SQLite and PostgreSQL: indexed when a process starts and when
a state changes them, listed and filtered over the API (equality, ranges, prefixes, AND with the
other filters and the cursor), refused clearly when a filter is bad, skipped (never failing the
process, never stalling the batch) when a value is hostile, used by bulk operations, shown on the
pages and by the CLI, and deleted with their process by retention."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from aiohttp.test_utils import TestClient, TestServer
from click.testing import CliRunner
from sqlalchemy import func, select

from approvals.app import build_app
from bridge.bootstrap import Core, open_core
from bridge.bulk import BulkRunner
from bridge.cli import main
from bridge.intake import CallbackReceived, StartRequested
from bridge.retention import Retention
from bridge.settings import Settings
from bridge.store import outbox
from bridge.store import processes as store
from bridge.store.database import reading
from bridge.store.schema import process_search_attributes

pytestmark = pytest.mark.integration

ORDERS = {
    "SearchAttributes": {
        "customerId.$": "$.customerId",
        "amount.$": "$.amount",
        "vip.$": "$.vip",
        "note.$": "$.note",
    },
    "StartAt": "Pay",
    "States": {
        "Pay": {
            "Type": "Task",
            "Resource": "bridge:kafka:send.waitForTaskToken",
            "Parameters": {"Topic": "pay", "Message": {"token.$": "$$.Task.Token"}},
            "ResultSelector": {"total.$": "$.total"},
            "SearchAttributes": {"stage": "paid", "amount.$": "$.total", "note": None},
            "Next": "Ship",
        },
        "Ship": {
            "Type": "Task",
            "Resource": "bridge:kafka:send.waitForTaskToken",
            "Parameters": {"Topic": "ship", "Message": {"token.$": "$$.Task.Token"}},
            "End": True,
        },
    },
}
#: A definition without SearchAttributes: its processes write nothing to the index.
PLAIN = {
    "StartAt": "Wait",
    "States": {
        "Wait": {
            "Type": "Task",
            "Resource": "bridge:kafka:send.waitForTaskToken",
            "Parameters": {"Topic": "plain", "Message": {"token.$": "$$.Task.Token"}},
            "End": True,
        }
    },
}
#: Ends at once, to be purged by retention.
QUICK = {
    "SearchAttributes": {"customerId.$": "$.customerId"},
    "StartAt": "Done",
    "States": {"Done": {"Type": "Succeed"}},
}
ADMIN, READER = "admin-token", "read-token"


def auth(token: str = READER) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class Rig:
    core: Core
    client: TestClient

    async def start(self, definition: str, *inputs: dict[str, Any]) -> list[str]:
        outcomes = await self.core.engine.apply(
            [StartRequested(definition, given) for given in inputs]
        )
        assert all(outcome.ok for outcome in outcomes), outcomes
        return [outcome.process_ids[0] for outcome in outcomes]

    async def answer(self, process_id: str, topic: str, output: Any) -> None:
        async with reading(self.core.db) as conn:
            sent = [
                message
                for message in await outbox.pending(conn)
                if message.topic == topic and message.process_id == process_id
            ]
        token = sent[-1].value["token"]
        outcome = await self.core.engine.apply_one(CallbackReceived(token, "success", output))
        assert outcome.ok, outcome

    async def listed(self, *where: str, **query: Any) -> list[str]:
        """The ids GET /processes answers, newest first, following every cursor."""
        found: list[str] = []
        params = [*query.items(), *(("where", expression) for expression in where)]
        cursor = None
        while True:
            page_params = params + ([("cursor", cursor)] if cursor else [])
            response = await self.client.get("/processes?" + urlencode(page_params), headers=auth())
            assert response.status == 200, await response.text()
            page = await response.json()
            found += [item["id"] for item in page["items"]]
            cursor = page["nextCursor"]
            if cursor is None:
                return found

    async def refused(self, *where: str) -> dict[str, Any]:
        query = urlencode([("where", expression) for expression in where])
        response = await self.client.get(f"/processes?{query}", headers=auth())
        assert response.status == 400, await response.text()
        assert response.content_type == "application/problem+json"
        problem: dict[str, Any] = await response.json()
        return problem

    async def rows(self, ids: list[str] | None = None) -> int:
        query = select(func.count()).select_from(process_search_attributes)
        if ids is not None:
            query = query.where(process_search_attributes.c.process_id.in_(ids))
        async with reading(self.core.db) as conn:
            return int((await conn.execute(query)).scalar_one())

    async def process(self, process_id: str) -> dict[str, Any]:
        response = await self.client.get(f"/processes/{process_id}", headers=auth())
        assert response.status == 200
        found: dict[str, Any] = await response.json()
        return found


@pytest.fixture
async def rig(database_url: str, tmp_path: Path) -> AsyncIterator[Rig]:
    for name, document in {"orders": ORDERS, "plain": PLAIN, "quick": QUICK}.items():
        (tmp_path / f"{name}.asl.json").write_text(json.dumps(document))
    core = await open_core(
        Settings(database_url=database_url, definitions_dir=tmp_path, retention_days=30)
    )
    assert core.problems == []
    app = build_app(core.engine, "secret", admin_tokens=[ADMIN], read_tokens=[READER])
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        yield Rig(core, client)
    finally:
        await client.close()
        await core.close()


CUSTOMERS = [
    {"customerId": "abc", "amount": 50, "vip": True, "note": "first"},
    {"customerId": "abd", "amount": 100, "vip": False},
    {"customerId": "abc", "amount": 150.5},
    {"customerId": "xyz", "amount": 1000},
    {"customerId": "ab%_", "amount": -3},
    {"customerId": "100", "amount": 7},
    {"customerId": "Zoë", "amount": 0},
]


async def test_filters_find_what_they_say(rig: Rig) -> None:
    ids = await rig.start("orders", *CUSTOMERS)
    await rig.start("plain", {"customerId": "abc"})
    by = dict(enumerate(ids))

    def these(*indexes: int) -> set[str]:
        return {by[index] for index in indexes}

    assert set(await rig.listed("customerId=abc")) == these(0, 2)
    assert set(await rig.listed("customerId!=abc")) == these(1, 3, 4, 5, 6)
    assert set(await rig.listed("amount>=100")) == these(1, 2, 3)
    assert set(await rig.listed("amount>100", "amount<=1000")) == these(2, 3)
    assert set(await rig.listed("amount<0")) == these(4)
    assert set(await rig.listed("amount=150.5")) == these(2)
    # A prefix is a prefix: % and _ are plain characters, and case counts.
    assert set(await rig.listed("customerId^=ab")) == these(0, 1, 2, 4)
    assert set(await rig.listed("customerId^=ab%")) == these(4)
    assert set(await rig.listed("customerId^=AB")) == set()
    assert set(await rig.listed("customerId^=Zo")) == these(6)
    # Text ranges are in code point order, on both databases alike.
    assert set(await rig.listed("customerId>abd")) == these(3)
    assert set(await rig.listed("customerId<a")) == these(5, 6)
    # A bare number compares numerically; quoted, it is text.
    assert set(await rig.listed("customerId=100")) == set()
    assert set(await rig.listed('customerId="100"')) == these(5)
    assert set(await rig.listed("vip=true")) == these(0)
    assert set(await rig.listed("vip=false")) == these(1)
    assert set(await rig.listed('note^=""')) == these(0)
    # ANDed with the other filters, and paged by the cursor.
    assert set(await rig.listed("customerId^=ab", definition="plain")) == set()
    assert set(await rig.listed("customerId^=ab", status="RUNNING", limit=1)) == these(0, 1, 2, 4)
    assert await rig.listed("customerId^=ab", limit=2) == await rig.listed("customerId^=ab")
    assert await rig.listed("unknown=1") == []

    shown = await rig.process(by[0])
    assert shown["searchAttributes"] == {
        "customerId": "abc",
        "amount": 50,
        "vip": True,
        "note": "first",
    }
    # A row per attribute a process has (a path that found nothing is none); the plain
    # definition's process wrote none.
    assert await rig.rows() == 4 + 3 + 2 * 5
    listed = await (
        await rig.client.get("/processes?where=amount%3E%3D1000", headers=auth())
    ).json()
    assert [item["searchAttributes"] for item in listed["items"]] == [
        {"customerId": "xyz", "amount": 1000}
    ]


async def test_a_state_updates_the_index_and_nothing_else_is_written(rig: Rig) -> None:
    first, second = await rig.start(
        "orders",
        {"customerId": "c-1", "amount": 10, "note": "n"},
        {"customerId": "c-2", "amount": 10},
    )
    plain = await rig.start("plain", {"customerId": "c-1"})
    assert await rig.rows(plain) == 0
    assert await rig.rows([first]) == 3

    await rig.answer(first, "pay", {"total": 12})

    assert (await rig.process(first))["searchAttributes"] == {
        "customerId": "c-1",
        "amount": 12,
        "stage": "paid",
    }
    assert await rig.listed("stage=paid") == [first]
    assert await rig.listed("amount=10") == [second]
    assert await rig.listed("amount=12") == [first]
    assert await rig.listed("note=n") == []
    assert await rig.rows([first]) == 3
    # The next state leaves them as they are: the rows stay, the process moves on.
    await rig.answer(first, "ship", {})
    assert (await rig.process(first))["status"] == "SUCCEEDED"
    assert await rig.listed("stage=paid", status="SUCCEEDED") == [first]
    await rig.answer(plain[0], "plain", {})
    assert await rig.rows(plain) == 0


async def test_hostile_values_are_skipped_and_never_stall_the_batch(rig: Rig) -> None:
    hostile = [
        {"customerId": "x" * 5000, "amount": 1},
        {"customerId": {"nested": ["object"]}, "amount": 2},
        {"customerId": ["a", "b"], "amount": 10**400},
        {"customerId": "é" * 256, "amount": 1e308},
    ]
    # In one batch with a good start: every one of them starts, none takes the batch down.
    ids = await rig.start("orders", *hostile, {"customerId": "fine", "amount": 3})

    for process_id in ids:
        assert (await rig.process(process_id))["status"] == "RUNNING"
    assert (await rig.process(ids[0]))["searchAttributes"] == {"amount": 1}
    largest = (await rig.process(ids[3]))["searchAttributes"]
    # PostgreSQL's JSONB gives 1e308 back with all its digits: the same number.
    assert largest["customerId"] == "é" * 256 and float(largest["amount"]) == 1e308
    assert await rig.listed("customerId=fine") == [ids[4]]
    assert await rig.listed("amount>=1e300") == [ids[3]]
    assert await rig.listed("customerId^=ééé") == [ids[3]]
    async with reading(rig.core.db) as conn:
        history = await store.read_history(conn, ids[2])
    notes = [entry["details"] for entry in history if entry["type"] == "SearchAttributeSkipped"]
    reasons = {note["name"]: note["reason"] for note in notes}
    assert "is an array" in reasons["customerId"] and "too large" in reasons["amount"]
    metrics = await (await rig.client.get("/metrics", headers=auth())).text()
    assert 'bridge_search_attributes_skipped_total{definition="orders"} 4.0' in metrics


@pytest.mark.parametrize(
    ("where", "said"),
    [
        (["customerId"], "no operator"),
        (["customerId~abc"], "no operator"),
        (["=abc"], "does not start with an attribute name"),
        (['customerId="abc'], "the quote is not closed"),
        (["customerId="], "no value"),
        ([f"a{index}=1" for index in range(11)], "at most 10"),
        (["a=" + "x" * 300], "at most 256"),
        (["customerId=\ud7ff\ue000" + "x" * 700], "at most 600"),
    ],
)
async def test_a_bad_filter_is_a_clear_400(rig: Rig, where: list[str], said: str) -> None:
    problem = await rig.refused(*where)
    assert problem["title"] == "Invalid query parameter"
    assert said in problem["detail"] and problem["detail"].startswith("where:")


async def test_a_nul_in_a_filter_is_refused_before_the_database(rig: Rig) -> None:
    response = await rig.client.get("/processes?where=customerId%3Da%00b", headers=auth())
    assert response.status == 400
    # Bytes that are no UTF-8 are read as U+FFFD by the web server: a value like any other.
    broken = await rig.client.get("/processes?where=customerId%3D%ED%A0%80", headers=auth())
    assert broken.status == 200 and (await broken.json())["items"] == []


async def test_bulk_stop_every_process_of_a_customer(rig: Rig) -> None:
    ids = await rig.start("orders", *CUSTOMERS)
    body = {
        "action": "stop",
        "filter": {"where": ["customerId=abc"]},
        "reason": "customer asked",
        "ratePerSecond": 1000,
    }
    response = await rig.client.post("/bulk-operations", json=body, headers=auth(ADMIN))
    asked = await response.json()
    assert response.status == 202, asked
    assert asked["total"] == 2 and asked["filter"]["where"] == ["customerId=abc"]
    assert "where=customerId%3Dabc" in asked["links"]["processes"]
    assert await BulkRunner(rig.core.engine).run_one()
    statuses = {pid: (await rig.process(pid))["status"] for pid in ids}
    assert {pid for pid, status in statuses.items() if status == "ABORTED"} == {ids[0], ids[2]}
    bad = {**body, "filter": {"where": ["customerId~abc"]}}
    refused = await rig.client.post("/bulk-operations", json=bad, headers=auth(ADMIN))
    assert refused.status == 400
    assert "no operator" in await refused.text()


async def test_the_pages_filter_and_show_them(rig: Rig) -> None:
    ids = await rig.start("orders", *CUSTOMERS)
    page = {"Accept": "text/html", **auth(ADMIN)}

    listing = await rig.client.get(
        "/processes?" + urlencode([("where", "customerId=abc"), ("where", "amount>100")]),
        headers=page,
    )
    html = await listing.text()
    assert listing.status == 200
    assert ids[2] in html and ids[0] not in html and ids[3] not in html
    # The filters round-trip: each in its own field, and in the bulk form.
    assert 'name="where" value="customerId=abc"' in html
    assert 'name="where" value="amount&gt;100"' in html
    assert "Act on every process this filter matches" in html
    # Each attribute shown as the filter that finds it, linked to the list it gives.
    assert '<a href="/processes?where=customerId%3Dabc"><code>customerId=abc</code></a>' in html

    wrong = await rig.client.get("/processes?where=customerId~abc", headers=page)
    text = await wrong.text()
    assert wrong.status == 400
    assert "no operator" in text and 'value="customerId~abc"' in text

    one = await (await rig.client.get(f"/processes/{ids[0]}", headers=page)).text()
    assert "Search attributes" in one and "customerId=" in one

    start = html.index('class="action bulk-stop"')
    form = html[start : html.index("</form>", start)]
    nonce = re.search(r'name="csrf" value="([^"]+)"', form)
    assert nonce is not None
    fields = re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', form)
    data = [(key, value.replace("&gt;", ">")) for key, value in fields if key != "csrf"]
    posted = await rig.client.post(
        "/ui/bulk-operations",
        data=[*data, ("csrf", nonce.group(1)), ("reason", "from the page")],
        headers=page,
        allow_redirects=False,
    )
    assert posted.status == 303, await posted.text()
    asked = await (await rig.client.get(posted.headers["Location"], headers=auth())).json()
    assert asked["total"] == 1 and asked["filter"]["where"] == ["customerId=abc", "amount>100"]


async def test_the_cli_lists_with_where(rig: Rig) -> None:
    ids = await rig.start("orders", *CUSTOMERS)
    url = str(rig.client.make_url("/")).rstrip("/")
    runner = CliRunner()

    listed = await asyncio.to_thread(
        runner.invoke,
        main,
        ["processes", "list", "--where", "customerId^=ab", "--where", "amount>=100", "--json"],
        env={"BRIDGE_URL": url, "BRIDGE_TOKEN": READER},
    )
    assert listed.exit_code == 0, listed.output
    assert {item["id"] for item in json.loads(listed.output)["items"]} == {ids[1], ids[2]}
    lines = await asyncio.to_thread(
        runner.invoke,
        main,
        ["processes", "list", "--where", "customerId=xyz"],
        env={"BRIDGE_URL": url, "BRIDGE_TOKEN": READER},
    )
    assert lines.exit_code == 0, lines.output
    assert ids[3] in lines.output and 'customerId="xyz"' in lines.output
    bad = await asyncio.to_thread(
        runner.invoke,
        main,
        ["processes", "list", "--where", "customerId"],
        env={"BRIDGE_URL": url, "BRIDGE_TOKEN": READER},
    )
    assert bad.exit_code != 0 and "no operator" in bad.output


async def test_retention_deletes_them_with_the_process(rig: Rig) -> None:
    done = await rig.start("quick", {"customerId": "gone"})
    kept = await rig.start("orders", {"customerId": "kept"})
    assert await rig.rows(done) == 1
    retention = Retention(
        rig.core.db, rig.core.registry, 30, rig.core.engine.metrics, pause_seconds=0
    )
    purged = await retention.purge(datetime.now().astimezone() + timedelta(days=31))
    assert purged.processes == {"quick": 1}
    assert await rig.rows(done) == 0
    assert await rig.rows(kept) == 1
    assert await rig.listed("customerId=gone") == []
