"""An event that is dead-lettered can still be found by its id, and shows its type."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from tests.integration.harness import running_bridge

pytestmark = pytest.mark.integration


async def explained(bridge: object, ident: str) -> dict[str, object]:
    deadline = asyncio.get_running_loop().time() + 10
    while True:
        status, body = await bridge.get(f"/events/{ident}")  # type: ignore[attr-defined]
        if status == 200:
            [event] = body["events"]
            return dict(event)
        assert asyncio.get_running_loop().time() < deadline, (status, body)
        await asyncio.sleep(0.05)


async def test_a_dead_lettered_event_is_found_by_its_id(
    database_url: str, kafka: str, tmp_path: Path
) -> None:
    async with running_bridge(database_url, kafka, tmp_path) as bridge:
        topic = bridge.topics["orders.events"]
        deep: object = "bottom"
        for _ in range(100):
            deep = {"x": deep}
        too_deep = {"type": "OrderPlaced", "eventId": "e-deep", "orderId": "o-1", "extra": deep}
        await bridge.publish("orders.events", too_deep)
        # A binary-mode CloudEvent whose value is no JSON at all: its headers still tell.
        await bridge.producer.send_and_wait(
            topic,
            b"\x00not json",
            headers=[
                ("ce_specversion", b"1.0"),
                ("ce_id", b"ce-broken-1"),
                ("ce_type", b"OrderPlaced"),
                ("ce_source", b"/shop"),
            ],
        )
        # A NUL in the id: kept readable, and PostgreSQL takes it.
        await bridge.publish(
            "orders.events", {"type": "Order\x00Placed", "eventId": "e-\x00-nul", "orderId": []}
        )

        first = await explained(bridge, "e-deep")
        assert (first["outcome"], first["type"], first["eventId"]) == (
            "dead-lettered",
            "OrderPlaced",
            "e-deep",
        )
        assert "nested deeper" in json.dumps(first["deadLetter"])
        second = await explained(bridge, "ce-broken-1")
        assert (second["type"], second["source"]) == ("OrderPlaced", "/shop")
        third = await explained(bridge, "e-\\u0000-nul")
        assert third["type"] == "Order\\u0000Placed"
