"""A worker killed between an HTTP call and its answer: the call is made again by the next
worker, and the process completes once.

The worker runs as ``python -m bridge worker`` with ``BRIDGE_FAULT=after-http-call-before-result``:
it claims the call, makes it, has the answer, and dies (as SIGKILL would) before the engine
applies it. A second worker takes the call over when the first one's claim runs out
(``BRIDGE_HTTP_LEASE_SECONDS``), makes it again with the same request (the same idempotency key),
and the process goes on. The service sees two calls; the process takes one answer.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from sqlalchemy import select

from bridge.bootstrap import open_core
from bridge.broker import free_port
from bridge.engine import StartRequested
from bridge.store.database import reading
from bridge.store.processes import read_history
from bridge.store.schema import http_calls, processes
from tests.faults.workers import Workers, crash_settings, until

pytestmark = pytest.mark.integration

LEASE_SECONDS = 2


@pytest.fixture
async def payments() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    """A payment service that records every call it gets."""
    calls: list[dict[str, Any]] = []

    async def pay(request: web.Request) -> web.Response:
        calls.append({"headers": dict(request.headers), "body": await request.json()})
        return web.json_response({"paymentId": f"pay-{len(calls)}"}, status=201)

    app = web.Application()
    app.router.add_post("/payments", pay)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}", calls
    finally:
        await runner.cleanup()


@pytest.mark.timeout(180)
async def test_a_worker_killed_after_the_call_makes_it_again_and_the_process_completes_once(
    database_url: str,
    kafka: str,
    tmp_path: Path,
    payments: tuple[str, list[dict[str, Any]]],
) -> None:
    url, calls = payments
    folder = tmp_path / "definitions"
    folder.mkdir()
    document = {
        "StartAt": "Pay",
        "States": {
            "Pay": {
                "Type": "Task",
                "Resource": "bridge:http:invoke",
                "Parameters": {
                    "Method": "POST",
                    "Url": f"{url}/payments",
                    "Headers": {
                        "Idempotency-Key.$": "States.Format('{}/{}', $$.Execution.Id, "
                        "$$.State.Name)"
                    },
                    "RequestBody": {"orderId.$": "$.orderId", "amount.$": "$.amount"},
                },
                "TimeoutSeconds": 60,
                "ResultSelector": {"paymentId.$": "$.ResponseBody.paymentId"},
                "ResultPath": "$.payment",
                "End": True,
            }
        },
    }
    (folder / "pay-once.asl.json").write_text(json.dumps(document))
    settings = crash_settings(database_url, kafka, folder, "http-crash")
    # Migrates and deploys; this process only starts the process and reads the database.
    core = await open_core(settings)
    workers = Workers(settings, tmp_path, BRIDGE_HTTP_LEASE_SECONDS=str(LEASE_SECONDS))

    async def process_row() -> Any:
        async with reading(core.db) as conn:
            return (await conn.execute(select(processes).where(processes.c.id == process_id))).one()

    try:
        victim = workers.start("after-http-call-before-result")
        await victim.ready()
        started = await core.engine.apply_one(
            StartRequested("pay-once", {"orderId": "o-1", "amount": 42})
        )
        assert started.status == "applied", started
        process_id = started.process_ids[0]

        code = await victim.exited(timeout=30)
        assert code == 137, f"the worker did not die at the fault point:\n{victim.tail()}"
        assert "fault injected at after-http-call-before-result" in victim.text()
        assert len(calls) == 1
        assert (await process_row()).status == "RUNNING"

        # The HTTP calls are taken at once, while the new worker's consumer still joins.
        workers.start(None)

        async def ended() -> Any:
            row = await process_row()
            return row if row.status != "RUNNING" else None

        row = await until(ended, 60, "the process did not end after the restart")
        assert row.status == "SUCCEEDED", row
        # The call was made twice, with the same request and idempotency key; the process took
        # the second answer, once.
        assert len(calls) == 2
        assert calls[0]["body"] == calls[1]["body"] == {"orderId": "o-1", "amount": 42}
        keys = [call["headers"]["Idempotency-Key"] for call in calls]
        assert keys == [f"{process_id}/Pay"] * 2
        state = row.state
        assert state["output"]["payment"] == {"paymentId": "pay-2"}
        async with reading(core.db) as conn:
            kinds = [entry["type"] for entry in await read_history(conn, process_id)]
            call = (
                await conn.execute(select(http_calls).where(http_calls.c.process_id == process_id))
            ).one()
        assert kinds == [
            "ProcessStarted",
            "StateEntered",
            "HttpInvoked",
            "TaskSucceeded",
            "StateExited",
            "ProcessSucceeded",
        ]
        assert call.attempts == 2 and call.outcome == "201" and call.done_at is not None
        # Nothing more happens: no third call once the answer is applied.
        await asyncio.sleep(LEASE_SECONDS + 1)
        assert len(calls) == 2
        print(
            f"\nFAULTS http call, worker killed after the call ({database_url.split(':')[0]}): "
            f"calls made {len(calls)}, process {row.status}, TaskSucceeded "
            f"{kinds.count('TaskSucceeded')}, attempts {call.attempts}"
        )
    finally:
        workers.kill_all()
        await core.close()
