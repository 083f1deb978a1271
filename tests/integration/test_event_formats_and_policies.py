"""Events end to end, beyond correlation: CloudEvents in both modes, invalid events dead-lettered
while the partition keeps flowing, OnRunning policies, lifecycle events and wait timeouts.

One bridge per database serves the tests (see tests/integration/order_events.py); every test
uses its own correlation keys.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.conftest import DATABASES
from tests.integration.harness import eventually
from tests.integration.order_events import (
    Events,
    duplicates,
    from_position,
    running_events,
    unique,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module", params=DATABASES)
async def events(
    request: pytest.FixtureRequest, kafka: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Events]:
    """One bridge per database for this file's tests."""
    async with running_events(request.param, kafka, tmp_path_factory) as running:
        yield running


# ------------------------------------------------------------------------- 7. CloudEvents


def structured(event_id: str, source: str, order: str) -> bytes:
    return json.dumps(
        {
            "specversion": "1.0",
            "id": event_id,
            "source": source,
            "type": "com.example.order.placed",
            "datacontenttype": "application/json",
            "data": {"orderId": order},
        }
    ).encode()


def binary(event_id: str, source: str) -> dict[str, str]:
    return {
        "ce_specversion": "1.0",
        "ce_id": event_id,
        "ce_source": source,
        "ce_type": "com.example.order.placed",
        "content-type": "application/json",
    }


async def test_cloudevents_in_both_modes_start_processes_once_per_source_and_id(
    events: Events,
) -> None:
    in_binary, in_structured = unique("o7b"), unique("o7s")
    binary_id, structured_id = unique("ce"), unique("ce")
    cloud_type = {"content-type": "application/cloudevents+json"}

    await events.send("cloud", {"orderId": in_binary}, headers=binary(binary_id, "/shop"))
    await events.send(
        "cloud", raw=structured(structured_id, "/shop", in_structured), headers=cloud_type
    )
    started = {}
    for order in (in_binary, in_structured):
        started[order] = await events.bridge.process_for(order, "SUCCEEDED")
        assert started[order]["input"] == {"orderId": order}
        assert started[order]["output"]["done"] == "ok"

    # Copies: the same source and id again, in the same and in the other mode.
    await events.send("cloud", {"orderId": in_binary}, headers=binary(binary_id, "/shop"))
    await events.send("cloud", raw=structured(binary_id, "/shop", in_binary), headers=cloud_type)
    await events.send("cloud", {"orderId": in_structured}, headers=binary(structured_id, "/shop"))
    # The same id from another source is another event.
    await events.send("cloud", {"orderId": in_binary}, headers=binary(binary_id, "/elsewhere"))

    for source_id, copies in ((binary_id, 2), (structured_id, 1)):
        explained = await events.explain(f"ce|/shop|{source_id}", duplicates(copies))
        assert explained["eventId"] == source_id and explained["source"] == "/shop"
        assert explained["type"] == "com.example.order.placed"
    other = await events.explain(f"ce|/elsewhere|{binary_id}")
    [elsewhere] = other["started"]
    assert {p["id"] for p in await events.processes(in_binary)} == {
        started[in_binary]["id"],
        elsewhere["processId"],
    }
    assert [p["id"] for p in await events.processes(in_structured)] == [
        started[in_structured]["id"]
    ]
    status, body = await events.bridge.get(f"/events/{binary_id}")
    assert status == 200
    assert sorted(e["source"] for e in body["events"]) == ["/elsewhere", "/shop"]


# ------------------------------------------------------------------------- 8. invalid events


async def test_invalid_events_are_dead_lettered_and_the_partition_keeps_flowing(
    events: Events,
) -> None:
    order = unique("o8")
    not_json = await events.send("orders", raw=b"{not json", key=order)
    no_key = await events.send("orders", {"type": "OrderCompleted", "eventId": unique("e")})
    await events.send(
        "orders", {"type": "OrderCompleted", "eventId": unique("e"), "orderId": order}, key=order
    )
    await events.waiting(order, "WaitForDispatch")

    for position, reason in (
        (not_json, "the value is not JSON"),
        (no_key, "follow: the event has no value at $.orderId"),
    ):
        topic, partition, offset = position.rsplit("/", 2)
        letter, headers = await events.dead_letter(
            from_position(topic, int(partition), int(offset))
        )
        assert letter["reason"].startswith(reason), letter
        assert letter["partition"] == int(partition)
        assert letter["eventKey"] == f"pos|{position}"
        assert headers["ce_type"] == b"bridge.DeadLetter"
        explained = await events.explain(position)
        assert explained["outcome"] == "dead-lettered"
        assert explained["deadLetter"].startswith(reason)
    with pytest.raises(AssertionError, match="no matching message"):
        await events.dead_letter(lambda v: v.get("eventKey") == f"pos|{not_json}", 0.3)


# ------------------------------------------------------------------------- 9. OnRunning


async def test_on_running_ignore_starts_nothing_and_says_why(events: Events) -> None:
    ticket = unique("t9")
    first, second = unique("e"), unique("e")
    await events.send("orders", {"type": "TicketOpened", "eventId": first, "ticketId": ticket})
    [process] = await events.waiting(ticket, "WaitForClose")
    await events.send("orders", {"type": "TicketOpened", "eventId": second, "ticketId": ticket})

    explained = await events.explain(
        f"id|{events.topic('orders')}|{second}", lambda e: bool(e["ignored"])
    )
    assert explained["started"] == [] and explained["delivered"] == []
    assert explained["outcome"] == "ignored: a process with its key is running"
    [ignored] = explained["ignored"]
    assert ignored["definition"] == "support" and ignored["policy"] == "Ignore"
    assert ignored["running"] == [process["id"]] and ticket in ignored["reason"]
    assert len(await events.processes(ticket)) == 1

    # Once it has ended, the next start event starts a new one.
    await events.send("support", {"type": "TicketClosed", "ticketId": ticket})
    await events.bridge.process_for(ticket, "SUCCEEDED")
    await events.send(
        "orders", {"type": "TicketOpened", "eventId": unique("e"), "ticketId": ticket}
    )

    async def two() -> bool:
        return len(await events.processes(ticket)) == 2

    await eventually(two, 20, lambda: "no new process after the first ended")


async def test_on_running_deliver_hands_the_start_event_to_the_running_process(
    events: Events,
) -> None:
    cart = unique("c9")
    first, second = unique("e"), unique("e")
    await events.send("orders", {"type": "CartUpdated", "eventId": first, "cartId": cart, "n": 1})
    [process] = await events.waiting(cart, "NextUpdate")
    await events.send("orders", {"type": "CartUpdated", "eventId": second, "cartId": cart, "n": 2})

    done = await events.bridge.process_for(cart, "SUCCEEDED")
    assert done["id"] == process["id"]
    assert done["input"]["n"] == 1 and done["output"]["next"]["data"]["n"] == 2
    explained = await events.explain(f"id|{events.topic('orders')}|{second}")
    assert explained["started"] == []
    # The explanation is the barrier: the second event was applied, delivered and not started.
    assert [d["processId"] for d in explained["delivered"]] == [process["id"]]
    assert len(await events.processes(cart)) == 1


# ------------------------------------------------------------------------- 10. lifecycle events


async def test_lifecycle_events_are_published_as_cloudevents(events: Events) -> None:
    order = unique("o10")
    await events.send("cloud", {"orderId": order}, headers=binary(unique("ce"), "/shop"))
    done = await events.bridge.process_for(order, "SUCCEEDED")

    seen: dict[str, dict[str, Any]] = {}
    for kind in ("bridge.process.started", "bridge.process.succeeded"):
        value, record = await events.bridge.next_message(
            events.topic("life"),
            lambda v, kind=kind: v.get("processId") == done["id"] and v.get("type") == kind,
        )
        headers = dict(record.headers)
        assert headers["ce_type"] == kind.encode()
        assert headers["ce_specversion"] == b"1.0"
        assert headers["ce_source"] == b"bridge/cloud"
        assert headers["ce_subject"] == done["id"].encode()
        assert headers["bridge_process_id"] == done["id"].encode()
        assert record.key == order.encode()
        assert value["definition"] == "cloud" and value["correlationKey"] == order
        seen[kind] = value
    assert seen["bridge.process.succeeded"]["status"] == "SUCCEEDED"
    assert seen["bridge.process.succeeded"]["output"] == done["output"]


async def test_the_started_lifecycle_event_says_running(events: Events) -> None:
    order = unique("o10s")
    await events.send("cloud", {"orderId": order}, headers=binary(unique("ce"), "/shop"))
    done = await events.bridge.process_for(order, "SUCCEEDED")
    value, _ = await events.bridge.next_message(
        events.topic("life"),
        lambda v: v.get("processId") == done["id"] and v.get("type") == "bridge.process.started",
    )
    assert value["status"] == "RUNNING"


# ------------------------------------------------------------------------- 11. timeout


async def test_a_wait_that_times_out_is_caught(events: Events) -> None:
    invoice = unique("i11")
    await events.send("orders", {"type": "InvoiceSent", "invoiceId": invoice})
    [process] = await events.waiting(invoice, "WaitForPayment")

    done = await events.bridge.process_for(invoice, "SUCCEEDED", timeout=10)
    assert done["output"]["status"] == "overdue"
    assert done["output"]["problem"]["Error"] == "States.Timeout"
    assert "payment" not in done["output"]
    kinds = [entry["type"] for entry in await events.history(process["id"])]
    assert "TaskTimedOut" in kinds and "ErrorCaught" in kinds
    assert "EventReceived" not in kinds
