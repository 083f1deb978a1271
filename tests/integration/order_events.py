"""The order events the correlation tests drive: definitions whose triggers and event waits
listen on topics ending in ``.<suffix>``, a client that publishes events and inspects what became
of them, and a bridge per database running the definitions.

A bridge takes seconds to join its consumer group: each test file starts one per database
(``running_events`` in a module-scoped fixture) and its tests use their own correlation keys.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiokafka.structs import RecordMetadata

from tests.integration.harness import Bridge, eventually, running_bridge, scratch_database

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


@asynccontextmanager
async def running_events(
    database: str, kafka: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Events]:
    """One bridge (worker and web) on ``database`` (sqlite or postgres) running the definitions
    above."""
    tmp_path = tmp_path_factory.mktemp("correlation")
    suffix = uuid.uuid4().hex[:8]
    folder = write_definitions(tmp_path / "definitions", suffix)
    async with (
        scratch_database(database, tmp_path) as database_url,
        running_bridge(
            database_url, kafka, tmp_path, definitions=folder, **bridge_settings(suffix)
        ) as bridge,
    ):
        assert bridge.core.problems == []
        yield Events(bridge, suffix)
