"""No secret at rest in clear: after a saga, no task token and no approve/reject link token that
went out on Kafka is found anywhere in the database (every column of every row of every table).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, inspect, select, text
from sqlalchemy.engine import Connection

from bridge.logs import scrub
from bridge.store.database import reading
from bridge.store.schema import outbox
from tests.integration.harness import Bridge, running_bridge

pytestmark = pytest.mark.integration


async def test_no_token_or_link_stays_in_the_database_in_clear(
    database_url: str, kafka: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secrets: dict[str, str] = {}
    async with running_bridge(database_url, kafka, tmp_path) as bridge:
        for order, amount in (("o-approved", 950), ("o-rejected", 1200), ("o-small", 20)):
            await bridge.place_order(order, amount)
            reserve = await bridge.command("inventory.commands", order)
            secrets[f"{order} reserve token"] = reserve["taskToken"]
            status, body = await bridge.post(f"/tasks/{reserve['taskToken']}/heartbeat")
            assert status == 200, body
            status, body = await bridge.post(
                f"/tasks/{reserve['taskToken']}/success", {"reserved": True}
            )
            assert status == 200, body

            charge = await bridge.command("payments.commands", order)
            secrets[f"{order} charge token"] = charge["taskToken"]
            await bridge.publish(
                "bridge.replies", {"taskToken": charge["taskToken"], "output": {"charged": amount}}
            )
            if amount < 900:
                await bridge.command("orders.done", order)
                continue

            request, _ = await bridge.next_message(
                "bridge.approvals", lambda v, order=order: v["data"]["orderId"] == order
            )
            for kind in ("approveUrl", "rejectUrl"):
                secrets[f"{order} {kind}"] = request[kind].rsplit("/", 1)[1]
            async with bridge.http.get(request["approveUrl"]) as page:
                assert page.status == 200
            if order == "o-approved":
                status, body = await bridge.post(request["approveUrl"], {"comment": "fine"})
                assert status == 200, body
                await bridge.command("orders.done", order)
            else:
                status, body = await bridge.post(request["rejectUrl"], {"comment": "too big"})
                assert status == 200, body
        await bridge.process_for("o-approved", "SUCCEEDED")
        await bridge.process_for("o-small", "SUCCEEDED")
        await bridge.process_for("o-rejected", "FAILED")
        # A late answer with a spent token: refused, and the token is not kept either.
        status, _ = await bridge.post(f"/tasks/{secrets['o-small reserve token']}/success", {})
        assert status == 409
        await bridge.publish(
            "bridge.replies", {"taskToken": secrets["o-small charge token"], "output": {}}
        )
        await published_everything(bridge)
        await late_reply_refused(bridge)
        dump = await dump_database(bridge)

    assert len(secrets) == 10 and all(len(token) >= 20 for token in secrets.values())
    # The dump sees what is stored: the orders, and the hashes the links are kept as (a task
    # token's hash stays in its wait, and goes with it).
    everything = "\n".join(value for _, value in dump)
    assert "o-approved" in everything and "too big" in everything
    assert hashlib.sha256(secrets["o-rejected rejectUrl"].encode()).hexdigest() in everything
    found = [
        f"{name} in {where}"
        for name, token in secrets.items()
        for where, value in dump
        if token in value
    ]
    assert found == []

    # Nor in a log line, as the log handler writes it (bridge.logs scrubs what it formats).
    lines = [scrub(record.getMessage() + (record.exc_text or "")) for record in caplog.records]
    logged = [name for name, token in secrets.items() if any(token in line for line in lines)]
    assert logged == []


async def late_reply_refused(bridge: Bridge, timeout: float = 20.0) -> None:
    """Until the late reply on Kafka was applied (and refused): the callbacks metric counts it."""
    deadline = time.monotonic() + timeout
    while True:
        _, metrics = await bridge.get("/metrics")
        refused = [
            line
            for line in metrics.splitlines()
            if line.startswith("bridge_callbacks_total{")
            and 'via="kafka"' in line
            and 'result="applied"' not in line
            and not line.endswith(" 0.0")
        ]
        if refused:
            return
        assert time.monotonic() < deadline, "the late reply on Kafka was not applied"
        await asyncio.sleep(0.05)


async def published_everything(bridge: Bridge, timeout: float = 20.0) -> None:
    """Until the relay has published (and so deleted) every outbox row."""
    deadline = time.monotonic() + timeout
    while True:
        async with reading(bridge.core.db) as conn:
            left = await conn.scalar(select(func.count()).select_from(outbox))
        if left == 0:
            return
        assert time.monotonic() < deadline, f"{left} outbox rows not published"
        await asyncio.sleep(0.05)


async def dump_database(bridge: Bridge) -> list[tuple[str, str]]:
    """(table.column #row, value as text) for every value in every table of the database."""

    def names(conn: Connection) -> list[str]:
        return inspect(conn).get_table_names()

    dump: list[tuple[str, str]] = []
    async with reading(bridge.core.db) as conn:
        tables = await conn.run_sync(names)
        assert {"processes", "history", "outbox", "inbox", "task_tokens"} <= set(tables)
        for table in tables:
            result = await conn.execute(text(f'SELECT * FROM "{table}"'))
            for number, row in enumerate(result.mappings()):
                for column, value in row.items():
                    dump.append((f"{table}.{column} #{number}", _text(value)))
    return dump


def _text(value: Any) -> str:
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)
