"""Play an order through the demo: publish OrderPlaced, act as the inventory and payment services,
and (for amounts of 900 or more) wait for you to approve in the browser.

    .venv/bin/python examples/try_order.py --amount 950

Needs `bridge dev` running (Kafka on 127.0.0.1:9092, web on http://127.0.0.1:8080).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import uuid
from typing import Any

import aiohttp
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--amount", type=float, default=120)
    parser.add_argument("--kafka", default="127.0.0.1:9092")
    parser.add_argument("--web", default="http://127.0.0.1:8080")
    parser.add_argument(
        "--auto-approve", action="store_true", help="POST the approve link yourself"
    )
    args = parser.parse_args()
    order_id = f"order-{uuid.uuid4().hex[:6]}"

    producer = AIOKafkaProducer(bootstrap_servers=args.kafka, enable_idempotence=False)
    await producer.start()
    consumer = AIOKafkaConsumer(bootstrap_servers=args.kafka, fetch_max_wait_ms=10)
    await consumer.start()
    topics = ["inventory.commands", "payments.commands", "bridge.approvals", "orders.done"]
    assigned = []
    for topic in topics:
        partitions = await producer.partitions_for(topic)
        assigned += [TopicPartition(topic, p) for p in partitions]
    consumer.assign(assigned)
    await consumer.seek_to_end()
    async with aiohttp.ClientSession() as http:
        try:
            event = {
                "type": "OrderPlaced",
                "eventId": str(uuid.uuid4()),
                "orderId": order_id,
                "amount": args.amount,
                "customerId": "customer-42",
                "items": [{"sku": "book-123", "qty": 2}],
            }
            await producer.send_and_wait(
                "orders.events", json.dumps(event).encode(), key=order_id.encode()
            )
            print(f"published OrderPlaced {order_id} (amount {args.amount}) on orders.events")
            while True:
                batch = await consumer.getmany(timeout_ms=500)
                for records in batch.values():
                    for record in records:
                        value = json.loads(record.value or b"null")
                        if value.get("orderId", value.get("data", {}).get("orderId")) != order_id:
                            continue
                        if record.topic == "inventory.commands":
                            print("inventory service: got ReserveInventory, answering over HTTP")
                            url = f"{args.web}/tasks/{value['taskToken']}/success"
                            async with http.post(url, json={"reservationId": "r-1"}) as response:
                                print(f"  POST /tasks/.../success -> {response.status}")
                        elif record.topic == "payments.commands":
                            print("payment service: got ChargePayment, answering on bridge.replies")
                            reply = {
                                "taskToken": value["taskToken"],
                                "output": {"paymentId": "p-1"},
                            }
                            await producer.send_and_wait(
                                "bridge.replies", json.dumps(reply).encode()
                            )
                        elif record.topic == "bridge.approvals":
                            print(f"approval needed: open {value['approveUrl']}")
                            print(f"            or reject: {value['rejectUrl']}")
                            if args.auto_approve:
                                async with http.post(value["approveUrl"], json={}) as response:
                                    print(f"  approved -> {response.status}")
                        elif record.topic == "orders.done":
                            print(f"orders.done: {value}")
                # However it ends (completed, rejected, failed, timed out), say so and stop.
                process = await ended(http, args.web, order_id)
                if process is not None:
                    print(f"process {process['id']}: {process['status']}", end="")
                    if process.get("error"):
                        print(f" ({process['error']}: {process.get('cause') or ''})", end="")
                    print(f"\nhistory: {args.web}/processes/{process['id']}/history")
                    return 0 if process["status"] == "SUCCEEDED" else 1
        finally:
            await consumer.stop()
            await producer.stop()


async def ended(http: aiohttp.ClientSession, web: str, order_id: str) -> dict[str, Any] | None:
    """The order's process once it has ended, else None."""
    async with http.get(f"{web}/processes?correlationKey={order_id}") as response:
        if response.status != 200:
            return None
        page: dict[str, Any] = await response.json()
    items: list[dict[str, Any]] = page.get("items") or []
    if items and items[0]["status"] != "RUNNING":
        return items[0]
    return None


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
