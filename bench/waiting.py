"""Many waiting processes: the bridge's memory and callback latency with N processes waiting.

    python bench/waiting.py --processes 20000 --database postgres
    python bench/waiting.py --processes 100000 --rate 100 --duration 30
    python bench/waiting.py --processes 5000 --database sqlite --channel kafka

The production shape of ``order_saga.py --shape production`` (see ``stack.py``): a Tansu broker,
a fresh database, ``bridge db upgrade``, one ``bridge worker`` and one ``bridge web``. The
bridge loads one definition: a ``WaitStarted`` event on waits.events starts a process that sends
a command carrying its task token to waits.commands and waits for the answer (a week's
TimeoutSeconds, so nothing times out during the bench); answered, the process succeeds.

1. Fill: publish the start events flat out (or ``--fill-rate`` per second), first ``--small``
   of them, then the rest up to ``--processes`` in ``--stages`` parts; each stage ends when the
   command of every process was read back (the bench keeps the task tokens). Prints each
   stage's time and rate.
2. Memory: VmRSS and VmHWM of the worker and the web process after the warm-up and after each
   stage (each after ``--settle`` seconds of quiet), and the database size, so that growth with
   the number of waiting processes shows.
3. Callbacks: ``--rate`` answers per second for ``--duration`` seconds to random waiting
   processes, open loop (answer i is due at start + i / rate, whatever came back). Over HTTP
   (``POST /tasks/{token}/success`` on ``bridge web``) the response time counts from the due
   time; over Kafka (a reply on bridge.replies) only the completion counts. Either way the
   completion is when the bench reads the process's ``bridge.process.succeeded`` lifecycle event.
   Prints p50/p95/p99/max, errors, and CPU per callback of each process.

Then one line of JSON. Nothing here asserts on speed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from processes import Usage, cpu_split, peak_rss_mib, rss_mib
from saga_figures import percentile, rounded
from saga_services import consume, hand_over, header, now
from stack import Resources, create_topics, env_pair, open_database, run_to_end, wait_ready

from bridge.broker import free_port

EVENTS = "waits.events"
COMMANDS = "waits.commands"
REPLIES = "bridge.replies"
LIFECYCLE = "bridge.lifecycle"
TOPICS = (EVENTS, COMMANDS, REPLIES, LIFECYCLE)
SUCCEEDED = "bridge.process.succeeded"

DEFINITION = """\
Comment: >
  Waits for a callback: sends a command with its task token and succeeds with the answer.
Triggers:
  - Topic: waits.events
    EventType: WaitStarted
    CorrelationKey: $.waitId
    EventId: $.eventId
StartAt: WaitForCallback
States:
  WaitForCallback:
    Type: Task
    Resource: bridge:kafka:send.waitForTaskToken
    Parameters:
      Topic: waits.commands
      Key.$: $.waitId
      Message:
        type: CallMeBack
        waitId.$: $.waitId
        taskToken.$: $$.Task.Token
    ResultPath: $.answer
    TimeoutSeconds: 604800
    End: true
"""


# --------------------------------------------------------------------- what the bench sees


@dataclass
class Seen:
    """Task tokens read from the commands, and completions read from the lifecycle topic."""

    tokens: dict[str, str] = field(default_factory=dict)  # waitId -> task token
    commands: int = 0  # command records read, copies included
    stray: int = 0
    completed_at: dict[str, float] = field(default_factory=dict)  # waitId -> when seen
    completions: int = 0  # succeeded events read, copies included

    async def on_commands(self, records: list[Any]) -> None:
        for record in records:
            self.commands += 1
            try:
                value = json.loads(record.value)
                self.tokens.setdefault(str(value["waitId"]), str(value["taskToken"]))
            except (ValueError, KeyError, TypeError):
                self.stray += 1

    async def on_lifecycle(self, records: list[Any]) -> None:
        at = now()
        for record in records:
            if header(record, "ce_type") != SUCCEEDED:
                continue
            try:
                wait_id = str(json.loads(record.value)["correlationKey"])
            except (ValueError, KeyError, TypeError):
                self.stray += 1
                continue
            self.completions += 1
            self.completed_at.setdefault(wait_id, at)


async def tail_topic(
    bootstrap: str, topic: str, handle: Any, stop: asyncio.Event, ready: asyncio.Event
) -> None:
    """Read ``topic`` from its current end (no group): the fill's lifecycle events are not
    read, so the bench spends no CPU on them while the bridge fills."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, fetch_max_wait_ms=10)
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic) or {0}
        assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(assigned)
        await consumer.seek_to_end(*assigned)
        for tp in assigned:
            await consumer.position(tp)  # resolves the end now, before callbacks go out
        ready.set()
        await hand_over(consumer, handle, stop)
    finally:
        await consumer.stop()


# --------------------------------------------------------------------- phase 1: the fill


def start_event(wait_id: str) -> bytes:
    return json.dumps(
        {"type": "WaitStarted", "eventId": f"evt-{wait_id}", "waitId": wait_id}
    ).encode()


@dataclass
class Stage:
    """One stage of the fill: how many processes, how long until all their commands were read."""

    processes: int
    seconds: float
    send_seconds: float
    missing: int

    def figures(self) -> dict[str, Any]:
        return {
            "processes": self.processes,
            "seconds": round(self.seconds, 2),
            "per_s": round(self.processes / self.seconds, 1) if self.seconds > 0 else None,
            "send_seconds": round(self.send_seconds, 2),
            "missing": self.missing,
        }


async def fill(
    producer: AIOKafkaProducer, seen: Seen, ids: list[str], stall: float, rate: float = 0.0
) -> Stage:
    """Publish a start event per id, flat out or (``rate`` > 0) event i at start + i / rate;
    return once every id's token was read, or when none came for ``stall`` seconds."""
    t0 = now()
    acks = []
    for index, wait_id in enumerate(ids):
        if rate > 0 and (ahead := t0 + index / rate - now()) > 0:
            await asyncio.sleep(ahead)
        acks.append(await producer.send(EVENTS, start_event(wait_id), key=wait_id.encode()))
    await asyncio.gather(*acks)
    sent = now() - t0
    target = set(ids)
    have, last_progress = 0, now()
    while have < len(ids) and now() - last_progress < stall:
        await asyncio.sleep(0.1)
        count = sum(1 for i in target if i in seen.tokens)
        if count > have:
            have, last_progress = count, now()
    return Stage(
        len(ids), (last_progress if have < len(ids) else now()) - t0, sent, len(ids) - have
    )


# --------------------------------------------------------------------- phase 2: memory


def memory(res: Resources) -> dict[str, dict[str, float | None]]:
    """VmRSS and VmHWM (MiB) of each bridge process now."""
    return {
        name: {"rss": rss_mib(p.pid), "hwm": peak_rss_mib(p.pid)} for name, p in res.bridges.items()
    }


async def database_mib(database: str, database_url: str, res: Resources) -> float | None:
    """The database's size on disk: pg_database_size, or the SQLite file with its WAL."""
    if database == "sqlite":
        files = list(res.workdir.glob("bench.db*"))
        return round(sum(f.stat().st_size for f in files) / 2**20, 1) if files else None
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            size = (
                await conn.execute(text("SELECT pg_database_size(current_database())"))
            ).scalar()
    finally:
        await engine.dispose()
    return round(int(size) / 2**20, 1) if size is not None else None


# --------------------------------------------------------------------- phase 3: callbacks


@dataclass
class Answer:
    wait_id: str
    due: float
    answered: float | None = None  # HTTP response received, or Kafka send acknowledged
    status: str = "pending"


async def answer_http(session: aiohttp.ClientSession, base_url: str, token: str, a: Answer) -> None:
    try:
        url = f"{base_url}/tasks/{token}/success"
        async with session.post(url, json={"answeredBy": "bench"}) as response:
            await response.read()
            a.status = str(response.status)
    except (aiohttp.ClientError, TimeoutError) as exc:
        a.status = type(exc).__name__
    a.answered = now()


async def answer_kafka(producer: AIOKafkaProducer, token: str, a: Answer) -> None:
    reply = {"taskToken": token, "output": {"answeredBy": "bench"}}
    try:
        await (await producer.send(REPLIES, json.dumps(reply).encode(), key=a.wait_id.encode()))
        a.status = "200"  # acknowledged by the broker: counted like an HTTP 200
    except Exception as exc:  # a send that failed is an error of this answer alone
        a.status = type(exc).__name__
    a.answered = now()


async def callbacks(
    args: argparse.Namespace,
    seen: Seen,
    chosen: list[str],
    session: aiohttp.ClientSession,
    producer: AIOKafkaProducer,
    base_url: str,
) -> tuple[list[Answer], list[float]]:
    """Open loop: answer i is due at start + i / rate and goes out then, whatever came back
    before; the answers, and how late each went out (ms)."""
    answers: list[Answer] = []
    behind: list[float] = []
    tasks: set[asyncio.Task[None]] = set()
    start = now()
    for index, wait_id in enumerate(chosen):
        due = start + index / args.rate
        if due > now():
            await asyncio.sleep(due - now())
        behind.append((now() - due) * 1000)
        a = Answer(wait_id, due)
        answers.append(a)
        token = seen.tokens[wait_id]
        if args.channel == "http":
            job = answer_http(session, base_url, token, a)
        else:
            job = answer_kafka(producer, token, a)
        task = asyncio.create_task(job)
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.wait(tasks, timeout=args.timeout)
    return answers, behind


async def wait_completions(seen: Seen, wait_ids: list[str], timeout: float) -> None:
    deadline = now() + timeout
    while now() < deadline and any(w not in seen.completed_at for w in wait_ids):
        await asyncio.sleep(0.1)


def spread(values: list[float]) -> dict[str, float | None]:
    ordered = sorted(values)
    return {
        "p50": rounded(percentile(ordered, 0.50)),
        "p95": rounded(percentile(ordered, 0.95)),
        "p99": rounded(percentile(ordered, 0.99)),
        "max": rounded(ordered[-1] if ordered else None),
    }


def callback_figures(
    args: argparse.Namespace, seen: Seen, answers: list[Answer], behind: list[float]
) -> dict[str, Any]:
    statuses = Counter(a.status for a in answers)
    ok = [a for a in answers if a.status == "200" and a.answered is not None]
    completed = [a for a in answers if a.wait_id in seen.completed_at]
    return {
        "channel": args.channel,
        "rate_per_s": args.rate,
        "duration_s": args.duration,
        "sent": len(answers),
        "ok": len(ok),
        "errors": {status: n for status, n in statuses.items() if status != "200"},
        "response_ms": spread([(a.answered - a.due) * 1000 for a in ok if a.answered])
        if args.channel == "http"
        else None,
        "completed": len(completed),
        "completion_ms": spread([(seen.completed_at[a.wait_id] - a.due) * 1000 for a in completed]),
        "behind_schedule_ms": spread(behind),
    }


# --------------------------------------------------------------------- the run


@dataclass
class Run:
    """What a run measured, as the JSON line says it."""

    result: dict[str, Any] = field(default_factory=dict)

    def rss(self, label: str, res: Resources) -> None:
        self.result.setdefault("rss_mib", {})[label] = memory(res)


def per_unit_ms(cpu: dict[str, float | None], units: int) -> dict[str, float | None]:
    """CPU milliseconds per unit (process started, callback) of each process but the bench."""
    return {
        name: round(seconds * 1000 / units, 2) if units and seconds is not None else None
        for name, seconds in cpu.items()
        if name != "bench"
    }


async def warm_up(
    args: argparse.Namespace,
    seen: Seen,
    producer: AIOKafkaProducer,
    session: aiohttp.ClientSession,
    base_url: str,
) -> None:
    """One process through the whole path (start, command, callback), so that first-use costs
    are not part of the figures."""
    wait_id = f"warmup-{uuid.uuid4().hex[:8]}"
    stage = await fill(producer, seen, [wait_id], args.startup_timeout)
    if stage.missing:
        raise RuntimeError(f"the warm-up process sent no command within {args.startup_timeout}s")
    a = Answer(wait_id, now())
    token = seen.tokens.pop(wait_id)
    if args.channel == "http":
        await answer_http(session, base_url, token, a)
    else:
        await answer_kafka(producer, token, a)
    if a.status != "200":
        raise RuntimeError(f"the warm-up callback was answered {a.status}")


async def settle_and_measure(
    args: argparse.Namespace, run: Run, res: Resources, label: str, database_url: str
) -> None:
    """Let the pollers and the relay go quiet, then read memory and the database size."""
    await asyncio.sleep(args.settle)
    run.rss(label, res)
    size = await database_mib(args.database, database_url, res)
    run.result.setdefault("database_mib", {})[label] = size


async def fill_phase(
    args: argparse.Namespace,
    run: Run,
    res: Resources,
    seen: Seen,
    producer: AIOKafkaProducer,
    database_url: str,
) -> list[str]:
    """Phase 1 and 2: the fill in two stages with memory read after each; the waiting ids."""
    ids = [f"w-{i:07d}-{uuid.uuid4().hex[:6]}" for i in range(args.processes)]
    stages = []
    before = res.usage(postgres=args.database == "postgres")
    for part in stage_parts(ids, args.small, args.stages):
        stage = await fill(producer, seen, part, args.stall, args.fill_rate)
        stages.append(stage)
        print(
            f"  filled {len(part)} in {stage.seconds:.1f} s "
            f"({stage.figures()['per_s']}/s), missing {stage.missing}",
            flush=True,
        )
        after = res.usage(postgres=args.database == "postgres")  # before the settle time
        await settle_and_measure(args, run, res, f"after {len(seen.tokens)} waiting", database_url)
    total_s = sum(s.seconds for s in stages)
    cpu = cpu_split(before, after)
    run.result["fill"] = {
        "offered_per_s": args.fill_rate or None,
        "stages": [s.figures() for s in stages],
        "seconds": round(total_s, 2),
        "per_s": round(args.processes / total_s, 1) if total_s > 0 else None,
        "missing": sum(s.missing for s in stages),
        "commands_read": seen.commands,
        "cpu_s": cpu,
        "cpu_ms_per_process": per_unit_ms(cpu, args.processes),
    }
    return [i for i in ids if i in seen.tokens]


def stage_parts(ids: list[str], small: int, stages: int) -> list[list[str]]:
    """The first ``small`` ids, then the rest in ``stages`` parts of about the same size."""
    parts = [ids[:small]]
    rest = ids[small:]
    for k in range(stages):
        parts.append(rest[len(rest) * k // stages : len(rest) * (k + 1) // stages])
    return [part for part in parts if part]


async def callback_phase(
    args: argparse.Namespace,
    run: Run,
    res: Resources,
    seen: Seen,
    waiting: list[str],
    clients: tuple[aiohttp.ClientSession, AIOKafkaProducer],
    base_url: str,
) -> None:
    """Phase 3: open-loop callbacks to random waiting processes; latency and CPU per callback."""
    session, producer = clients
    count = min(round(args.rate * args.duration), len(waiting))
    chosen = random.sample(waiting, count)
    postgres = args.database == "postgres"
    before: Usage = res.usage(postgres=postgres)
    answers, behind = await callbacks(args, seen, chosen, session, producer, base_url)
    await wait_completions(seen, chosen, args.timeout)
    cpu = cpu_split(before, res.usage(postgres=postgres))
    run.result["callbacks"] = callback_figures(args, seen, answers, behind)
    run.result["callbacks"]["cpu_s"] = cpu
    run.result["callbacks"]["cpu_ms_per_callback"] = per_unit_ms(cpu, len(answers))


async def run(args: argparse.Namespace, res: Resources) -> dict[str, Any]:
    started_wall = datetime.now(UTC)
    bootstrap = res.start_broker()
    await create_topics(bootstrap, 1, TOPICS)
    database_url = await open_database(args.database, res)
    http_port = free_port()
    base_url = f"http://127.0.0.1:{http_port}"
    env = {"BRIDGE_KAFKA_TOPIC_PARTITIONS": "1", **dict(args.env)}
    res.start_production(bootstrap, http_port, database_url, 1, env)
    pids = ", ".join(f"{name} {pid}" for name, pid in res.pids().items())
    print(f"broker {bootstrap}, bridge pids: {pids}, on {base_url}, database {database_url}")
    print(f"bridge logs: {res.workdir}", flush=True)
    group = await wait_ready(args.startup_timeout, res, base_url, bootstrap)

    result: dict[str, Any] = {"date": started_wall.isoformat(timespec="seconds")}
    result |= {"database": args.database, "processes": args.processes, "small": args.small}
    result |= {"consumer_group": group}
    run = Run(result)
    seen = Seen()
    stop, tail_ready = asyncio.Event(), asyncio.Event()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False, linger_ms=2)
    await producer.start()
    session = aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=30),
        connector=aiohttp.TCPConnector(limit=args.connections),
    )
    readers = [asyncio.create_task(consume(bootstrap, (COMMANDS,), seen.on_commands, stop))]
    try:
        await warm_up(args, seen, producer, session, base_url)
        await settle_and_measure(args, run, res, "after warm-up", database_url)
        waiting = await fill_phase(args, run, res, seen, producer, database_url)
        readers.append(
            asyncio.create_task(
                tail_topic(bootstrap, LIFECYCLE, seen.on_lifecycle, stop, tail_ready)
            )
        )
        await asyncio.wait_for(tail_ready.wait(), 30)
        await callback_phase(args, run, res, seen, waiting, (session, producer), base_url)
        await settle_and_measure(args, run, res, "after callbacks", database_url)
        result["bridge_alive_at_end"] = res.all_alive()
    finally:
        stop.set()
        await asyncio.gather(*readers, return_exceptions=True)
        await session.close()
        await producer.stop()
    result["duplicate_commands"] = seen.commands - len(seen.tokens) - 1  # the warm-up's
    result["duplicate_completions"] = seen.completions - len(seen.completed_at)
    result["stray_records"] = seen.stray
    result["bridge_logs"] = {name: str(p.log) for name, p in res.bridges.items()}
    return result


# --------------------------------------------------------------------- report


def report(r: dict[str, Any]) -> None:
    fill_ = r["fill"]
    cb = r["callbacks"]
    lines = [
        "",
        f"waiting processes bench, {r['database']}, {r['date']}",
        "  shape                production: 1 bridge worker + bridge web, 1 partition, "
        f"consumer group {r['consumer_group']}",
        f"  fill                 {r['processes']} processes in {fill_['seconds']} s "
        f"({fill_['per_s']}/s), missing {fill_['missing']}; stages "
        + ", ".join(f"{s['processes']} at {s['per_s']}/s" for s in fill_["stages"]),
        f"  fill CPU ms/process  {_items(fill_['cpu_ms_per_process'])}",
        "  memory MiB (VmRSS / VmHWM):",
    ]
    for label, by_process in r["rss_mib"].items():
        mem = ", ".join(f"{n} {m['rss']} / {m['hwm']}" for n, m in by_process.items())
        lines.append(f"    {label:<22} {mem}; database {r['database_mib'].get(label)} MiB")
    behind = cb["behind_schedule_ms"]
    lines += [
        f"  callbacks            {cb['sent']} over {cb['channel']} at {cb['rate_per_s']}/s for "
        f"{cb['duration_s']} s (sent behind schedule p99 {behind['p99']} ms), ok {cb['ok']}, "
        f"errors {cb['errors'] or 0}",
    ]
    if cb["response_ms"] is not None:
        lines.append(f"  HTTP response ms     {_items(cb['response_ms'])} (from the due time)")
    lines += [
        f"  completion ms        {_items(cb['completion_ms'])} "
        f"({cb['completed']} lifecycle events read)",
        f"  CPU ms per callback  {_items(cb['cpu_ms_per_callback'])}",
        f"  duplicates           commands {r['duplicate_commands']}, "
        f"completions {r['duplicate_completions']}; stray records {r['stray_records']}",
    ]
    if not r.get("bridge_alive_at_end", True):
        lines.append(f"  A BRIDGE PROCESS EXITED: {r.get('bridge_exit_codes')}")
    lines.append(f"  bridge logs          {r['bridge_logs']}")
    print("\n".join(lines))
    print(json.dumps(r, separators=(",", ":")))


def _items(values: dict[str, float | None]) -> str:
    return ", ".join(f"{name} {value}" for name, value in values.items())


# --------------------------------------------------------------------- command line


def main() -> int:
    args = parse_args()
    if args.seed is not None:
        random.seed(args.seed)
    res = Resources({"waiting.asl.yaml": DEFINITION})
    result, code = run_to_end(lambda started: run(args, started), res, args.deadline)
    if result is not None:
        result["bridge_exit_codes"] = res.exit_codes
        report(result)
    return code


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--processes", type=int, default=20000, help="waiting processes to fill")
    parser.add_argument(
        "--small",
        type=int,
        default=None,
        help="the first fill stage, after which memory is read too (default: processes / 10)",
    )
    parser.add_argument(
        "--stages",
        type=int,
        default=1,
        help="fill the processes after --small in this many stages, memory read after each",
    )
    parser.add_argument(
        "--fill-rate",
        type=float,
        default=0.0,
        help="start events per second during the fill (default: flat out)",
    )
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="postgres")
    parser.add_argument("--rate", type=float, default=100.0, help="callbacks per second")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of callbacks")
    parser.add_argument(
        "--channel",
        choices=("http", "kafka"),
        default="http",
        help="http: POST /tasks/{token}/success on bridge web; kafka: a reply on bridge.replies",
    )
    parser.add_argument(
        "--connections", type=int, default=100, help="the HTTP client's connection pool size"
    )
    parser.add_argument(
        "--settle", type=float, default=3.0, help="quiet seconds before memory is read"
    )
    parser.add_argument(
        "--stall",
        type=float,
        default=60.0,
        help="a fill stage gives up when no new command came for this many seconds",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        help="seconds to wait for outstanding answers, and again for completions, after the "
        "last callback was sent",
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        type=env_pair,
        metavar="NAME=VALUE",
        help="a setting for the bridge processes (repeatable)",
    )
    parser.add_argument("--startup-timeout", type=float, default=60.0)
    parser.add_argument(
        "--deadline", type=float, default=3600.0, help="hard limit on the whole run"
    )
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    if args.processes < 1 or args.rate <= 0 or args.duration <= 0:
        parser.error("--processes >= 1, --rate > 0 and --duration > 0")
    if args.stages < 1 or args.fill_rate < 0:
        parser.error("--stages >= 1 and --fill-rate >= 0")
    if args.small is None:
        args.small = max(1, args.processes // 10)
    if not 1 <= args.small <= args.processes:
        parser.error("1 <= --small <= --processes")
    return args


if __name__ == "__main__":
    sys.exit(main())
