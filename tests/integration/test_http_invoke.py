"""HTTP tasks end to end: a whole bridge calling a real aiohttp server started in the test, on
SQLite and PostgreSQL. JSON and text answers, a 404 caught, 503s retried, a timeout, a refused
connection, a host the allow-list refuses (never called), the aggregator example, and an answer
that comes twice (taken once)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bridge.broker import free_port
from bridge.definitions import EXAMPLES_DIR
from bridge.intake import HttpCallEnded
from bridge.store import http_calls as store
from bridge.store.database import database_now, is_postgres, open_database, reading
from bridge.store.migrate import upgrade
from bridge.store.schema import http_calls, processes
from tests.integration.harness import Bridge, running_bridge

pytestmark = pytest.mark.integration

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


@dataclass
class Service:
    """A small HTTP service that records what it was asked."""

    url: str
    calls: Counter[str] = field(default_factory=Counter)
    requests: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    #: Set when the test ends: lets a slow answer go (no server waits for it to finish).
    closing: asyncio.Event = field(default_factory=asyncio.Event)


async def _service_app(service: Service) -> web.Application:
    async def record(request: web.Request) -> str:
        name = request.match_info.get("name", request.path)
        service.calls[name] += 1
        service.requests[name].append(
            {
                "method": request.method,
                "headers": dict(request.headers),
                "query": dict(request.query),
                "body": await request.text(),
            }
        )
        return name

    async def handle(request: web.Request) -> web.StreamResponse:
        name = await record(request)
        if name == "json":
            return web.json_response({"hello": "json", "q": request.query.get("q")})
        if name == "echo":
            return web.Response(text=await request.text(), content_type="text/plain")
        if name == "missing":
            return web.json_response({"message": "no such thing"}, status=404)
        if name == "hostile":
            # JSON that no process can keep: a NUL character, nested past every bound.
            body = '{"a": "x\\u0000y", "deep": ' + "[" * 300 + "]" * 300 + "}"
            return web.Response(text=body, content_type="application/json")
        if name == "flaky":
            if service.calls[name] <= 2:
                return web.Response(text="busy, try again", status=503)
            return web.json_response({"attempt": service.calls[name]})
        if name == "slow":
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(service.closing.wait(), 10)
            return web.json_response({"late": True})
        return web.json_response({"unexpected": name}, status=500)

    async def product(request: web.Request) -> web.Response:
        await record(request)
        sku = request.match_info["sku"]
        return web.json_response({"sku": sku, "name": f"Book {sku}", "price": 12.5})

    async def stock(request: web.Request) -> web.Response:
        await record(request)
        sku = request.match_info["sku"]
        if sku == "unknown":
            return web.json_response({"message": "not stocked"}, status=404)
        return web.json_response({"sku": sku, "available": 7, "warehouse": "north"})

    app = web.Application()
    app.router.add_get("/catalog/products/{sku}", product)
    app.router.add_get("/stock/items/{sku}", stock)
    app.router.add_route("*", "/{name}", handle)
    return app


@pytest.fixture
async def service() -> AsyncIterator[Service]:
    port = free_port()
    found = Service(f"http://127.0.0.1:{port}")
    runner = web.AppRunner(await _service_app(found), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield found
    finally:
        found.closing.set()
        await runner.cleanup()


def _task(url: str, **more: Any) -> dict[str, Any]:
    return {
        "Type": "Task",
        "Resource": "bridge:http:invoke",
        "Parameters": {"Method": "GET", "Url": url, **more.pop("Parameters", {})},
        "ResultPath": "$.answer",
        **more,
    }


def _caught(*errors: str) -> list[dict[str, Any]]:
    return [{"ErrorEquals": list(errors), "Next": "Caught", "ResultPath": "$.error"}]


def _write_definitions(folder: Path, base: str, closed_port: int, allowed_port: int) -> None:
    definitions: dict[str, dict[str, Any]] = {
        "http-json": _task(
            f"{base}/json",
            Parameters={
                "QueryParameters": {"q": "x"},
                "Headers": {
                    "Authorization": "Bearer s3cret",
                    "Idempotency-Key.$": "$$.Execution.Id",
                },
            },
            End=True,
        ),
        "http-text": _task(
            f"{base}/echo",
            Parameters={"Method": "POST", "RequestBody.$": "$.words"},
            End=True,
        ),
        "http-missing": _task(f"{base}/missing", Catch=_caught("Http.4xx"), Next="Done"),
        "http-hostile": _task(f"{base}/hostile", Catch=_caught("Http.InvalidResponse"), End=True),
        "http-flaky": _task(
            f"{base}/flaky",
            Retry=[
                {
                    "ErrorEquals": ["Http.5xx"],
                    "IntervalSeconds": 1,
                    "MaxAttempts": 3,
                    "BackoffRate": 1,
                }
            ],
            End=True,
        ),
        "http-slow": _task(
            f"{base}/slow", TimeoutSeconds=1, Catch=_caught("Http.Timeout"), End=True
        ),
        "http-refused": _task(
            f"http://127.0.0.1:{closed_port}/nobody",
            Catch=_caught("Http.ConnectionError"),
            End=True,
        ),
        "http-forbidden": _task(
            f"http://localhost:{allowed_port}/forbidden",
            Catch=_caught("Http.Forbidden"),
            End=True,
        ),
    }
    folder.mkdir(parents=True, exist_ok=True)
    for name, task in definitions.items():
        states: dict[str, Any] = {"Call": task}
        if "Catch" in task:
            states["Caught"] = {"Type": "Pass", "End": True}
        if task.get("Next") == "Done":
            states["Done"] = {"Type": "Succeed"}
        document = {"StartAt": "Call", "States": states}
        (folder / f"{name}.asl.json").write_text(json.dumps(document))
    shutil.copy(EXAMPLES_DIR / "aggregator.asl.yaml", folder / "aggregator.asl.yaml")


async def _start(
    bridge: Bridge, definition: str, data: Any = None, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    """Start a process and wait for its end (``?wait=``); the process as the API shows it."""
    code, body = await bridge.post(
        "/processes?wait=30", {"definition": definition, "input": data or {}}, headers=headers
    )
    assert code == 200, (definition, code, body)
    assert body["status"] != "RUNNING", body
    return dict(body)


async def _history(bridge: Bridge, process_id: str) -> list[dict[str, Any]]:
    code, body = await bridge.get(f"/processes/{process_id}/history")
    assert code == 200, body
    return list(body["items"])


async def test_http_tasks(database_url: str, kafka: str, tmp_path: Path, service: Service) -> None:
    folder = tmp_path / "definitions"
    port = int(service.url.rsplit(":", 1)[1])
    _write_definitions(folder, service.url, free_port(), port)
    async with running_bridge(
        database_url,
        kafka,
        tmp_path,
        definitions=folder,
        http_allowed_hosts=["127.0.0.1"],
        kafka_lifecycle_topic="",
    ) as bridge:
        started = time.monotonic()
        traced = {"traceparent": f"00-{TRACE_ID}-00f067aa0ba902b7-01"}
        (
            as_json,
            as_text,
            missing,
            flaky,
            slow,
            refused,
            forbidden,
            aggregated,
            unstocked,
            hostile,
        ) = await asyncio.gather(
            _start(bridge, "http-json", {"n": 1}, headers=traced),
            _start(bridge, "http-text", {"words": "plain words"}),
            _start(bridge, "http-missing"),
            _start(bridge, "http-flaky"),
            _start(bridge, "http-slow"),
            _start(bridge, "http-refused"),
            _start(bridge, "http-forbidden"),
            _start(
                bridge,
                "aggregator",
                {
                    "sku": "b-1",
                    "catalogUrl": service.url + "/catalog",
                    "stockUrl": service.url + "/stock",
                },
            ),
            _start(
                bridge,
                "aggregator",
                {
                    "sku": "unknown",
                    "catalogUrl": service.url + "/catalog",
                    "stockUrl": service.url + "/stock",
                },
            ),
            _start(bridge, "http-hostile"),
        )
        elapsed = time.monotonic() - started

        # JSON: the result, the request as the definition built it, the trace context on it.
        assert as_json["status"] == "SUCCEEDED", as_json
        answer = as_json["output"]["answer"]
        assert answer["StatusCode"] == 200 and answer["StatusText"] == "OK"
        assert answer["ResponseBody"] == {"hello": "json", "q": "x"}
        assert answer["Headers"]["content-type"].startswith("application/json")
        (asked,) = service.requests["json"]
        assert asked["headers"]["Authorization"] == "Bearer s3cret"
        assert asked["headers"]["Idempotency-Key"] == as_json["id"]
        assert asked["query"] == {"q": "x"}
        assert asked["headers"]["traceparent"].split("-")[1] == TRACE_ID
        # The secret is in no history entry, and not kept with the call once it is done.
        history = await _history(bridge, as_json["id"])
        assert "s3cret" not in json.dumps(history)
        invoked = next(entry for entry in history if entry["type"] == "HttpInvoked")
        assert invoked["details"]["headers"]["Authorization"] == "***"
        async with reading(bridge.core.db) as conn:
            row = (
                await conn.execute(
                    select(http_calls).where(http_calls.c.process_id == as_json["id"])
                )
            ).one()
        assert row.done_at is not None and row.outcome == "200" and row.attempts == 1
        assert "s3cret" not in json.dumps(row.request)

        # The same answer again (a call made twice) is taken once.
        again = await bridge.core.engine.apply_one(
            HttpCallEnded(row.id, response={"StatusCode": 200, "ResponseBody": "again"})
        )
        assert again.status == "ignored", again
        assert await _history(bridge, as_json["id"]) == history

        # Text in, text out.
        assert as_text["status"] == "SUCCEEDED", as_text
        assert as_text["output"]["answer"]["ResponseBody"] == "plain words"
        (echoed,) = service.requests["echo"]
        assert echoed["method"] == "POST" and echoed["body"] == "plain words"
        assert echoed["headers"]["Content-Type"].startswith("text/plain")

        # 404 caught by Http.4xx, with the answer in the Cause.
        assert missing["status"] == "SUCCEEDED", missing
        error = missing["output"]["error"]
        assert error["Error"] == "Http.404"
        assert json.loads(error["Cause"])["ResponseBody"] == {"message": "no such thing"}

        # An answer the process could not keep fails the task by name, catchable.
        assert hostile["status"] == "SUCCEEDED", hostile
        assert hostile["output"]["error"]["Error"] == "Http.InvalidResponse"
        assert "NUL character" in hostile["output"]["error"]["Cause"]

        # Two 503s retried by Http.5xx, then the answer.
        assert flaky["status"] == "SUCCEEDED", flaky
        assert flaky["output"]["answer"]["ResponseBody"] == {"attempt": 3}
        assert service.calls["flaky"] == 3
        retries = [
            entry
            for entry in await _history(bridge, flaky["id"])
            if entry["type"] == "RetryScheduled"
        ]
        assert [entry["details"]["error"] for entry in retries] == ["Http.503", "Http.503"]

        # TimeoutSeconds bounds the call.
        assert slow["status"] == "SUCCEEDED", slow
        assert slow["output"]["error"]["Error"] == "Http.Timeout"

        # Nobody listening.
        assert refused["status"] == "SUCCEEDED", refused
        assert refused["output"]["error"]["Error"] == "Http.ConnectionError"

        # Not on the allow-list: refused, never called.
        assert forbidden["status"] == "SUCCEEDED", forbidden
        assert forbidden["output"]["error"]["Error"] == "Http.Forbidden"
        assert service.calls["forbidden"] == 0

        # The aggregator example: two services in parallel, one answer.
        assert aggregated["status"] == "SUCCEEDED", aggregated
        assert aggregated["output"] == {
            "sku": "b-1",
            "name": "Book b-1",
            "price": 12.5,
            "available": 7,
            "warehouse": "north",
        }
        assert unstocked["status"] == "SUCCEEDED", unstocked
        assert unstocked["output"]["available"] == 0

        # The slow call took its one second, not the server's ten.
        assert elapsed < 9, elapsed

        registry = bridge.core.engine.metrics.registry
        counted = {
            result: registry.get_sample_value("bridge_http_calls_total", {"result": result})
            for result in ("2xx", "4xx", "5xx", "Http.Timeout", "Http.ConnectionError")
        }
        assert counted == {
            "2xx": 6,
            "4xx": 2,
            "5xx": 2,
            "Http.Timeout": 1,
            "Http.ConnectionError": 1,
        }
        forbidden_calls = {"result": "Http.Forbidden"}
        assert registry.get_sample_value("bridge_http_calls_total", forbidden_calls) == 1


async def test_two_workers_claim_different_calls(database_url: str) -> None:
    """Claims that overlap in time take different calls: on PostgreSQL the second skips the rows
    the first has locked (without waiting for it), on SQLite it waits for the first to commit."""
    db = open_database(database_url)
    try:
        await upgrade(db)
        async with db.begin() as conn:
            now = await database_now(conn)
            await conn.execute(
                insert(processes).values(
                    id="p-1",
                    definition="d",
                    version=1,
                    status="RUNNING",
                    state={},
                    started_at=now,
                    updated_at=now,
                    history_seq=0,
                    row_version=1,
                )
            )
            await store.add(
                conn,
                [
                    {
                        "id": f"call-{n}",
                        "process_id": "p-1",
                        "state": "Call",
                        "request": {"Method": "GET", "Url": "http://x.test/", "Headers": {}},
                        "timeout_seconds": 60,
                        "deadline": now + timedelta(seconds=60),
                        "created_at": now + timedelta(milliseconds=n),
                    }
                    for n in range(5)
                ],
            )
        until = now + timedelta(seconds=30)
        async with db.begin() as first:
            taken = await store.claim(first, 3, now, until)
            second = asyncio.create_task(_claim_in_own_transaction(db, now, until))
            await asyncio.sleep(0.5)
            if is_postgres(db):
                assert second.done(), "the second claim waited for the first"
        others = await second
        assert [call.id for call in taken] == ["call-0", "call-1", "call-2"]
        assert sorted(call.id for call in others) == ["call-3", "call-4"]
        async with db.begin() as conn:
            # Claimed calls are not claimable again before their lease runs out...
            assert await store.claim(conn, 5, now, until) == []
            # ...and are after it, counting the attempt.
            again = await store.claim(conn, 5, until, until + timedelta(seconds=30))
        assert sorted(call.id for call in again) == [f"call-{n}" for n in range(5)]
        assert {call.attempts for call in again} == {2}

        # Done calls are forgotten after the retention; pending ones never are.
        async with db.begin() as conn:
            [done] = [call for call in again if call.id == "call-0"]
            assert await store.finish(conn, done, "200", now)
            assert await store.purge(conn, now) == 0
            assert await store.purge(conn, now + timedelta(days=30)) == 1
            left = (await conn.execute(select(http_calls.c.id))).scalars().all()
        assert sorted(left) == [f"call-{n}" for n in range(1, 5)]
    finally:
        await db.dispose()


async def _claim_in_own_transaction(
    db: AsyncEngine, now: datetime, until: datetime
) -> list[store.HttpCall]:
    async with db.begin() as conn:
        return await store.claim(conn, 5, now, until)
