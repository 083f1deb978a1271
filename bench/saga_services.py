"""The order saga's world around the bridge, for ``order_saga.py``: inventory and payment
services that answer each command at once, an approver bot that POSTs {} to each approveUrl, a
collector of orders.done, and what they observe (deliveries by ``ce_id``, times)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

EVENTS = "orders.events"
INVENTORY = "inventory.commands"
PAYMENTS = "payments.commands"
REPLIES = "bridge.replies"
APPROVALS = "bridge.approvals"
DONE = "orders.done"
#: The bridge's own topics that the saga does not read (names given to the bridge with a suffix).
LIFECYCLE = "bridge.lifecycle"
DLQ = "bridge.dlq"
#: SagaTopics' attribute for each topic of the saga.
_SAGA_TOPICS = {
    "events": EVENTS,
    "inventory": INVENTORY,
    "payments": PAYMENTS,
    "replies": REPLIES,
    "approvals": APPROVALS,
    "done": DONE,
}


@dataclass(frozen=True)
class SagaTopics:
    """The topics of one run: the names above on the bench's own broker; with a ``suffix``
    (``NAME.SUFFIX``), names of their own on a shared cluster, so that runs never read each
    other's records."""

    suffix: str = ""
    events: str = field(init=False)
    inventory: str = field(init=False)
    payments: str = field(init=False)
    replies: str = field(init=False)
    approvals: str = field(init=False)
    done: str = field(init=False)

    def __post_init__(self) -> None:
        for attribute, base in _SAGA_TOPICS.items():
            object.__setattr__(self, attribute, self.name(base))

    def name(self, base: str) -> str:
        return f"{base}.{self.suffix}" if self.suffix else base

    @property
    def all(self) -> tuple[str, ...]:
        return tuple(getattr(self, attribute) for attribute in _SAGA_TOPICS)

    def definition(self, text: str) -> str:
        """The order saga's definition (``text``) reading and writing this run's topics."""
        for base in (EVENTS, INVENTORY, PAYMENTS, DONE):
            line = f"Topic: {base}\n"
            if line not in text:
                # Renamed topics elsewhere would leave the run waiting for orders that never end.
                raise ValueError(f"the order saga's definition names no topic {base}")
            text = text.replace(line, f"Topic: {self.name(base)}\n")
        return text

    def bridge_env(self) -> dict[str, str]:
        """The settings that name the bridge's own topics for this run."""
        if not self.suffix:
            return {}
        return {
            "BRIDGE_KAFKA_REPLIES_TOPIC": self.replies,
            "BRIDGE_KAFKA_APPROVALS_TOPIC": self.approvals,
            "BRIDGE_KAFKA_LIFECYCLE_TOPIC": self.name(LIFECYCLE),
            "BRIDGE_KAFKA_DLQ_TOPIC": self.name(DLQ),
        }


def now() -> float:
    return time.monotonic()


# --------------------------------------------------------------------- what the bench observes


@dataclass
class Observed:
    sent_at: dict[str, float] = field(default_factory=dict)
    needs_approval: set[str] = field(default_factory=set)
    completed_at: dict[str, float] = field(default_factory=dict)
    completions: Counter[str] = field(default_factory=Counter)  # orderId -> OrderCompleted records
    # kind -> ce_id -> deliveries; kind -> orderId -> distinct ce_ids
    deliveries: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    per_order: dict[str, dict[str, set[str]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(set))
    )
    first_seen: dict[str, dict[str, float]] = field(default_factory=lambda: defaultdict(dict))
    replies_sent: int = 0
    approvals_posted: int = 0
    approval_failures: Counter[str] = field(default_factory=Counter)
    stray: Counter[str] = field(default_factory=Counter)
    done_event: asyncio.Event = field(default_factory=asyncio.Event)
    expected: set[str] = field(default_factory=set)
    slots: asyncio.Semaphore | None = None
    bridge_exited_at: float | None = None

    def see(self, kind: str, order_id: str, ce_id: str) -> bool:
        """Record one delivery; True when this ce_id is new (the service acts on it)."""
        counter = self.deliveries[kind]
        counter[ce_id] += 1
        self.per_order[order_id][kind].add(ce_id)
        self.first_seen[kind].setdefault(order_id, now())
        return counter[ce_id] == 1


def header(record: Any, name: str) -> str | None:
    for key, value in record.headers or ():
        if key == name:
            return value.decode("utf-8", "replace") if value is not None else None
    return None


# --------------------------------------------------------------------- simulated services


async def consume(
    bootstrap: str, topics: tuple[str, ...], handle: Any, stop: asyncio.Event
) -> None:
    """Read ``topics`` with one consumer until ``stop``, passing each batch to ``handle``."""
    consumer = AIOKafkaConsumer(
        *topics,
        bootstrap_servers=bootstrap,
        group_id=f"bench-{'-'.join(topics)}-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        fetch_max_wait_ms=10,
        enable_auto_commit=True,
    )
    await consumer.start()
    try:
        await hand_over(consumer, handle, stop)
    finally:
        await consumer.stop()


def by_topic(handlers: dict[str, Any]) -> Any:
    """A handler passing each topic's records to its own handler, in turn.

    The simulated services share one consumer: each consumer fetches a hundred times a second
    from the test broker (its 10 ms fetch wait), and four of them cost the broker about a third
    of a core at 50 orders/s, taken from the bridge on the same two cores.
    """

    async def handle(records: list[Any]) -> None:
        grouped: dict[str, list[Any]] = {}
        for record in records:
            grouped.setdefault(record.topic, []).append(record)
        for topic, batch in grouped.items():
            await handlers[topic](batch)

    return handle


async def hand_over(consumer: AIOKafkaConsumer, handle: Any, stop: asyncio.Event) -> None:
    """Until ``stop``, pass what ``consumer`` reads to ``handle``, a batch at a time."""
    while not stop.is_set():
        batches = await consumer.getmany(timeout_ms=100, max_records=2000)
        records = [record for batch in batches.values() for record in batch]
        if records:
            await handle(records)


def service(
    observed: Observed, producer: AIOKafkaProducer, kind: str, output: Any, replies: str
) -> Any:
    """A service that answers each new command (by ce_id) with a success reply at once, on the
    topic ``replies``."""

    async def handle(records: list[Any]) -> None:
        sends = []
        for record in records:
            try:
                value = json.loads(record.value)
                token = value["taskToken"]
                order_id = str(value.get("orderId"))
            except (ValueError, KeyError, TypeError):
                observed.stray[kind] += 1
                continue
            ce_id = header(record, "ce_id") or f"no-ce-id:{token}"
            if not observed.see(kind, order_id, ce_id):
                continue  # a redelivery: the service has answered it already
            reply = {"taskToken": token, "output": output(value)}
            sends.append(
                await producer.send(replies, json.dumps(reply).encode(), key=order_id.encode())
            )
        if sends:
            await asyncio.gather(*sends)
            observed.replies_sent += len(sends)

    return handle


def approver(observed: Observed, session: aiohttp.ClientSession, limit: int) -> Any:
    """A bot that approves each new approval request by POSTing {} to its approveUrl."""
    gate = asyncio.Semaphore(limit)
    tasks: set[asyncio.Task[None]] = set()

    async def post(url: str) -> None:
        async with gate:
            for attempt in range(5):
                try:
                    async with session.post(url, json={}) as response:
                        await response.read()
                        if response.status == 200:
                            observed.approvals_posted += 1
                            return
                        observed.approval_failures[f"HTTP {response.status}"] += 1
                        if response.status < 500:
                            return
                except (aiohttp.ClientError, TimeoutError) as exc:
                    observed.approval_failures[type(exc).__name__] += 1
                await asyncio.sleep(0.2 * (attempt + 1))

    async def handle(records: list[Any]) -> None:
        for record in records:
            try:
                value = json.loads(record.value)
                url = value["approveUrl"]
                order_id = str((value.get("data") or {}).get("orderId"))
            except (ValueError, KeyError, TypeError):
                observed.stray["approval"] += 1
                continue
            ce_id = header(record, "ce_id") or f"no-ce-id:{url}"
            if observed.see("approval", order_id, ce_id):
                task = asyncio.create_task(post(url))
                tasks.add(task)
                task.add_done_callback(tasks.discard)

    handle.tasks = tasks  # type: ignore[attr-defined]
    return handle


def collector(observed: Observed) -> Any:
    async def handle(records: list[Any]) -> None:
        at = now()
        for record in records:
            try:
                order_id = str(json.loads(record.value)["orderId"])
            except (ValueError, KeyError, TypeError):
                observed.stray["done"] += 1
                continue
            ce_id = header(record, "ce_id") or f"no-ce-id:{order_id}"
            observed.see("completed", order_id, ce_id)
            observed.completions[order_id] += 1
            if order_id not in observed.completed_at:
                observed.completed_at[order_id] = at
                if observed.slots is not None and order_id in observed.sent_at:
                    observed.slots.release()
        if observed.expected and observed.expected.issubset(observed.completed_at.keys()):
            observed.done_event.set()

    return handle


@dataclass
class Services:
    """The simulated services, the approver bot and the collector, with what they share."""

    producer: AIOKafkaProducer
    session: aiohttp.ClientSession
    approve: Any
    stop: asyncio.Event
    tasks: list[asyncio.Task[None]]

    @classmethod
    async def start(
        cls, bootstrap: str, observed: Observed, approvers: int, topics: SagaTopics
    ) -> Services:
        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, enable_idempotence=False, linger_ms=2
        )
        await producer.start()
        session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        approve = approver(observed, session, approvers)
        stop = asyncio.Event()
        inventory = service(
            observed, producer, "ReserveInventory", lambda v: {"reserved": True}, topics.replies
        )
        payment = service(
            observed,
            producer,
            "ChargePayment",
            lambda v: {"charged": v.get("amount")},
            topics.replies,
        )
        handlers = {topics.inventory: inventory, topics.payments: payment}
        handlers[topics.approvals] = approve
        handlers[topics.done] = collector(observed)
        tasks = [asyncio.create_task(consume(bootstrap, tuple(handlers), by_topic(handlers), stop))]
        return cls(producer, session, approve, stop, tasks)

    async def close(self) -> None:
        self.stop.set()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.session.close()
        await self.producer.stop()
