"""Event correlation end to end: triggers start processes, event waits take their events, early
events are buffered (and dead-lettered when their time to live ends), duplicates change nothing,
CloudEvents in both modes, OnRunning policies, lifecycle events and wait timeouts.

One bridge per database serves most tests (a bridge takes seconds to join its consumer group);
every test uses its own correlation keys. The restart test runs its own bridges.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiokafka.structs import RecordMetadata

from bridge.engine import EventReceived
from bridge.events import KafkaRecord
from tests.conftest import create_postgres_database, drop_postgres_database
from tests.integration.harness import Bridge, running_bridge

pytestmark = pytest.mark.integration

JSON = Any


def definitions(suffix: str) -> dict[str, dict[str, JSON]]:
    """The definitions under test; every topic ends in ``.<suffix>``."""
    orders, shipping, cmds = f"orders.{suffix}", f"shipping.{suffix}", f"cmds.{suffix}"

    def wait_for(topic: str, types: str | list[str], key: str = "$.orderId", **extra: JSON) -> JSON:
        return {
            "Type": "Task",
            "Resource": "bridge:event:waitFor",
            "Parameters": {
                "Topic": topic,
                "EventType": types,
                "CorrelationKey.$": key,
                "KeyPath": key,
                **extra,
            },
        }

    return {
        # 1, 2b, 4, 5, 6, 8: two waits in a row, the second for either of two types.
        "follow": {
            "Triggers": [
                {
                    "Topic": orders,
                    "EventType": "OrderCompleted",
                    "CorrelationKey": "$.orderId",
                    "EventId": "$.eventId",
                }
            ],
            "StartAt": "WaitForDispatch",
            "States": {
                "WaitForDispatch": {
                    **wait_for(shipping, "ShipmentDispatched"),
                    "ResultSelector": {"trackingId.$": "$.data.trackingId", "type.$": "$.type"},
                    "ResultPath": "$.shipment",
                    "Next": "WaitForDelivery",
                },
                "WaitForDelivery": {
                    **wait_for(shipping, ["ShipmentDelivered", "ShipmentLost"]),
                    "ResultPath": "$.delivery",
                    "End": True,
                },
            },
        },
        # 2a: a callback step first; the event arrives while the process waits on it.
        "packing": {
            "Triggers": [
                {"Topic": orders, "EventType": "PackingRequested", "CorrelationKey": "$.orderId"}
            ],
            "StartAt": "Pack",
            "States": {
                "Pack": {
                    "Type": "Task",
                    "Resource": "bridge:kafka:send.waitForTaskToken",
                    "Parameters": {
                        "Topic": cmds,
                        "Key.$": "$.orderId",
                        "Message": {
                            "type": "Pack",
                            "orderId.$": "$.orderId",
                            "taskToken.$": "$$.Task.Token",
                        },
                    },
                    "ResultPath": "$.packed",
                    "Next": "WaitForPickup",
                },
                "WaitForPickup": {
                    **wait_for(shipping, "ParcelPickedUp", BufferSeconds=120),
                    "ResultPath": "$.pickup",
                    "End": True,
                },
            },
        },
        # 3: nothing ever starts this; its wait only makes ParcelReturned worth keeping for 1 s.
        "returns": {
            "StartAt": "WaitForReturn",
            "States": {
                "WaitForReturn": {
                    **wait_for(f"returns.{suffix}", "ParcelReturned", BufferSeconds=1),
                    "End": True,
                }
            },
        },
        # 7, 10: CloudEvents start it; it succeeds at once.
        "cloud": {
            "Triggers": [
                {
                    "Topic": f"cloud.{suffix}",
                    "EventType": "com.example.order.placed",
                    "CorrelationKey": "$.orderId",
                }
            ],
            "StartAt": "Done",
            "States": {
                "Done": {"Type": "Pass", "Result": "ok", "ResultPath": "$.done", "End": True}
            },
        },
        # 9: Ignore.
        "support": {
            "Triggers": [
                {
                    "Topic": orders,
                    "EventType": "TicketOpened",
                    "CorrelationKey": "$.ticketId",
                    "EventId": "$.eventId",
                    "OnRunning": "Ignore",
                }
            ],
            "StartAt": "WaitForClose",
            "States": {
                "WaitForClose": {
                    **wait_for(f"support.{suffix}", "TicketClosed", "$.ticketId"),
                    "End": True,
                }
            },
        },
        # 9: Deliver: the next CartUpdated of a running cart goes to its wait.
        "cart": {
            "Triggers": [
                {
                    "Topic": orders,
                    "EventType": "CartUpdated",
                    "CorrelationKey": "$.cartId",
                    "EventId": "$.eventId",
                    "OnRunning": "Deliver",
                }
            ],
            "StartAt": "NextUpdate",
            "States": {
                "NextUpdate": {
                    **wait_for(orders, "CartUpdated", "$.cartId"),
                    "ResultPath": "$.next",
                    "End": True,
                }
            },
        },
        # 11: a wait that times out, caught.
        "invoice": {
            "Triggers": [
                {"Topic": orders, "EventType": "InvoiceSent", "CorrelationKey": "$.invoiceId"}
            ],
            "StartAt": "WaitForPayment",
            "States": {
                "WaitForPayment": {
                    **wait_for(f"billing.{suffix}", "InvoicePaid", "$.invoiceId"),
                    "TimeoutSeconds": 1,
                    "ResultPath": "$.payment",
                    "Catch": [
                        {
                            "ErrorEquals": ["States.Timeout"],
                            "ResultPath": "$.problem",
                            "Next": "Overdue",
                        }
                    ],
                    "Next": "Paid",
                },
                "Overdue": {
                    "Type": "Pass",
                    "Result": "overdue",
                    "ResultPath": "$.status",
                    "End": True,
                },
                "Paid": {"Type": "Succeed"},
            },
        },
    }


def write_definitions(folder: Path, suffix: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, document in definitions(suffix).items():
        (folder / f"{name}.asl.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    return folder


class Events:
    """Publishing and inspecting events on one bridge whose topics end in ``.<suffix>``."""

    def __init__(self, bridge: Bridge, suffix: str) -> None:
        self.bridge = bridge
        self.suffix = suffix

    def topic(self, name: str) -> str:
        return f"{name}.{self.suffix}"

    async def send(
        self,
        topic: str,
        value: JSON = None,
        *,
        key: str | None = None,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> str:
        """Publish to ``<topic>.<suffix>``; the record's position ``topic/partition/offset``."""
        name = self.topic(topic)
        sent: RecordMetadata = await self.bridge.producer.send_and_wait(
            name,
            raw if raw is not None else json.dumps(value).encode(),
            key=None if key is None else key.encode(),
            headers=[(k, v.encode()) for k, v in (headers or {}).items()],
        )
        return f"{name}/{sent.partition}/{sent.offset}"

    async def explain(
        self,
        ident: str,
        until: Callable[[dict[str, Any]], bool] = lambda event: True,
        timeout: float = 20.0,
    ) -> dict[str, Any]:
        """The one ``GET /events/{ident}`` entry, once it passes ``until``."""
        found: dict[str, Any] = {}

        async def ready() -> bool:
            status, body = await self.bridge.get(f"/events/{ident}")
            if status != 200:
                return False
            assert len(body["events"]) == 1, body
            found.update(body["events"][0])
            return until(found)

        await eventually(ready, timeout, lambda: f"GET /events/{ident}: {found}")
        return found

    async def processes(self, key: str) -> list[dict[str, Any]]:
        status, body = await self.bridge.get(f"/processes?correlationKey={key}")
        assert status == 200, body
        return list(body["items"])

    async def waiting(self, key: str, state: str, count: int = 1) -> list[dict[str, Any]]:
        """The ``count`` processes with ``key``, once all of them wait in ``state``."""
        found: list[dict[str, Any]] = []

        async def ready() -> bool:
            found[:] = await self.processes(key)
            return len(found) == count and all(p["currentState"] == state for p in found)

        await eventually(ready, 20.0, lambda: f"{key} not waiting in {state}: {found}")
        return found

    async def history(self, process_id: str) -> list[dict[str, Any]]:
        status, body = await self.bridge.get(f"/processes/{process_id}/history")
        assert status == 200, body
        return list(body["items"])

    async def dead_letter(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 20.0
    ) -> tuple[dict[str, Any], dict[str, bytes]]:
        value, record = await self.bridge.next_message(self.topic("dlq"), predicate, timeout)
        return value, dict(record.headers)


async def eventually(
    check: Callable[[], Awaitable[bool]], timeout: float, describe: Callable[[], str]
) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(describe())
        await asyncio.sleep(0.05)


def duplicates(count: int) -> Callable[[dict[str, Any]], bool]:
    return lambda explained: bool(explained["duplicates"] == count)


def from_position(topic: str, partition: int, offset: int) -> Callable[[dict[str, Any]], bool]:
    """The dead letter of the record at topic/partition/offset (offsets repeat per partition)."""
    return lambda letter: (
        (letter.get("topic"), letter.get("partition"), letter.get("offset"))
        == (
            topic,
            partition,
            offset,
        )
    )


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def bridge_settings(suffix: str) -> dict[str, Any]:
    return {
        "kafka_dlq_topic": f"dlq.{suffix}",
        "kafka_lifecycle_topic": f"life.{suffix}",
    }


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
async def events(
    request: pytest.FixtureRequest, kafka: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Events]:
    """One bridge (worker and web) per database running the definitions above."""
    tmp_path = tmp_path_factory.mktemp("correlation")
    if request.param == "sqlite":
        database_url = f"sqlite+aiosqlite:///{tmp_path}/bridge.db"
    else:
        database_url = await create_postgres_database()
    suffix = uuid.uuid4().hex[:8]
    folder = write_definitions(tmp_path / "definitions", suffix)
    try:
        async with running_bridge(
            database_url, kafka, tmp_path, definitions=folder, **bridge_settings(suffix)
        ) as bridge:
            assert bridge.core.problems == []
            yield Events(bridge, suffix)
    finally:
        if request.param == "postgres":
            await drop_postgres_database(database_url)


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
