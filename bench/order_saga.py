"""End-to-end bench of the order saga: throughput, latency, losses, duplicates, peak RSS.

    python bench/order_saga.py --orders 2000 --database sqlite
    python bench/order_saga.py --orders 2000 --database postgres --approval-share 0.1

Starts its own Tansu broker on a free port, a fresh database (a temporary SQLite file, or a fresh
PostgreSQL database on postgresql+asyncpg://postgres@127.0.0.1:5432 dropped at the end) and
``bridge dev --kafka ...`` as a subprocess (its stderr goes to a file whose path is printed). In
this process run the simulated services: inventory and payment answer every command at once on
bridge.replies, an approver bot POSTs {} to each approveUrl, a collector reads orders.done.
Then N OrderPlaced events are published flat out (or with at most --concurrency orders in flight)
and the figures are printed, followed by one line of JSON. Nothing here asserts on speed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bridge.broker import EmbeddedBroker, free_port

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
PG_SERVER = "postgresql+asyncpg://postgres@127.0.0.1:5432"

EVENTS = "orders.events"
INVENTORY = "inventory.commands"
PAYMENTS = "payments.commands"
REPLIES = "bridge.replies"
APPROVALS = "bridge.approvals"
DONE = "orders.done"
TOPICS = (EVENTS, INVENTORY, PAYMENTS, REPLIES, APPROVALS, DONE)
APPROVAL_THRESHOLD = 900


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
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=100, max_records=2000)
            records = [record for batch in batches.values() for record in batch]
            if records:
                await handle(records)
    finally:
        await consumer.stop()


def service(observed: Observed, producer: AIOKafkaProducer, kind: str, output: Any) -> Any:
    """A service that answers each new command (by ce_id) with a success reply at once."""

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
                await producer.send(REPLIES, json.dumps(reply).encode(), key=order_id.encode())
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


# --------------------------------------------------------------------- resources


class Resources:
    """Everything the bench starts, stopped by ``close`` whatever happened."""

    def __init__(self) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="bridge-bench-"))
        self.broker: EmbeddedBroker | None = None
        self.bridge: subprocess.Popen[bytes] | None = None
        self.bridge_log = self.workdir / "bridge.stderr.log"
        self.bridge_out = self.workdir / "bridge.stdout.log"
        self.pg_database: str | None = None
        self.group_id = f"bench-bridge-{uuid.uuid4().hex[:8]}"
        self.bridge_exit: int | None = None

    def start_broker(self) -> str:
        self.broker = EmbeddedBroker(free_port())
        self.broker.start()  # from the main thread: the broker dies with this process
        return self.broker.bootstrap

    def start_bridge(self, bootstrap: str, http_port: int, database_url: str) -> None:
        env = {
            **os.environ,
            "BRIDGE_DATABASE_URL": database_url,
            "BRIDGE_LOG_LEVEL": "WARNING",
            "BRIDGE_KAFKA_GROUP_ID": self.group_id,
        }
        env.pop("BRIDGE_KAFKA_BOOTSTRAP", None)
        # The order saga alone: the shipment follow-up example would start a second process
        # for every completed order and measure two things at once.
        definitions = self.workdir / "definitions"
        definitions.mkdir(exist_ok=True)
        shutil.copy(EXAMPLES / "order-saga.asl.yaml", definitions)
        command = [
            sys.executable,
            "-m",
            "bridge",
            "dev",
            "--kafka",
            bootstrap,
            "--port",
            str(http_port),
            "--database",
            database_url,
            "--definitions",
            str(definitions),
        ]
        self.bridge = subprocess.Popen(
            command,
            cwd=self.workdir,
            env=env,
            stdout=self.bridge_out.open("wb"),
            stderr=self.bridge_log.open("wb"),
            preexec_fn=_die_with_parent,
        )

    def stop_bridge(self) -> None:
        if self.bridge is None:
            return
        if self.bridge.poll() is None:
            self.bridge.send_signal(signal.SIGTERM)
            try:
                self.bridge.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.bridge.kill()
                self.bridge.wait()
        self.bridge_exit = self.bridge.returncode
        self.bridge = None

    def close(self) -> None:
        try:
            self.stop_bridge()
        finally:
            try:
                if self.broker is not None:
                    self.broker.stop()
                    Path(self.broker.log.name).unlink(missing_ok=True)
                    self.broker = None
            finally:
                if self.pg_database is not None:
                    try:
                        asyncio.run(asyncio.wait_for(drop_database(self.pg_database), 30))
                    except Exception as exc:
                        print(
                            f"could not drop database {self.pg_database}: {exc!r}", file=sys.stderr
                        )
                    self.pg_database = None
                shutil.rmtree(
                    Path(tempfile.gettempdir()) / "bridge-faust" / self.group_id, ignore_errors=True
                )
                for db_file in self.workdir.glob("bench.db*"):
                    db_file.unlink(missing_ok=True)  # the logs stay, for reading afterwards


def _die_with_parent() -> None:
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


async def _server_engine() -> Any:
    from sqlalchemy.ext.asyncio import create_async_engine

    return create_async_engine(f"{PG_SERVER}/postgres", isolation_level="AUTOCOMMIT")


async def create_database(name: str) -> None:
    from sqlalchemy import text

    engine = await _server_engine()
    try:
        async with engine.connect() as conn:
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        await engine.dispose()


async def drop_database(name: str) -> None:
    from sqlalchemy import text

    engine = await _server_engine()
    try:
        async with engine.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        await engine.dispose()


def cpu_seconds(pid: int) -> float | None:
    """User plus system CPU time of ``pid`` so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def peak_rss_mib(pid: int) -> float | None:
    """VmHWM of ``pid`` plus that of its live descendants, in MiB."""
    total_kib = 0
    seen = False
    stack = [pid]
    while stack:
        current = stack.pop()
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total_kib += int(line.split()[1])
                    seen = True
            for task in Path(f"/proc/{current}/task").iterdir():
                children = (task / "children").read_text().split()
                stack.extend(int(child) for child in children)
        except (OSError, ValueError):
            continue
    return round(total_kib / 1024, 1) if seen else None


# --------------------------------------------------------------------- the run


def percentile(sorted_values: list[float], share: float) -> float | None:
    if not sorted_values:
        return None
    index = min(len(sorted_values) - 1, max(0, round(share * len(sorted_values) + 0.5) - 1))
    return sorted_values[index]


async def wait_healthy(base_url: str, res: Resources, timeout: float) -> None:
    deadline = now() + timeout
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
        while now() < deadline:
            if res.bridge is None or res.bridge.poll() is not None:
                raise RuntimeError(
                    f"the bridge exited at start; see {res.bridge_log}:\n{tail(res.bridge_log)}"
                )
            try:
                async with session.get(f"{base_url}/healthz") as response:
                    if response.status == 200:
                        return
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(0.2)
    raise RuntimeError(f"the bridge was not healthy within {timeout}s; see {res.bridge_log}")


async def create_topics(bootstrap: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(topic, num_partitions=1, replication_factor=1) for topic in TOPICS]
        )
    finally:
        await admin.close()


def order_event(order_id: str, amount: float) -> bytes:
    return json.dumps(
        {
            "type": "OrderPlaced",
            "eventId": f"evt-{order_id}",
            "orderId": order_id,
            "amount": amount,
            "customerId": f"cust-{random.randrange(1000)}",
            "items": [{"sku": f"sku-{random.randrange(100)}", "qty": random.randint(1, 3)}],
        }
    ).encode()


async def run(args: argparse.Namespace, res: Resources) -> dict[str, Any]:
    started_wall = datetime.now(UTC)
    bootstrap = res.start_broker()
    await create_topics(bootstrap)
    if args.database == "postgres":
        res.pg_database = f"bridge_bench_{uuid.uuid4().hex[:10]}"
        await create_database(res.pg_database)
        database_url = f"{PG_SERVER}/{res.pg_database}"
    else:
        database_url = f"sqlite+aiosqlite:///{res.workdir / 'bench.db'}"
    http_port = free_port()
    base_url = f"http://127.0.0.1:{http_port}"
    res.start_bridge(bootstrap, http_port, database_url)
    assert res.bridge is not None
    bridge_pid = res.bridge.pid
    print(f"broker {bootstrap}, bridge pid {bridge_pid} on {base_url}, database {database_url}")
    print(f"bridge stderr: {res.bridge_log}")
    await wait_healthy(base_url, res, timeout=60)

    observed = Observed()
    stop = asyncio.Event()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False, linger_ms=2)
    await producer.start()
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
    approve = approver(observed, session, args.approver_concurrency)
    consumers = [
        asyncio.create_task(
            consume(
                bootstrap,
                (INVENTORY,),
                service(observed, producer, "ReserveInventory", lambda v: {"reserved": True}),
                stop,
            )
        ),
        asyncio.create_task(
            consume(
                bootstrap,
                (PAYMENTS,),
                service(
                    observed, producer, "ChargePayment", lambda v: {"charged": v.get("amount")}
                ),
                stop,
            )
        ),
        asyncio.create_task(consume(bootstrap, (APPROVALS,), approve, stop)),
        asyncio.create_task(consume(bootstrap, (DONE,), collector(observed), stop)),
    ]

    async def watch_bridge() -> None:
        # Polled, not waited on, so that the subprocess stays the Resources' to stop.
        while res.bridge is not None and res.bridge.poll() is None:
            await asyncio.sleep(0.2)
        observed.bridge_exited_at = now()
        observed.done_event.set()  # stop waiting: nothing more will complete

    watcher = asyncio.create_task(watch_bridge())
    try:
        # Warm-up: one order end to end, so that group joins are not part of the figures.
        warm = f"warmup-{uuid.uuid4().hex[:8]}"
        observed.expected = {warm}
        await (await producer.send(EVENTS, order_event(warm, 10.0), key=warm.encode()))
        t0 = now()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(observed.done_event.wait(), args.startup_timeout)
        if warm not in observed.completed_at:
            raise RuntimeError(
                f"the warm-up order did not complete within {args.startup_timeout}s "
                f"(seen: {dict((k, len(v)) for k, v in observed.first_seen.items())}); "
                f"see {res.bridge_log}:\n{tail(res.bridge_log)}"
            ) from None
        warmup_s = now() - t0
        for kind in list(observed.first_seen):
            observed.first_seen[kind].pop(warm, None)
        observed.per_order.pop(warm, None)
        observed.completions.pop(warm, None)
        observed.completed_at.pop(warm, None)
        observed.done_event.clear()

        ids = [f"o-{i:06d}-{uuid.uuid4().hex[:6]}" for i in range(args.orders)]
        big = set(random.sample(ids, round(args.orders * args.approval_share)))
        observed.expected = set(ids)
        observed.needs_approval = big
        if args.concurrency:
            observed.slots = asyncio.Semaphore(args.concurrency)
        acks = []
        stalled_send = False
        rss_before = peak_rss_mib(bridge_pid)
        cpu_before = cpu_seconds(bridge_pid)
        own_cpu_before = time.process_time()
        for order_id in ids:
            if observed.slots is not None:
                try:
                    await asyncio.wait_for(observed.slots.acquire(), args.timeout)
                except TimeoutError:
                    stalled_send = True
                    break
            amount = (
                round(random.uniform(APPROVAL_THRESHOLD, 2000), 2)
                if order_id in big
                else round(random.uniform(10, APPROVAL_THRESHOLD - 1), 2)
            )
            observed.sent_at[order_id] = now()
            acks.append(
                await producer.send(EVENTS, order_event(order_id, amount), key=order_id.encode())
            )
        await asyncio.gather(*acks)
        last_send = now()
        sent = len(observed.sent_at)
        observed.expected = set(observed.sent_at)
        if observed.expected.issubset(observed.completed_at.keys()):
            observed.done_event.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(observed.done_event.wait(), args.timeout)
        # A little longer, to catch late duplicates.
        await asyncio.sleep(args.settle)
        if approve.tasks:
            await asyncio.wait(approve.tasks, timeout=10)
        lost = sorted(observed.expected - observed.completed_at.keys())
        diagnosis = await diagnose(base_url, observed, lost) if lost else None
        rss_peak = peak_rss_mib(bridge_pid)
        cpu_after = cpu_seconds(bridge_pid)
        own_cpu = time.process_time() - own_cpu_before
        bridge_alive = res.bridge is not None and res.bridge.poll() is None
    finally:
        stop.set()
        watcher.cancel()
        await asyncio.gather(*consumers, watcher, return_exceptions=True)
        await session.close()
        await producer.stop()

    completed_ids = [o for o in observed.sent_at if o in observed.completed_at]
    latencies = sorted(
        (observed.completed_at[o] - observed.sent_at[o]) * 1000 for o in completed_ids
    )
    first_send = min(observed.sent_at.values()) if observed.sent_at else last_send
    last_done = max((observed.completed_at[o] for o in completed_ids), default=first_send)
    window = last_done - first_send
    expected_kinds = {"ReserveInventory": 1, "ChargePayment": 1, "approval": 1, "completed": 1}
    extra_commands: dict[str, int] = {}
    redeliveries: dict[str, int] = {}
    for kind in expected_kinds:
        redeliveries[kind] = sum(count - 1 for count in observed.deliveries[kind].values())
        extra_commands[kind] = sum(
            max(0, len(observed.per_order[o][kind]) - 1) for o in observed.sent_at
        )
    unexpected_approvals = sum(
        1 for o in observed.sent_at if o not in big and observed.per_order[o]["approval"]
    )
    stages = stage_latencies(observed, big)
    result: dict[str, Any] = {
        "date": started_wall.isoformat(timespec="seconds"),
        "database": args.database,
        "orders_sent": sent,
        "needing_approval": len(big & observed.sent_at.keys()),
        "concurrency": args.concurrency or None,
        "completed": len(completed_ids),
        "completed_per_s": round(len(completed_ids) / window, 1) if window > 0 else None,
        "window_s": round(window, 2),
        "send_s": round(last_send - first_send, 2),
        "latency_ms": {
            "p50": _round(percentile(latencies, 0.50)),
            "p95": _round(percentile(latencies, 0.95)),
            "p99": _round(percentile(latencies, 0.99)),
            "max": _round(latencies[-1] if latencies else None),
        },
        "stage_p50_ms": stages,
        "lost": len(lost),
        "timeout_s": args.timeout,
        "duplicated_completions": sum(1 for o in observed.sent_at if observed.completions[o] > 1),
        "redelivered_messages_same_ce_id": redeliveries,
        "extra_distinct_messages_per_order": extra_commands,
        "unexpected_approvals": unexpected_approvals,
        "replies_sent": observed.replies_sent,
        "approvals_posted": observed.approvals_posted,
        "approval_failures": dict(observed.approval_failures),
        "stray_records": dict(observed.stray),
        "bridge_peak_rss_mib": rss_peak,
        "bridge_rss_after_warmup_mib": rss_before,
        "bridge_cpu_s": round(cpu_after - cpu_before, 1)
        if cpu_after is not None and cpu_before is not None
        else None,
        "bench_cpu_s": round(own_cpu, 1),
        "warmup_s": round(warmup_s, 2),
        "stalled_send": stalled_send,
        "bridge_alive_at_end": bridge_alive,
        "bridge_exited_s_after_first_send": None
        if observed.bridge_exited_at is None
        else round(observed.bridge_exited_at - first_send, 2),
        "bridge_log": str(res.bridge_log),
    }
    if diagnosis is not None:
        result["lost_diagnosis"] = diagnosis
    return result


def stage_latencies(observed: Observed, big: set[str]) -> dict[str, float | None]:
    """Median time of each hop, from when the bench saw one message to when it saw the next."""
    seen = observed.first_seen
    hops = {
        "event->ReserveInventory": (observed.sent_at, seen["ReserveInventory"], None),
        "ReserveInventory->ChargePayment": (seen["ReserveInventory"], seen["ChargePayment"], None),
        "ChargePayment->completed": (seen["ChargePayment"], observed.completed_at, False),
        "ChargePayment->approval": (seen["ChargePayment"], seen["approval"], True),
        "approval->completed": (seen["approval"], observed.completed_at, True),
    }
    medians: dict[str, float | None] = {}
    for name, (start, end, approval) in hops.items():
        values = sorted(
            (end[o] - start[o]) * 1000
            for o in observed.sent_at
            if o in start and o in end and (approval is None or (o in big) == approval)
        )
        medians[name] = _round(percentile(values, 0.5))
    return medians


async def diagnose(base_url: str, observed: Observed, lost: list[str]) -> dict[str, Any]:
    """Where the lost orders stand: which messages the services saw, the bridge's view."""
    steps: Counter[str] = Counter()
    for order_id in lost:
        kinds = observed.per_order.get(order_id, {})
        seen = [k for k in ("ReserveInventory", "ChargePayment", "approval") if kinds.get(k)]
        steps["saw " + ("+".join(seen) if seen else "nothing")] += 1
    states: Counter[str] = Counter()
    samples: list[dict[str, Any]] = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        for order_id in lost[:200]:
            try:
                async with session.get(
                    f"{base_url}/processes", params={"correlationKey": order_id}
                ) as r:
                    items = (await r.json()).get("items", []) if r.status == 200 else None
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                states[f"query failed: {type(exc).__name__}"] += 1
                continue
            if items is None:
                states["query failed"] += 1
            elif not items:
                states["no process"] += 1
            else:
                p = items[0]
                states[f"{p['status']} at {p['currentState'] or p['lastState']}"] += 1
                if len(samples) < 3:
                    samples.append(
                        {
                            "orderId": order_id,
                            "process": p["id"],
                            "status": p["status"],
                            "state": p["currentState"] or p["lastState"],
                            "error": p["error"],
                        }
                    )
    return {
        "services_saw": dict(steps),
        "bridge_says": dict(states),
        "samples": samples,
        "first_lost": lost[:5],
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def report(r: dict[str, Any]) -> None:
    lat = r["latency_ms"]
    pace = f"at most {r['concurrency']} in flight" if r["concurrency"] else "flat out"
    lines = [
        "",
        f"order saga bench, {r['database']}, {r['date']}",
        f"  orders sent          {r['orders_sent']} ({r['needing_approval']} need approval), "
        f"{pace}, sent in {r['send_s']} s",
        f"  completed            {r['completed']}",
        f"  completed orders/s   {r['completed_per_s']} "
        f"(over {r['window_s']} s, first send to last completion)",
        f"  latency ms           p50 {lat['p50']}  p95 {lat['p95']}  p99 {lat['p99']}  "
        f"max {lat['max']}",
        f"  median per hop ms    {r['stage_p50_ms']}",
        f"  lost orders          {r['lost']} "
        f"(not completed {r['timeout_s']} s after the last send)",
        f"  duplicated completions         {r['duplicated_completions']}",
        f"  redeliveries (same ce_id)      {r['redelivered_messages_same_ce_id']}",
        f"  extra distinct msgs per order  {r['extra_distinct_messages_per_order']}, "
        f"approvals for small orders {r['unexpected_approvals']}",
    ]
    if r["approval_failures"] or r["stray_records"]:
        lines.append(
            f"  approval failures {r['approval_failures']}, stray records {r['stray_records']}"
        )
    lines += [
        f"  bridge peak RSS      {r['bridge_peak_rss_mib']} MiB "
        f"(after warm-up {r['bridge_rss_after_warmup_mib']} MiB)",
        f"  CPU seconds          bridge {r['bridge_cpu_s']}, bench {r['bench_cpu_s']}",
    ]
    if "lost_diagnosis" in r:
        lines.append(f"  LOST: {json.dumps(r['lost_diagnosis'])}")
    if not r["bridge_alive_at_end"]:
        lines.append(
            f"  THE BRIDGE EXITED {r['bridge_exited_s_after_first_send']} s after the first send "
            f"with code {r.get('bridge_exit_code')} (0 and 'stopping...' on its stderr: it got "
            "SIGTERM/SIGINT)"
        )
    lines.append(f"  bridge stderr        {r['bridge_log']}")
    print("\n".join(lines))
    print(json.dumps(r, separators=(",", ":")))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=2000)
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument(
        "--approval-share",
        type=float,
        default=0.1,
        help="share of orders with amount >= 900, which need an approval",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=0,
        help="at most this many orders in flight (default 0: publish flat out)",
    )
    parser.add_argument(
        "--approver-concurrency",
        type=int,
        default=16,
        help="parallel approval POSTs of the approver bot",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        help="seconds after the last send before a missing completion counts as lost",
    )
    parser.add_argument(
        "--settle",
        type=float,
        default=2.0,
        help="seconds to keep listening after the last completion, for duplicates",
    )
    parser.add_argument("--startup-timeout", type=float, default=60.0)
    parser.add_argument("--deadline", type=float, default=900.0, help="hard limit on the whole run")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    if not 0 <= args.approval_share <= 1 or args.orders < 1:
        parser.error("--orders >= 1 and 0 <= --approval-share <= 1")
    if args.seed is not None:
        random.seed(args.seed)

    def terminate(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # also when started in the background
    res = Resources()
    code = 0
    result = None
    try:
        result = asyncio.run(asyncio.wait_for(run(args, res), args.deadline))
    except KeyboardInterrupt:
        print("interrupted; cleaning up", file=sys.stderr)
        code = 130
    except TimeoutError:
        print(f"the bench hit its deadline of {args.deadline}s; cleaning up", file=sys.stderr)
        code = 2
    except Exception as exc:
        print(f"bench failed: {exc}", file=sys.stderr)
        code = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # let cleanup finish
        res.close()
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if result is not None:
        result["bridge_exit_code"] = res.bridge_exit
        report(result)
        if res.bridge_exit not in (0, None):
            print(f"the bridge exited with {res.bridge_exit}; stderr tail:\n{tail(res.bridge_log)}")
    elif code:
        print(f"bridge stderr ({res.bridge_log}) tail:\n{tail(res.bridge_log)}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
