"""A load rig for crash tests: the order saga under load, the worker in separate processes.

The rig owns a fresh PostgreSQL database, the saga definition with topic names of its own, the
topics (created up front with the wanted partition count), and, in this process: the web
endpoint (approval links and task callbacks go there), simulated inventory and payment services
answering on the replies topic, an approver bot POSTing each ``approveUrl``, and a collector on
``orders.done``. Workers run as ``python -m bridge worker`` subprocesses the test starts, kills and
restarts. ``verify()`` then reads every output topic from its start and the database and says
what was lost, what was done twice (distinct ``ce_id``s for one step) and what was only
redelivered (copies with the same ``ce_id``, which consumers drop).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import shutil
import tempfile
import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

import aiohttp
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.structs import TopicPartition
from sqlalchemy import func, select

from bridge.bootstrap import Core, Web, open_core
from bridge.broker import free_port
from bridge.settings import Settings
from bridge.store import history_chunks
from bridge.store.database import reading
from bridge.store.schema import history, inbox, outbox, processes
from tests.conftest import POSTGRES_ADMIN_URL, create_postgres_database, drop_postgres_database
from tests.faults.verdict import (
    BIG_ORDER_HISTORY,
    KINDS,
    SMALL_ORDER_HISTORY,
    Observed,
    Record,
    Result,
    grep,
    header,
    history_diff,
    now,
)
from tests.faults.workers import WorkerProcess, worker_env
from tests.integration.harness import saga_definition


class Rig:
    """See the module docstring. ``async with Rig(...) as rig:`` cleans everything up."""

    def __init__(
        self,
        tmp_path: Path,
        bootstrap: str,
        *,
        partitions: int = 1,
        seed: int | None = None,
        big_every: int = 20,
        duplicate_reply_every: int = 7,
        postgres_admin_url: str = POSTGRES_ADMIN_URL,
    ) -> None:
        """``postgres_admin_url``: the server the rig makes its database on (a test that stops
        PostgreSQL gives one of its own)."""
        self.postgres_admin_url = postgres_admin_url
        self.tmp_path = tmp_path
        self.bootstrap = bootstrap
        self.partitions = partitions
        self.random = random.Random(seed)
        self.big_every = big_every
        self.duplicate_reply_every = duplicate_reply_every
        self.suffix = uuid.uuid4().hex[:8]
        self.observed = Observed()
        self.workers: list[WorkerProcess] = []
        self.database: str | None = None
        self.core: Core | None = None
        self.web: Web | None = None
        self.producer: AIOKafkaProducer | None = None
        self.http: aiohttp.ClientSession | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._approvals: set[asyncio.Task[None]] = set()
        self._order_seq = 0

    # ------------------------------------------------------------- set up and tear down

    async def __aenter__(self) -> Rig:
        try:
            await self._start()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _start(self) -> None:
        definitions = self.tmp_path / "definitions"
        self.topics = saga_definition(definitions, self.suffix)
        for name in ("bridge.replies", "bridge.approvals", "bridge.lifecycle", "bridge.dlq"):
            self.topics[name] = f"{name}.{self.suffix}"
        self.http_port = free_port()
        self.database = await create_postgres_database(self.postgres_admin_url)
        self.settings = Settings(
            database_url=self.database,
            kafka_bootstrap=self.bootstrap,
            http_port=self.http_port,
            kafka_group_id=f"faults-{self.suffix}",
            kafka_replies_topic=self.topics["bridge.replies"],
            kafka_approvals_topic=self.topics["bridge.approvals"],
            kafka_lifecycle_topic=self.topics["bridge.lifecycle"],
            kafka_dlq_topic=self.topics["bridge.dlq"],
            kafka_topic_partitions=self.partitions,
            definitions_dir=definitions,
        )
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await admin.start()
        try:
            await admin.create_topics(
                [
                    NewTopic(topic, num_partitions=self.partitions, replication_factor=1)
                    for topic in self.topics.values()
                ]
            )
        finally:
            await admin.close()
        # Migrates and deploys the definition; workers then start with BRIDGE_DATABASE_MIGRATE off.
        self.core = await open_core(self.settings)
        self.web = Web(self.core, "127.0.0.1", self.http_port)
        await self.web.start()
        self.producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap, enable_idempotence=False, acks="all"
        )
        await self.producer.start()
        self.http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        consumers = {
            "inventory.commands": self._service("ReserveInventory"),
            "payments.commands": self._service("ChargePayment"),
            "bridge.approvals": self._approver,
            "orders.done": self._collector,
        }
        for logical, handle in consumers.items():
            self._tasks.append(asyncio.create_task(self._consume(self.topics[logical], handle)))

    async def close(self) -> None:
        for task in [*self._tasks, *self._approvals]:
            task.cancel()
        await asyncio.gather(*self._tasks, *self._approvals, return_exceptions=True)
        for worker in self.workers:
            worker.kill()
        steps: list[Callable[[], Awaitable[Any]]] = []
        if self.http is not None:
            steps.append(self.http.close)
        if self.producer is not None:
            steps.append(self.producer.stop)
        if self.web is not None:
            steps.append(self.web.stop)
        if self.core is not None:
            steps.append(self.core.close)
        if self.database is not None:
            database, admin = self.database, self.postgres_admin_url
            steps.append(lambda: drop_postgres_database(database, admin))
        for close in steps:
            try:
                await asyncio.wait_for(close(), 30)
            except Exception as exc:  # keep cleaning up the rest
                print(f"cleanup step failed: {exc!r}")
        shutil.rmtree(
            Path(tempfile.gettempdir()) / "bridge-faust" / f"faults-{self.suffix}",
            ignore_errors=True,
        )

    # ------------------------------------------------------------- workers

    def worker_env(self, fault: str | None = None) -> dict[str, str]:
        env = worker_env(self.settings, fault)
        if fault:
            # The fault hits at the nth passage of a point; some points are passed once per
            # batch, and a loaded worker behind its topic (or its outbox) takes large ones:
            # small batches keep the nth passage in the middle of the run on a busy machine too.
            env["BRIDGE_BATCH_MAX_EVENTS"] = "8"
            env["BRIDGE_RELAY_BATCH_SIZE"] = "20"
        return env

    async def start_worker(self, fault: str | None = None, *, wait: bool = True) -> WorkerProcess:
        name = f"w{len(self.workers) + 1}" + (f"-{fault}" if fault else "")
        worker = WorkerProcess(
            name,
            self.worker_env(fault),
            self.tmp_path / f"worker-{len(self.workers) + 1}.log",
            self.tmp_path,
        )
        self.workers.append(worker)
        if wait:
            await worker.ready()
        return worker

    # ------------------------------------------------------------- load

    def orders(self, count: int) -> list[tuple[str, float]]:
        """``count`` new orders; every ``big_every``-th needs an approval (amount >= 900)."""
        made = []
        for _ in range(count):
            self._order_seq += 1
            order_id = f"o-{self.suffix}-{self._order_seq:05d}"
            big = self.big_every > 0 and self._order_seq % self.big_every == 0
            amount = 950 if big else self.random.randint(10, 899)
            if big:
                self.observed.big.add(order_id)
            made.append((order_id, float(amount)))
        return made

    def publish(self, orders: list[tuple[str, float]], rate: float) -> asyncio.Task[None]:
        """Publish OrderPlaced for ``orders`` at ``rate`` per second, in the background."""
        task = asyncio.create_task(self._publish(orders, rate))
        self._tasks.append(task)
        return task

    async def _publish(self, orders: list[tuple[str, float]], rate: float) -> None:
        assert self.producer is not None
        began = now()
        sends = []
        for index, (order_id, amount) in enumerate(orders):
            delay = began + index / rate - now()
            if delay > 0:
                await asyncio.sleep(delay)
            event = {
                "type": "OrderPlaced",
                "eventId": f"evt-{order_id}",
                "orderId": order_id,
                "amount": amount,
                "customerId": "c-1",
                "items": [{"sku": "book", "qty": 1}],
            }
            self.observed.sent_at[order_id] = now()
            self.observed.done.clear()
            sends.append(
                await self.producer.send(
                    self.topics["orders.events"],
                    json.dumps(event).encode(),
                    key=order_id.encode(),
                )
            )
        await asyncio.gather(*sends)

    async def wait_done(self, timeout: float) -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.observed.done.wait(), timeout)
        return self.observed.done.is_set()

    def pending(self) -> set[str]:
        """Orders published and not completed yet."""
        return set(self.observed.sent_at) - set(self.observed.completed_at)

    async def wait_completed(self, count: int, timeout: float) -> None:
        """Until at least ``count`` orders completed (or ``timeout``)."""
        deadline = now() + timeout
        while len(self.observed.completed_at) < count and now() < deadline:
            await asyncio.sleep(0.02)

    # ------------------------------------------------------------- simulated services

    async def _consume(self, topic: str, handle: Callable[[list[Record]], Awaitable[None]]) -> None:
        assert self.producer is not None
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=10,
        )
        await consumer.start()
        try:
            partitions = await self.producer.partitions_for(topic)
            assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
            consumer.assign(assigned)
            await consumer.seek_to_beginning(*assigned)
            while True:
                batches = await consumer.getmany(timeout_ms=100, max_records=1000)
                records = [record for batch in batches.values() for record in batch]
                if records:
                    await handle(records)
        finally:
            await consumer.stop()

    def _service(self, kind: str) -> Callable[[list[Record]], Awaitable[None]]:
        """Answers each new command (by ce_id) at once on the replies topic; every
        ``duplicate_reply_every``-th answer is sent twice, as an at-least-once service may."""

        async def handle(records: list[Record]) -> None:
            assert self.producer is not None
            sends = []
            for record in records:
                try:
                    value = json.loads(record.value or b"")
                    token = value["taskToken"]
                    order_id = str(value["orderId"])
                except (ValueError, KeyError, TypeError):
                    self.observed.stray[kind] += 1
                    continue
                ce_id = header(record, "ce_id") or f"no-ce-id:{token}"
                if not self.observed.see(kind, ce_id):
                    continue  # a redelivered copy: answered already
                reply = json.dumps({"taskToken": token, "output": {"by": kind, "ok": True}})
                copies = 1
                every = self.duplicate_reply_every
                if every and sum(self.observed.deliveries[kind].values()) % every == 0:
                    copies = 2
                    self.observed.duplicate_replies_sent += 1
                for _ in range(copies):
                    sends.append(
                        await self.producer.send(
                            self.topics["bridge.replies"], reply.encode(), key=order_id.encode()
                        )
                    )
            if sends:
                await asyncio.gather(*sends)
                self.observed.replies_sent += len(sends)

        return handle

    async def _approver(self, records: list[Record]) -> None:
        for record in records:
            try:
                value = json.loads(record.value or b"")
                url = value["approveUrl"]
            except (ValueError, KeyError, TypeError):
                self.observed.stray["approval"] += 1
                continue
            ce_id = header(record, "ce_id") or f"no-ce-id:{url}"
            if self.observed.see("approval", ce_id):
                task = asyncio.create_task(self._approve(url))
                self._approvals.add(task)
                task.add_done_callback(self._approvals.discard)

    async def _approve(self, url: str) -> None:
        """POST the approval; retried while the web endpoint or its database is away."""
        assert self.http is not None
        for _ in range(120):
            try:
                async with self.http.post(url, json={}) as response:
                    await response.read()
                    self.observed.approval_answers[str(response.status)] += 1
                    if response.status == 200:
                        self.observed.approvals_posted += 1
                        return
                    if response.status < 500:
                        return
            except (aiohttp.ClientError, TimeoutError) as exc:
                self.observed.approval_answers[type(exc).__name__] += 1
            await asyncio.sleep(0.25)

    async def _collector(self, records: list[Record]) -> None:
        at = now()
        for record in records:
            try:
                order_id = str(json.loads(record.value or b"")["orderId"])
            except (ValueError, KeyError, TypeError):
                self.observed.stray["done"] += 1
                continue
            self.observed.see("OrderCompleted", header(record, "ce_id") or f"no-ce-id:{order_id}")
            self.observed.completed_at.setdefault(order_id, at)
        self.observed.check_done()

    # ------------------------------------------------------------- checking

    async def backlog(self) -> int:
        assert self.core is not None
        async with reading(self.core.db) as conn:
            # Published rows are deleted: what is left waits to be published (or is parked).
            return int(await conn.scalar(select(func.count()).select_from(outbox)) or 0)

    async def settle(self, timeout: float = 20.0) -> None:
        """Until the outbox is empty (nothing left to publish), then a little longer."""
        deadline = now() + timeout
        while now() < deadline:
            try:
                if await self.backlog() == 0:
                    break
            except Exception:  # the database may still be coming back
                pass
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)

    async def read_topics(self, logical: Iterable[str]) -> dict[str, list[Record]]:
        """Every record of the topics, from their start to their current end."""
        assert self.producer is not None
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=10,
        )
        await consumer.start()
        found: dict[str, list[Record]] = {name: [] for name in logical}
        try:
            by_name = {self.topics[name]: name for name in logical}
            assigned = [
                TopicPartition(topic, p)
                for topic in by_name
                for p in sorted(await self.producer.partitions_for(topic))
            ]
            consumer.assign(assigned)
            await consumer.seek_to_beginning(*assigned)
            ends = await consumer.end_offsets(assigned)
            deadline = now() + 30
            while any([await consumer.position(tp) < ends[tp] for tp in assigned]):
                if now() > deadline:
                    raise AssertionError("could not read the output topics to their end")
                for tp, records in (await consumer.getmany(timeout_ms=200)).items():
                    found[by_name[tp.topic]].extend(records)
        finally:
            await consumer.stop()
        return found

    async def verify(
        self,
        scenario: str,
        *,
        fault_at: float | None = None,
        resume_after: float | None = None,
        stuck: set[str] | None = None,
    ) -> Result:
        """Everything that should hold after recovery; ``problems`` lists what does not.

        Recovery time: from ``fault_at`` to the first completion of one of the ``stuck`` orders
        when given, else to the first completion after ``resume_after`` (or ``fault_at``).
        """
        assert self.core is not None
        observed = self.observed
        orders = list(observed.sent_at)
        problems: list[str] = []
        notes: list[str] = []

        topics = await self.read_topics(
            [
                "inventory.commands",
                "payments.commands",
                "bridge.approvals",
                "orders.done",
                "bridge.lifecycle",
                "bridge.dlq",
            ]
        )
        # kind -> order -> distinct ce_ids; kind -> records
        ids: dict[str, dict[str, set[str]]] = {kind: defaultdict(set) for kind in KINDS}
        copies: Counter[str] = Counter()
        for logical, kind in (
            ("inventory.commands", "ReserveInventory"),
            ("payments.commands", "ChargePayment"),
            ("bridge.approvals", "approval"),
            ("orders.done", "OrderCompleted"),
        ):
            for record in topics[logical]:
                value = json.loads(record.value or b"null")
                order_id = (
                    value["data"]["orderId"] if kind == "approval" else str(value.get("orderId"))
                )
                ce_id = header(record, "ce_id")
                if ce_id is None:
                    problems.append(f"a {kind} record without ce_id at offset {record.offset}")
                    continue
                ids[kind][order_id].add(ce_id)
                copies[kind] += 1
        duplicated = {
            kind: sum(max(0, len(ids[kind].get(order, ())) - 1) for order in orders)
            for kind in KINDS
        }
        redelivered = {
            kind: copies[kind] - sum(len(found) for found in ids[kind].values()) for kind in KINDS
        }
        for kind in KINDS:
            for order_id in orders:
                count = len(ids[kind].get(order_id, ()))
                wanted = 0 if kind == "approval" and order_id not in observed.big else 1
                if count > wanted:
                    problems.append(
                        f"{order_id}: {count} distinct {kind} messages (ce_ids "
                        f"{sorted(ids[kind][order_id])}), expected {wanted}"
                    )
            strangers = set(ids[kind]) - set(orders)
            if strangers:
                problems.append(f"{kind} messages for unknown orders {sorted(strangers)[:5]}")

        lifecycle: dict[tuple[str, str], set[str]] = defaultdict(set)
        for record in topics["bridge.lifecycle"]:
            value = json.loads(record.value or b"null")
            lifecycle[(value["processId"], value["type"])].add(header(record, "ce_id") or "")
        if topics["bridge.dlq"]:
            problems.append(
                f"{len(topics['bridge.dlq'])} dead letters, first: "
                f"{topics['bridge.dlq'][0].value[:300]!r}"
            )

        async with reading(self.core.db) as conn:
            rows = (
                await conn.execute(
                    select(
                        processes.c.id,
                        processes.c.correlation_key,
                        processes.c.status,
                        processes.c.current_state,
                    )
                )
            ).all()
            chunks = (
                await conn.execute(
                    select(history.c.process_id, history.c.seq, history.c.entries).order_by(
                        history.c.process_id, history.c.seq
                    )
                )
            ).all()
            backlog = int(await conn.scalar(select(func.count()).select_from(outbox)) or 0)
            inbox_rows = int(await conn.scalar(select(func.count()).select_from(inbox)) or 0)
            inbox_duplicates = int(await conn.scalar(select(func.sum(inbox.c.duplicates))) or 0)
        by_order: dict[str, list[Any]] = defaultdict(list)
        for row in rows:
            by_order[row.correlation_key].append(row)
        histories: dict[str, list[tuple[str, str | None]]] = defaultdict(list)
        for chunk in chunks:
            histories[chunk.process_id].extend(
                (step["type"], step["state"])
                for step in history_chunks.entries(chunk.seq, chunk.entries)
            )

        lost: list[str] = []
        completed = 0
        for order_id in orders:
            found = by_order.get(order_id, [])
            if len(found) != 1:
                problems.append(f"{order_id}: {len(found)} processes, expected 1")
            if not any(row.status == "SUCCEEDED" for row in found) or not ids["OrderCompleted"].get(
                order_id
            ):
                lost.append(order_id)
            for row in found:
                if row.status != "SUCCEEDED":
                    problems.append(
                        f"{order_id}: process {row.id} {row.status} at {row.current_state}"
                    )
                    continue
                completed += 1
                one_pass = BIG_ORDER_HISTORY if order_id in observed.big else SMALL_ORDER_HISTORY
                if histories[row.id] != one_pass:
                    problems.append(
                        f"{order_id}: history of {row.id} differs from one pass through the "
                        f"saga: {history_diff(histories[row.id], one_pass)}"
                    )
                for kind in ("bridge.process.started", "bridge.process.succeeded"):
                    count = len(lifecycle.get((row.id, kind), ()))
                    if count != 1:
                        problems.append(f"{order_id}: {count} distinct {kind} lifecycle events")
        if lost:
            problems.append(f"{len(lost)} orders lost, first {lost[:5]}")
        strangers = set(by_order) - set(orders)
        if strangers:
            problems.append(f"processes for unknown keys {sorted(strangers)[:5]}")
        if backlog:
            problems.append(f"{backlog} outbox rows never published (or parked)")
        if inbox_rows != len(orders):
            problems.append(f"{inbox_rows} inbox marks for {len(orders)} events")
        for worker in self.workers:
            text = worker.text()
            if "giving up on an input" in text:
                problems.append(
                    f"worker {worker.name} gave up on inputs: {grep(text, 'giving up')}"
                )
            errors = sum(1 for line in text.splitlines() if " ERROR " in line)
            if errors:
                notes.append(f"{worker.name} logged {errors} ERROR lines")
        if observed.duplicate_replies_sent:
            notes.append(f"{observed.duplicate_replies_sent} replies sent twice by the services")
        rejected = {k: v for k, v in observed.approval_answers.items() if k != "200"}
        if rejected:
            notes.append(f"approval POST answers other than 200: {dict(rejected)}")

        recovery = all_done = None
        if fault_at is not None:
            after = fault_at if resume_after is None else resume_after
            later = [
                at
                for order_id, at in observed.completed_at.items()
                if (order_id in stuck if stuck is not None else at > after)
            ]
            recovery = min(later) - fault_at if later else None
            if observed.completed_at:
                all_done = max(observed.completed_at.values()) - fault_at
        return Result(
            scenario=scenario,
            events_in=len(orders),
            completed=completed,
            lost=lost,
            duplicated=duplicated,
            redelivered=redelivered,
            inbox_duplicates=inbox_duplicates,
            recovery_s=recovery,
            all_done_s=all_done,
            problems=problems,
            notes=notes,
        )
