"""End-to-end bench of the order saga: throughput, latency, losses, duplicates, CPU, RSS, rows.

    python bench/order_saga.py --orders 2000 --database sqlite
    python bench/order_saga.py --orders 2000 --database postgres --approval-share 0.1
    python bench/order_saga.py --orders 2000 --database postgres --shape production --workers 2
    python bench/order_saga.py --rate 50 --duration 60 --database postgres --shape production

Starts its own Tansu broker on a free port (or uses ``--kafka BOOTSTRAP``, with topic names of
the run's own), a fresh database (a temporary SQLite file, or a fresh PostgreSQL database on
postgresql+asyncpg://postgres@127.0.0.1:5432 dropped at the end) and the bridge as subprocesses
(their output goes to files whose paths are printed): ``--shape dev`` (the default) runs ``bridge
dev --kafka ...``; ``--shape production`` runs ``bridge db upgrade``, then ``--workers N``
``bridge worker`` processes in one consumer group and one ``bridge web``. In this process run the
simulated services: inventory and payment answer every command at once on
bridge.replies, an approver bot POSTs {} to each approveUrl, a collector reads orders.done.
Then N OrderPlaced events are published flat out (or with at most --concurrency orders in flight,
or open loop: --rate R per second for --duration S seconds on a fixed schedule, latency counted
from the scheduled time) and the figures are printed, followed by one line of JSON. Besides
throughput and latency: CPU seconds of the bridge processes, PostgreSQL and the broker, peak RSS
per bridge process and, on PostgreSQL, rows written and transactions per order. Nothing here
asserts on speed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import sys
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pgstats
from aiokafka import AIOKafkaProducer
from processes import Usage, cpu_split
from saga_figures import (
    diagnose,
    latency_windows,
    per_order_ms,
    percentile,
    report,
    rounded,
    stage_latencies,
    summed,
)
from saga_services import Observed, SagaTopics, Services, now
from stack import Resources, create_topics, env_pair, open_database, run_to_end, wait_ready

from bridge.broker import free_port

ROOT = Path(__file__).resolve().parent.parent


def shipped_partitions() -> int:
    """The partitions of the topics the bridge creates in the production layout it ships
    (``BRIDGE_KAFKA_TOPIC_PARTITIONS`` in ``docker-compose.yml``)."""
    import yaml

    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return int(compose["x-bridge-env"]["BRIDGE_KAFKA_TOPIC_PARTITIONS"])


EXAMPLES = ROOT / "examples"

APPROVAL_THRESHOLD = 900


# --------------------------------------------------------------------- the run


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


def order_amount(big: bool) -> float:
    if big:
        return round(random.uniform(APPROVAL_THRESHOLD, 2000), 2)
    return round(random.uniform(10, APPROVAL_THRESHOLD - 1), 2)


async def watch_bridge(res: Resources, observed: Observed) -> None:
    # Polled, not waited on, so that the subprocesses stay the Resources' to stop.
    while res.all_alive():
        await asyncio.sleep(0.2)
    observed.bridge_exited_at = now()
    observed.done_event.set()  # stop waiting: nothing more will complete


async def warm_up(
    args: argparse.Namespace, res: Resources, observed: Observed, producer: AIOKafkaProducer
) -> float:
    """One order end to end per partition, so that group joins are not part of the figures;
    how long it took. The warm-up orders are then forgotten."""
    warm = [f"warmup-{uuid.uuid4().hex[:8]}" for _ in range(args.partitions)]
    observed.expected = set(warm)
    t0 = now()
    for partition, order_id in enumerate(warm):
        await (
            await producer.send(
                args.topics.events,
                order_event(order_id, 10.0),
                key=order_id.encode(),
                partition=partition,
            )
        )
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(observed.done_event.wait(), args.startup_timeout)
    if not observed.expected.issubset(observed.completed_at.keys()):
        raise RuntimeError(
            f"the warm-up orders did not complete within {args.startup_timeout}s "
            f"(seen: {dict((k, len(v)) for k, v in observed.first_seen.items())}):\n"
            f"{res.tails()}"
        ) from None
    warmup_s = now() - t0
    for order_id in warm:
        for kind in list(observed.first_seen):
            observed.first_seen[kind].pop(order_id, None)
        observed.per_order.pop(order_id, None)
        observed.completions.pop(order_id, None)
        observed.completed_at.pop(order_id, None)
    observed.done_event.clear()
    return warmup_s


async def publish_closed(
    args: argparse.Namespace,
    observed: Observed,
    producer: AIOKafkaProducer,
    ids: list[str],
    big: set[str],
) -> bool:
    """Flat out, or at most ``--concurrency`` in flight; True when sending stalled (no order
    completed within ``--timeout`` while all slots were taken)."""
    if args.concurrency:
        observed.slots = asyncio.Semaphore(args.concurrency)
    acks = []
    stalled = False
    for order_id in ids:
        if observed.slots is not None:
            try:
                await asyncio.wait_for(observed.slots.acquire(), args.timeout)
            except TimeoutError:
                stalled = True
                break
        event = order_event(order_id, order_amount(order_id in big))
        observed.sent_at[order_id] = now()
        acks.append(await producer.send(args.topics.events, event, key=order_id.encode()))
    await asyncio.gather(*acks)
    return stalled


async def publish_open(
    args: argparse.Namespace,
    observed: Observed,
    producer: AIOKafkaProducer,
    ids: list[str],
    big: set[str],
) -> list[float]:
    """Open loop: order i is due at start + i / ``--rate``, whatever completed. Its latency
    counts from when it was due, so a bench that falls behind does not hide the queueing. How
    late each send was (ms)."""
    start = now()
    behind = []
    acks = []
    for index, order_id in enumerate(ids):
        due = start + index / args.rate
        if due > now():
            await asyncio.sleep(due - now())
        event = order_event(order_id, order_amount(order_id in big))
        observed.sent_at[order_id] = due
        behind.append((now() - due) * 1000)
        acks.append(await producer.send(args.topics.events, event, key=order_id.encode()))
    await asyncio.gather(*acks)
    return sorted(behind)


async def wait_completions(args: argparse.Namespace, observed: Observed, approve: Any) -> None:
    """Until every order sent completed (at most ``--timeout``), then ``--settle`` longer, to
    catch late duplicates."""
    observed.expected = set(observed.sent_at)
    if observed.expected.issubset(observed.completed_at.keys()):
        observed.done_event.set()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(observed.done_event.wait(), args.timeout)
    await asyncio.sleep(args.settle)
    if approve.tasks:
        await asyncio.wait(approve.tasks, timeout=10)


@dataclass
class Measured:
    """What the bench reads outside the message flow, before the first send and at the end."""

    rss_before: dict[str, float | None] = field(default_factory=dict)
    rss_peak: dict[str, float | None] = field(default_factory=dict)
    usage_before: Usage | None = None
    usage_after: Usage | None = None
    pg_before: pgstats.PgSnapshot | None = None
    pg_after: pgstats.PgSnapshot | None = None
    behind_ms: list[float] | None = None
    stalled_send: bool = False
    group: str = ""
    warmup_s: float = 0.0
    last_send: float = 0.0
    alive_at_end: bool = False
    #: CPU seconds per process over ``--idle`` seconds with nothing to do, after the run.
    idle_cpu_s: dict[str, float | None] = field(default_factory=dict)


async def run(args: argparse.Namespace, res: Resources) -> dict[str, Any]:
    started_wall = datetime.now(UTC)
    bootstrap = args.kafka or res.start_broker()
    await create_topics(bootstrap, args.partitions, args.topics.all)
    database_url = await open_database(args.database, res)
    postgres = args.database == "postgres"
    http_port = free_port()
    base_url = f"http://127.0.0.1:{http_port}"
    extra_env = {**args.topics.bridge_env(), **dict(args.env)}
    if args.shape == "production":
        extra_env.setdefault("BRIDGE_KAFKA_TOPIC_PARTITIONS", str(args.partitions))
        res.start_production(bootstrap, http_port, database_url, args.workers, extra_env)
    else:
        res.start_dev(bootstrap, http_port, database_url, extra_env)
    pids = ", ".join(f"{name} {pid}" for name, pid in res.pids().items())
    print(f"broker {bootstrap}, bridge pids: {pids}, on {base_url}, database {database_url}")
    print(f"bridge logs: {res.workdir}")
    measured = Measured(group=await wait_ready(args.startup_timeout, res, base_url, bootstrap))

    observed = Observed()
    services = await Services.start(bootstrap, observed, args.approver_concurrency, args.topics)
    watcher = asyncio.create_task(watch_bridge(res, observed))
    try:
        measured.warmup_s = await warm_up(args, res, observed, services.producer)
        count = round(args.rate * args.duration) if args.rate else args.orders
        ids = [f"o-{i:06d}-{uuid.uuid4().hex[:6]}" for i in range(count)]
        big = set(random.sample(ids, round(count * args.approval_share)))
        observed.expected = set(ids)
        observed.needs_approval = big
        measured.rss_before = res.peak_rss()
        if postgres:
            measured.pg_before = await pgstats.snapshot(database_url)
        measured.usage_before = res.usage(postgres=postgres)
        if args.rate:
            measured.behind_ms = await publish_open(args, observed, services.producer, ids, big)
        else:
            measured.stalled_send = await publish_closed(
                args, observed, services.producer, ids, big
            )
        measured.last_send = now()
        await wait_completions(args, observed, services.approve)
        measured.usage_after = res.usage(postgres=postgres)
        measured.rss_peak = res.peak_rss()
        if args.idle:
            await asyncio.sleep(1.0)  # the last batch's pollers and commits die down
            before_idle = res.usage(postgres=postgres)
            await asyncio.sleep(args.idle)
            measured.idle_cpu_s = cpu_split(before_idle, res.usage(postgres=postgres))
        measured.alive_at_end = res.all_alive()
        lost = sorted(observed.expected - observed.completed_at.keys())
        diagnosis = await diagnose(base_url, observed, lost) if lost else None
    finally:
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
        await services.close()
    # The bridge's database backends flush their statistics when they end.
    res.stop_bridges()
    if measured.pg_before is not None:
        await asyncio.sleep(0.5)
        measured.pg_after = await pgstats.snapshot(database_url)
    result = figures(args, res, observed, measured, big, lost)
    result["date"] = started_wall.isoformat(timespec="seconds")
    if diagnosis is not None:
        result["lost_diagnosis"] = diagnosis
    return result


def figures(
    args: argparse.Namespace,
    res: Resources,
    observed: Observed,
    measured: Measured,
    big: set[str],
    lost: list[str],
) -> dict[str, Any]:
    """The figures of a run, as printed and as the JSON line."""
    completed_ids = [o for o in observed.sent_at if o in observed.completed_at]
    latencies = sorted(
        (observed.completed_at[o] - observed.sent_at[o]) * 1000 for o in completed_ids
    )
    first_send = min(observed.sent_at.values(), default=measured.last_send)
    if args.latencies is not None:
        with args.latencies.open("w") as out:
            out.write("sent_s,latency_ms,approval\n")
            for o in sorted(completed_ids, key=observed.sent_at.__getitem__):
                latency = (observed.completed_at[o] - observed.sent_at[o]) * 1000
                out.write(f"{observed.sent_at[o] - first_send:.3f},{latency:.1f},{int(o in big)}\n")
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
    cpu = (
        cpu_split(measured.usage_before, measured.usage_after)
        if measured.usage_before is not None and measured.usage_after is not None
        else {}
    )
    result: dict[str, Any] = {
        "date": None,
        "database": args.database,
        "shape": args.shape,
        "workers": args.workers if args.shape == "production" else None,
        "partitions": args.partitions,
        "consumer_group": measured.group,
        "orders_sent": len(observed.sent_at),
        "needing_approval": len(big & observed.sent_at.keys()),
        "concurrency": args.concurrency or None,
        "rate_per_s": args.rate or None,
        "duration_s": args.duration if args.rate else None,
        "send_behind_schedule_ms": None
        if measured.behind_ms is None
        else {
            "p50": rounded(percentile(measured.behind_ms, 0.50)),
            "p99": rounded(percentile(measured.behind_ms, 0.99)),
            "max": rounded(max(measured.behind_ms, default=None)),
        },
        "completed": len(completed_ids),
        "completed_per_s": round(len(completed_ids) / window, 1) if window > 0 else None,
        "window_s": round(window, 2),
        "send_s": round(measured.last_send - first_send, 2),
        "latency_ms": {
            "p50": rounded(percentile(latencies, 0.50)),
            "p95": rounded(percentile(latencies, 0.95)),
            "p99": rounded(percentile(latencies, 0.99)),
            "max": rounded(latencies[-1] if latencies else None),
        },
        "stage_p50_ms": stage_latencies(observed, big),
        "latency_windows_ms": latency_windows(observed, first_send) if args.rate else [],
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
        "bridge_peak_rss_mib": summed(measured.rss_peak.values()),
        "bridge_rss_after_warmup_mib": summed(measured.rss_before.values()),
        "bridge_peak_rss_mib_by_process": measured.rss_peak,
        "bridge_cpu_s": rounded(cpu.get("bridge")),
        "bench_cpu_s": rounded(cpu.get("bench")),
        "cpu_s": cpu,
        "cpu_ms_per_order": per_order_ms(cpu, len(completed_ids)),
        "postgres": pgstats.per_order(measured.pg_before, measured.pg_after, len(completed_ids))
        if measured.pg_before is not None and measured.pg_after is not None
        else None,
        "warmup_s": round(measured.warmup_s, 2),
        "idle_s": args.idle,
        "idle_cpu_percent_of_a_core": {
            name: None if seconds is None else round(100 * seconds / args.idle, 2)
            for name, seconds in measured.idle_cpu_s.items()
        }
        if args.idle
        else None,
        "stalled_send": measured.stalled_send,
        "bridge_alive_at_end": measured.alive_at_end,
        "bridge_exited_s_after_first_send": None
        if observed.bridge_exited_at is None
        else round(observed.bridge_exited_at - first_send, 2),
        "bridge_log": str(res.bridge_log),
        "bridge_logs": {name: str(p.log) for name, p in res.bridges.items()},
    }
    return result


def main() -> int:
    args = parse_args()
    if args.seed is not None:
        random.seed(args.seed)
    # The order saga alone: the shipment follow-up example would start a second process for
    # every completed order and measure two things at once.
    saga = args.topics.definition((EXAMPLES / "order-saga.asl.yaml").read_text())
    res = Resources({"order-saga.asl.yaml": saga})
    result, code = run_to_end(lambda started: run(args, started), res, args.deadline)
    if result is not None:
        result["bridge_exit_code"] = res.exit_code
        result["bridge_exit_codes"] = res.exit_codes
        report(result)
        if res.exit_code not in (0, None):
            print(f"a bridge process exited with {res.exit_codes}; log tails:\n{res.tails()}")
    return code


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=2000)
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument(
        "--shape",
        choices=("dev", "production"),
        default="dev",
        help="dev: one `bridge dev` process; production: `bridge worker` x --workers and one "
        "`bridge web`, separate processes",
    )
    parser.add_argument(
        "--workers", type=int, default=1, help="bridge worker processes (production shape)"
    )
    parser.add_argument(
        "--partitions",
        type=int,
        default=None,
        help="partitions of every topic (default in the production shape: as many as "
        "docker-compose.yml gives the topics the bridge creates, or one per worker if more; "
        "1 in the dev shape, as `bridge dev` makes them)",
    )
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
        "--rate",
        type=float,
        default=0.0,
        help="open loop: publish this many orders per second on a fixed schedule, whatever "
        "completes (with --duration; --orders is then rate x duration)",
    )
    parser.add_argument("--duration", type=float, default=0.0, help="seconds of --rate")
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
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        type=env_pair,
        metavar="NAME=VALUE",
        help="a setting for the bridge processes (repeatable), e.g. BRIDGE_RELAY_POLL_MS=20",
    )
    parser.add_argument(
        "--idle",
        type=float,
        default=0.0,
        help="after the run, measure each process's CPU over this many seconds with no orders",
    )
    parser.add_argument(
        "--kafka",
        metavar="BOOTSTRAP",
        default=None,
        help="run against this Kafka cluster instead of a Tansu broker of the bench's own; the "
        "run's topics get a suffix of their own, and the broker's CPU is not measured",
    )
    parser.add_argument("--startup-timeout", type=float, default=60.0)
    parser.add_argument("--deadline", type=float, default=900.0, help="hard limit on the whole run")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument(
        "--latencies",
        type=Path,
        default=None,
        help="write each order's send offset (s), latency (ms) and approval flag to this CSV",
    )
    args = parser.parse_args()
    if not 0 <= args.approval_share <= 1 or args.orders < 1:
        parser.error("--orders >= 1 and 0 <= --approval-share <= 1")
    if args.workers < 1 or (args.workers > 1 and args.shape != "production"):
        parser.error("--workers N (N >= 1) needs --shape production")
    open_loop = args.rate > 0 or args.duration > 0
    if open_loop and (args.rate <= 0 or round(args.rate * args.duration) < 1):
        parser.error("--rate R and --duration S go together (R, S > 0, at least one order)")
    if args.rate and args.concurrency:
        parser.error("--rate (open loop) and --concurrency (closed loop) exclude each other")
    if args.partitions is None:
        production = args.shape == "production"
        args.partitions = max(shipped_partitions(), args.workers) if production else 1
    if args.partitions < 1:
        parser.error("--partitions >= 1")
    # On a shared cluster every run reads and writes topics of its own.
    args.topics = SagaTopics(uuid.uuid4().hex[:8] if args.kafka else "")
    return args


if __name__ == "__main__":
    sys.exit(main())
