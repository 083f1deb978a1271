"""Event correlation end to end: triggers start processes, event waits take their events, early
events are buffered (and dead-lettered when their time to live ends), duplicates change nothing,
out-of-order events wait their turn, and one event reaches every process waiting on its key.
CloudEvents, invalid events, OnRunning policies, lifecycle events and wait timeouts are in
test_event_formats_and_policies.py.

One bridge per database serves most tests (see tests/integration/order_events.py); every test
uses its own correlation keys. The restart test runs its own bridges.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import pytest

from bridge.engine import EventReceived
from bridge.events import KafkaRecord
from tests.conftest import DATABASES
from tests.integration.harness import running_bridge
from tests.integration.order_events import (
    Events,
    bridge_settings,
    running_events,
    unique,
    write_definitions,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module", params=DATABASES)
async def events(
    request: pytest.FixtureRequest, kafka: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Events]:
    """One bridge per database for this file's tests."""
    async with running_events(request.param, kafka, tmp_path_factory) as running:
        yield running


# ------------------------------------------------------------------------- 1. a wait gets its event


async def test_a_trigger_starts_and_a_wait_receives_its_event(events: Events) -> None:
    order = unique("o1")
    started = await events.send(
        "orders", {"type": "OrderCompleted", "eventId": unique("e"), "orderId": order}, key=order
    )
    [process] = await events.waiting(order, "WaitForDispatch")
    assert process["definition"] == "follow" and process["input"]["orderId"] == order
    explained = await events.explain(started)
    assert explained["started"] == [{"processId": process["id"], "definition": "follow"}]
    assert explained["correlationKeys"] == [order]

    dispatched = await events.send(
        "shipping",
        {"type": "ShipmentDispatched", "orderId": order, "trackingId": "T-1", "carrier": "DHL"},
        key=order,
    )
    await events.waiting(order, "WaitForDelivery")
    explained = await events.explain(dispatched)
    assert explained["type"] == "ShipmentDispatched" and explained["waitKeys"] == [order]
    [delivery] = explained["delivered"]
    assert delivery["processId"] == process["id"] and "fromBuffer" not in delivery

    arrived = await events.send(
        "shipping", {"type": "ShipmentDelivered", "orderId": order, "to": "door"}, key=order
    )
    done = await events.bridge.process_for(order, "SUCCEEDED")
    output = done["output"]
    # ResultSelector and ResultPath apply to the event as the wait's result.
    assert output["shipment"] == {"trackingId": "T-1", "type": "ShipmentDispatched"}
    delivered = output["delivery"]
    assert delivered["type"] == "ShipmentDelivered" and delivered["key"] == order
    assert delivered["data"] == {"type": "ShipmentDelivered", "orderId": order, "to": "door"}
    topic, partition, offset = arrived.rsplit("/", 2)
    assert delivered["topic"] == topic and delivered["partition"] == int(partition)
    assert delivered["offset"] == int(offset) and delivered["eventKey"] == f"pos|{arrived}"
    assert output["orderId"] == order

    history = await events.history(done["id"])
    received = [entry for entry in history if entry["type"] == "EventReceived"]
    assert [(entry["state"], entry["details"]["type"]) for entry in received] == [
        ("WaitForDispatch", "ShipmentDispatched"),
        ("WaitForDelivery", "ShipmentDelivered"),
    ]
    assert received[0]["details"]["key"] == order
    assert received[0]["details"]["eventKey"] == f"pos|{dispatched}"
    assert "EventWaitStarted" in [entry["type"] for entry in history]


# ------------------------------------------------------------------------- 2. early events


async def test_an_event_that_arrives_during_an_earlier_step_is_taken_when_the_wait_begins(
    events: Events,
) -> None:
    order = unique("o2a")
    await events.send("orders", {"type": "PackingRequested", "orderId": order}, key=order)
    command, _ = await events.bridge.next_message(
        events.topic("cmds"), lambda value: value.get("orderId") == order
    )
    await events.waiting(order, "Pack")

    picked = await events.send(
        "shipping", {"type": "ParcelPickedUp", "orderId": order, "by": "van-7"}, key=order
    )
    buffered = await events.explain(picked, lambda e: e["bufferedUntil"] is not None)
    assert buffered["outcome"].startswith("buffered until")
    assert buffered["delivered"] == [] and buffered["waitKeys"] == [order]
    assert (await events.processes(order))[0]["currentState"] == "Pack"

    status, body = await events.bridge.post(f"/tasks/{command['taskToken']}/success", {"ok": 1})
    assert status == 200, body
    done = await events.bridge.process_for(order, "SUCCEEDED")
    assert done["output"]["packed"] == {"ok": 1}
    assert done["output"]["pickup"]["type"] == "ParcelPickedUp"
    assert done["output"]["pickup"]["data"]["by"] == "van-7"

    explained = await events.explain(picked)
    assert explained["outcome"] == "delivered from the buffer"
    [delivery] = explained["delivered"]
    assert delivery["processId"] == done["id"] and delivery["fromBuffer"] is True
    kinds = [entry["type"] for entry in await events.history(done["id"])]
    assert kinds.index("TaskSucceeded") < kinds.index("EventReceived")


async def test_events_that_arrive_before_the_process_exists_are_taken_in_turn(
    events: Events,
) -> None:
    order = unique("o2b")
    dispatched = await events.send(
        "shipping", {"type": "ShipmentDispatched", "orderId": order, "trackingId": "T-2"}, key=order
    )
    delivered = await events.send(
        "shipping", {"type": "ShipmentDelivered", "orderId": order}, key=order
    )
    for position in (dispatched, delivered):
        await events.explain(position, lambda e: e["bufferedUntil"] is not None)
    assert await events.processes(order) == []

    await events.send(
        "orders", {"type": "OrderCompleted", "eventId": unique("e"), "orderId": order}, key=order
    )
    done = await events.bridge.process_for(order, "SUCCEEDED")
    assert done["output"]["shipment"]["trackingId"] == "T-2"
    assert done["output"]["delivery"]["type"] == "ShipmentDelivered"
    for position in (dispatched, delivered):
        explained = await events.explain(position)
        assert explained["outcome"] == "delivered from the buffer"
        assert [d["processId"] for d in explained["delivered"]] == [done["id"]]


# ------------------------------------------------------------------------- 3. time to live


async def test_an_unclaimed_early_event_is_dead_lettered_when_its_time_to_live_ends(
    events: Events,
) -> None:
    order = unique("o3")
    sent = {"type": "ParcelReturned", "orderId": order, "n": 1}
    position = await events.send("returns", sent, key=order)
    buffered = await events.explain(position, lambda e: e["bufferedUntil"] is not None)
    assert buffered["deadLetter"] is None and buffered["waitKeys"] == [order]
    kept_until = datetime.fromisoformat(buffered["bufferedUntil"])
    received = datetime.fromisoformat(buffered["receivedAt"])
    assert (kept_until - received).total_seconds() == pytest.approx(1, abs=0.01)

    letter, headers = await events.dead_letter(lambda v: v.get("eventKey") == f"pos|{position}")
    assert letter["type"] == "bridge.DeadLetter"
    assert letter["reason"] == "unmatched: no wait took the event before its time to live ended"
    assert headers["ce_type"] == b"bridge.DeadLetter"
    # An expired event has no record at hand: where it came from is in the kept event.
    topic, partition, offset = position.rsplit("/", 2)
    event = letter["event"]
    assert (event["topic"], event["partition"], event["offset"]) == (
        topic,
        int(partition),
        int(offset),
    )
    assert event["data"] == sent and event["type"] == "ParcelReturned" and event["key"] == order

    explained = await events.explain(position, lambda e: e["deadLetter"] is not None)
    assert explained["deadLetter"].startswith("unmatched")
    assert explained["outcome"] == "dead-lettered"
    assert explained["delivered"] == []


# ------------------------------------------------------------------------- 4. duplicates


async def test_a_repeated_event_id_changes_nothing(events: Events) -> None:
    order, event_id = unique("o4"), unique("e4")
    event = {"type": "OrderCompleted", "eventId": event_id, "orderId": order}
    ident = f"id|{events.topic('orders')}|{event_id}"
    # Back to back (most likely in one batch) ...
    first = await events.send("orders", event, key=order)
    await events.send("orders", event, key=order)
    [process] = await events.waiting(order, "WaitForDispatch")
    history = await events.history(process["id"])
    # ... and once more after the first was applied.
    third = await events.send("orders", event, key=order)

    # Both copies counted: the barrier that says the third was read and applied too.
    explained = await events.explain(ident, lambda e: e["duplicates"] >= 2)
    assert explained["duplicates"] == 2
    assert explained["offset"] == int(first.rsplit("/", 1)[1])
    assert explained["lastDuplicateAt"] is not None
    assert explained["started"] == [{"processId": process["id"], "definition": "follow"}]
    status, _ = await events.bridge.get(f"/events/{third}")
    assert status == 404, "a copy is counted on the first, not recorded itself"
    assert [p["id"] for p in await events.processes(order)] == [process["id"]]
    assert await events.history(process["id"]) == history


async def test_a_copy_in_the_same_batch_is_counted(events: Events) -> None:
    order, event_id = unique("o4b"), unique("e4b")
    value = json.dumps({"type": "OrderCompleted", "eventId": event_id, "orderId": order}).encode()
    topic, offset = events.topic("orders"), 10**9 + int(uuid.uuid4().int % 10**6) * 2
    copies = [
        EventReceived(KafkaRecord(topic, 0, offset + n, order.encode(), value)) for n in range(2)
    ]
    outcomes = await events.bridge.core.engine.apply(copies)
    assert [o.status for o in outcomes] == ["applied", "duplicate"]
    assert len(await events.processes(order)) == 1
    explained = await events.explain(f"id|{topic}|{event_id}")
    assert explained["duplicates"] == 1


async def test_an_event_can_be_explained_by_its_configured_event_id(events: Events) -> None:
    order, event_id = unique("o4id"), unique("e4id")
    await events.send(
        "orders", {"type": "OrderCompleted", "eventId": event_id, "orderId": order}, key=order
    )
    await events.waiting(order, "WaitForDispatch")
    status, body = await events.bridge.get(f"/events/{event_id}")
    assert status == 200, body
    assert body["events"][0]["key"] == f"id|{events.topic('orders')}|{event_id}"


async def test_a_duplicate_after_a_worker_restart_changes_nothing(
    database_url: str, kafka: str, tmp_path: Path
) -> None:
    """The second worker reads in a new consumer group, so it reads every event again from the
    start, as after lost offsets; then a copy arrives too. (A restart in the same group costs
    two group joins, ~19 s, on the test broker.)"""
    suffix = uuid.uuid4().hex[:8]
    folder = write_definitions(tmp_path / "definitions", suffix)
    order, event_id = unique("o4r"), unique("e4r")
    event = {"type": "OrderCompleted", "eventId": event_id, "orderId": order}
    ident = f"id|orders.{suffix}|{event_id}"

    async with running_bridge(
        database_url, kafka, tmp_path, definitions=folder, **bridge_settings(suffix)
    ) as bridge:
        first = Events(bridge, suffix)
        await first.send("orders", event, key=order)
        [before] = await first.waiting(order, "WaitForDispatch")
        history_before = await first.history(before["id"])

    async with running_bridge(
        database_url, kafka, tmp_path, definitions=folder, **bridge_settings(suffix)
    ) as bridge:
        second = Events(bridge, suffix)
        await second.send("orders", event, key=order)
        explained = await second.explain(ident, lambda e: e["duplicates"] == 2)
        assert explained["started"] == [{"processId": before["id"], "definition": "follow"}]
        [after] = await second.processes(order)
        assert after["id"] == before["id"] and after["currentState"] == "WaitForDispatch"
        assert await second.history(before["id"]) == history_before

        # The wait outlived the worker.
        await second.send(
            "shipping", {"type": "ShipmentDispatched", "orderId": order, "trackingId": "T"}
        )
        await second.send("shipping", {"type": "ShipmentDelivered", "orderId": order})
        done = await bridge.process_for(order, "SUCCEEDED")
        assert done["id"] == before["id"]
        assert done["output"]["shipment"]["trackingId"] == "T"


# ------------------------------------------------------------------------- 5. out of order


async def test_an_out_of_order_event_waits_for_the_second_wait(events: Events) -> None:
    order = unique("o5")
    await events.send(
        "orders", {"type": "OrderCompleted", "eventId": unique("e"), "orderId": order}, key=order
    )
    [process] = await events.waiting(order, "WaitForDispatch")

    delivered = await events.send(
        "shipping", {"type": "ShipmentDelivered", "orderId": order}, key=order
    )
    await events.explain(delivered, lambda e: e["bufferedUntil"] is not None)
    assert (await events.processes(order))[0]["currentState"] == "WaitForDispatch"

    await events.send(
        "shipping", {"type": "ShipmentDispatched", "orderId": order, "trackingId": "T-5"}, key=order
    )
    done = await events.bridge.process_for(order, "SUCCEEDED")
    assert done["output"]["shipment"]["trackingId"] == "T-5"
    assert done["output"]["delivery"]["type"] == "ShipmentDelivered"
    explained = await events.explain(delivered)
    assert [(d["processId"], d["fromBuffer"]) for d in explained["delivered"]] == [
        (process["id"], True)
    ]


# ------------------------------------------------------------------------- 6. fan-out, any of


async def test_two_processes_waiting_on_one_key_both_receive_the_event(events: Events) -> None:
    order = unique("o6")
    for _ in range(2):
        await events.send(
            "orders",
            {"type": "OrderCompleted", "eventId": unique("e"), "orderId": order},
            key=order,
        )
    waiting = await events.waiting(order, "WaitForDispatch", count=2)

    dispatched = await events.send(
        "shipping", {"type": "ShipmentDispatched", "orderId": order, "trackingId": "T-6"}, key=order
    )
    after = await events.waiting(order, "WaitForDelivery", count=2)
    assert {p["id"] for p in after} == {p["id"] for p in waiting}
    explained = await events.explain(dispatched)
    assert sorted(d["processId"] for d in explained["delivered"]) == sorted(
        p["id"] for p in waiting
    )
    assert explained["bufferedUntil"] is None


async def test_a_wait_for_two_types_takes_the_first_to_arrive(events: Events) -> None:
    order = unique("o6b")
    await events.send(
        "orders", {"type": "OrderCompleted", "eventId": unique("e"), "orderId": order}, key=order
    )
    await events.send(
        "shipping", {"type": "ShipmentDispatched", "orderId": order, "trackingId": "T"}, key=order
    )
    await events.waiting(order, "WaitForDelivery")
    await events.send("shipping", {"type": "ShipmentLost", "orderId": order}, key=order)
    late = await events.send("shipping", {"type": "ShipmentDelivered", "orderId": order}, key=order)

    done = await events.bridge.process_for(order, "SUCCEEDED")
    assert done["output"]["delivery"]["type"] == "ShipmentLost"
    assert done["output"]["delivery"]["data"] == {"type": "ShipmentLost", "orderId": order}
    # The other type came too late: nothing waits for it any more, so it is only kept.
    explained = await events.explain(late)
    assert explained["delivered"] == [] and explained["bufferedUntil"] is not None
    kinds = [e["type"] for e in await events.history(done["id"])]
    assert kinds.count("EventReceived") == 2
