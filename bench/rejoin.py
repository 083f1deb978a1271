"""Fail-over: how long events stop flowing when a worker is killed with SIGKILL.

    python bench/rejoin.py                      # both scenarios, embedded broker, 3 rounds each
    python bench/rejoin.py --scenario restart --rounds 5
    python bench/rejoin.py --env BRIDGE_KAFKA_SESSION_TIMEOUT_MS=10000   # compare a setting
    python bench/rejoin.py --kafka host:9092    # an existing cluster instead of the embedded one

Scenarios (PostgreSQL-backed ``python -m bridge worker`` processes, one fresh database per round,
events sent steadily at ``--rate`` per second on their own partitions):

- ``restart``: one worker, one partition. It is SIGKILLed and started again at once. Printed: how
  long the new process took to say it consumes, and the gap: from the kill to the first event
  applied after it.
- ``survivor``: two workers in one group, four partitions. One is SIGKILLed and not restarted.
  Printed per partition: the gap from the kill to its first event applied after the kill. The
  slowest partitions are the dead worker's; the fastest, the survivor's own.

An event counts as applied when its process row exists (``started_at``, written by the worker,
same machine clock). Nothing here asserts on speed; it prints figures and one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from processes import BridgeProcess, tail
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from bridge.broker import EmbeddedBroker, free_port

PG_SERVER = "postgresql+asyncpg://postgres@127.0.0.1:5432"
EVENT_TYPE = "Ping"


async def _postgres(statement: str) -> None:
    server = create_async_engine(f"{PG_SERVER}/postgres", isolation_level="AUTOCOMMIT")
    try:
        async with server.connect() as conn:
            await conn.execute(text(statement))
    finally:
        await server.dispose()


class Worker(BridgeProcess):
    """``python -m bridge worker`` (see ``processes.BridgeProcess``), killed without a word."""

    def __init__(self, name: str, env: dict[str, str], folder: Path) -> None:
        self.started = time.time()
        super().__init__(name, ["worker"], env, folder)
        self.consuming_at: float | None = None

    def text(self) -> str:
        return "\n".join(tail(path, 10**6) for path in (self.out, self.log))

    async def ready(self, timeout: float = 60.0) -> float:
        """Seconds from the start until the worker says it consumes."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.said("bridge worker consuming"):
                self.consuming_at = self.consuming_at or time.time()
                return self.consuming_at - self.started
            if not self.alive:
                raise RuntimeError(f"{self.name} exited:\n{self.text()[-3000:]}")
            await asyncio.sleep(0.02)
        raise RuntimeError(f"{self.name} not ready in {timeout}s:\n{self.text()[-3000:]}")

    def kill(self) -> None:
        if self.alive:
            self.popen.send_signal(signal.SIGKILL)
        self.popen.wait()


@dataclass
class Round:
    folder: Path
    bootstrap: str
    partitions: int
    rate: float
    extra_env: dict[str, str]
    suffix: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    database: str = ""
    db: AsyncEngine | None = None
    producer: AIOKafkaProducer | None = None
    workers: list[Worker] = field(default_factory=list)
    sent: int = 0

    @property
    def topic(self) -> str:
        return f"rejoin.events.{self.suffix}"

    @property
    def group(self) -> str:
        return f"rejoin-{self.suffix}"

    async def __aenter__(self) -> Round:
        definitions = self.folder / "definitions"
        definitions.mkdir(parents=True, exist_ok=True)
        (definitions / "ping.asl.json").write_text(
            json.dumps(
                {
                    "Triggers": [
                        {
                            "Topic": self.topic,
                            "EventType": EVENT_TYPE,
                            "CorrelationKey": "$.id",
                            "EventId": "$.id",
                        }
                    ],
                    "StartAt": "Done",
                    "States": {"Done": {"Type": "Succeed"}},
                }
            )
        )
        name = f"bridge_rejoin_{self.suffix}"
        await _postgres(f'CREATE DATABASE "{name}"')
        self.database = f"{PG_SERVER}/{name}"
        self.db = create_async_engine(self.database)
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await admin.start()
        try:
            topics = [self.topic, *(f"{t}.{self.suffix}" for t in ("replies", "lifecycle", "dlq"))]
            await admin.create_topics(
                [NewTopic(t, num_partitions=self.partitions, replication_factor=1) for t in topics]
            )
        finally:
            await admin.close()
        # Migrate once, so that workers start as they would in production (no migration).
        migrate = subprocess.run(
            [sys.executable, "-m", "bridge", "db", "upgrade"],
            env=self.env(migrate=True),
            cwd=self.folder,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if migrate.returncode != 0:
            raise RuntimeError(f"db upgrade failed: {migrate.stdout}{migrate.stderr}")
        self.producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap, enable_idempotence=False, linger_ms=0
        )
        await self.producer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        for worker in self.workers:
            worker.kill()
        if self.producer is not None:
            await self.producer.stop()
        if self.db is not None:
            await self.db.dispose()
        if self.database:
            await _postgres(
                f'DROP DATABASE IF EXISTS "{self.database.rsplit("/", 1)[1]}" WITH (FORCE)'
            )

    def env(self, *, migrate: bool = False) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
        env.update(
            {
                "PYTHONUNBUFFERED": "1",
                "BRIDGE_KAFKA_BOOTSTRAP": self.bootstrap,
                "BRIDGE_DATABASE_URL": self.database,
                "BRIDGE_DATABASE_MIGRATE": "true" if migrate else "false",
                "BRIDGE_DEFINITIONS_DIR": str(self.folder / "definitions"),
                "BRIDGE_KAFKA_GROUP_ID": self.group,
                "BRIDGE_WORKER_HTTP_PORT": "0",
                "BRIDGE_KAFKA_REPLIES_TOPIC": f"replies.{self.suffix}",
                "BRIDGE_KAFKA_LIFECYCLE_TOPIC": f"lifecycle.{self.suffix}",
                "BRIDGE_KAFKA_DLQ_TOPIC": f"dlq.{self.suffix}",
                "BRIDGE_KAFKA_TOPIC_PARTITIONS": str(self.partitions),
                "BRIDGE_LOG_LEVEL": "INFO",
            }
        )
        env.update(self.extra_env)
        return env

    def start_worker(self, name: str, env: dict[str, str] | None = None) -> Worker:
        worker = Worker(name, {**self.env(), **(env or {})}, self.folder)
        self.workers.append(worker)
        return worker

    async def send(self, stop: asyncio.Event) -> None:
        """Events at ``rate`` per second, round robin over the partitions, until ``stop``."""
        assert self.producer is not None
        began = time.monotonic()
        while not stop.is_set():
            delay = began + self.sent / self.rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            partition = self.sent % self.partitions
            event_id = f"p{partition}-{self.sent:06d}"
            value = json.dumps({"type": EVENT_TYPE, "id": event_id}).encode()
            await self.producer.send(self.topic, value, key=event_id.encode(), partition=partition)
            self.sent += 1

    async def applied(self) -> list[tuple[int, float]]:
        """(partition, applied at) of every event applied so far."""
        assert self.db is not None
        async with self.db.connect() as conn:
            rows = (
                await conn.execute(
                    select(text("correlation_key"), text("started_at")).select_from(
                        text("processes")
                    )
                )
            ).all()
        return [(int(key.split("-")[0][1:]), at.timestamp()) for key, at in rows]

    async def wait_applied_after(self, when: float, partitions: set[int], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            seen = {p for p, at in await self.applied() if at > when}
            if partitions <= seen:
                return
            await asyncio.sleep(0.1)


def _gaps(applied: list[tuple[int, float]], killed_at: float, partitions: int) -> dict[int, float]:
    """Per partition: seconds from the kill to its first event applied after the kill."""
    gaps: dict[int, float] = {}
    for partition in range(partitions):
        after = [at for p, at in applied if p == partition and at > killed_at]
        gaps[partition] = (min(after) - killed_at) if after else float("nan")
    return gaps


async def restart_round(round_: Round, warmup: float, after: float) -> dict[str, Any]:
    first = round_.start_worker("w1")
    await first.ready()
    stop = asyncio.Event()
    sender = asyncio.create_task(round_.send(stop))
    await asyncio.sleep(warmup)
    first.kill()
    killed_at = time.time()
    second = round_.start_worker("w2")
    startup = await second.ready()
    await round_.wait_applied_after(killed_at, {0}, timeout=after + 60)
    await asyncio.sleep(0.5)
    stop.set()
    await sender
    gap = _gaps(await round_.applied(), killed_at, 1)[0]
    return {
        "gap_s": round(gap, 2),
        "startup_s": round(startup, 2),
        "imports_s": round(await _import_seconds(), 2),
    }


async def _import_seconds() -> float:
    """How long a new Python process takes to import what ``bridge worker`` imports (a share of
    every restart that depends on the machine and its load, not on Kafka)."""
    began = time.monotonic()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "import bridge.cli, bridge.bootstrap"
    )
    await process.wait()
    return time.monotonic() - began


async def survivor_round(round_: Round, warmup: float, after: float) -> dict[str, Any]:
    first = round_.start_worker("w1")
    second = round_.start_worker("w2")
    await first.ready()
    await second.ready()
    await _stable(round_, 2, timeout=60)
    stop = asyncio.Event()
    sender = asyncio.create_task(round_.send(stop))
    await asyncio.sleep(warmup)
    second.kill()
    killed_at = time.time()
    await round_.wait_applied_after(killed_at, set(range(round_.partitions)), timeout=after + 60)
    await asyncio.sleep(0.5)
    stop.set()
    await sender
    gaps = _gaps(await round_.applied(), killed_at, round_.partitions)
    # The slowest partitions are the dead worker's (they wait for the broker to notice); the
    # fastest are the survivor's own, which stall only while the group rebalances.
    return {
        "gaps_s": [round(gaps[p], 2) for p in sorted(gaps)],
        "slowest_s": round(max(gaps.values()), 2),
        "fastest_s": round(min(gaps.values()), 2),
    }


async def _stable(round_: Round, members: int, timeout: float) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=round_.bootstrap)
    await admin.start()
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            group = (await admin.describe_consumer_groups([round_.group]))[0].groups[0]
            if group[2] == "Stable" and len(group[5]) == members:
                return
            await asyncio.sleep(0.2)
        raise RuntimeError(f"the group did not reach {members} stable members")
    finally:
        await admin.close()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    extra = dict(item.split("=", 1) for item in args.env)
    broker: EmbeddedBroker | None = None
    bootstrap = args.kafka
    if bootstrap is None:
        broker = EmbeddedBroker(free_port())
        broker.start()
        bootstrap = broker.bootstrap
    results: dict[str, Any] = {
        "env": extra,
        "broker": "embedded" if broker else bootstrap,
        "cpus": os.cpu_count(),
        "load_before": round(os.getloadavg()[0], 1),
    }
    try:
        scenarios = ["restart", "survivor"] if args.scenario == "both" else [args.scenario]
        for scenario in scenarios:
            rounds = []
            for index in range(args.rounds):
                folder = Path(tempfile.mkdtemp(prefix=f"bridge-rejoin-{scenario}-"))
                partitions = 1 if scenario == "restart" else 4
                async with Round(folder, bootstrap, partitions, args.rate, extra) as round_:
                    if scenario == "restart":
                        figures = await restart_round(round_, args.warmup, args.after)
                    else:
                        figures = await survivor_round(round_, args.warmup, args.after)
                figures["logs"] = str(folder)
                print(f"{scenario} round {index + 1}: {figures}", flush=True)
                rounds.append(figures)
            results[scenario] = rounds
    finally:
        if broker is not None:
            broker.stop()
    _summary(results)
    return results


def _summary(results: dict[str, Any]) -> None:
    def median(rounds: list[dict[str, Any]], key: str) -> str:
        values = [r[key] for r in rounds if isinstance(r.get(key), (int, float))]
        if not values:
            return "n/a"
        return f"{statistics.median(values):.1f} s (min {min(values):.1f}, max {max(values):.1f})"

    print(
        f"settings: {results['env'] or 'defaults'}; broker: {results['broker']}; "
        f"{results['cpus']} CPUs, load {results['load_before']} before, "
        f"{os.getloadavg()[0]:.1f} after"
    )
    if "restart" in results:
        rounds = results["restart"]
        print(
            f"(a) one worker killed and restarted: gap {median(rounds, 'gap_s')}; "
            f"new process consuming after {median(rounds, 'startup_s')}, of which Python "
            f"imports {median(rounds, 'imports_s')}"
        )
    if "survivor" in results:
        rounds = results["survivor"]
        print(
            f"(b) two workers, one killed: slowest partition {median(rounds, 'slowest_s')}; "
            f"fastest partition {median(rounds, 'fastest_s')}"
        )
    print(json.dumps(results))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", choices=["restart", "survivor", "both"], default="both")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rate", type=float, default=50.0, help="events per second")
    parser.add_argument(
        "--warmup", type=float, default=3.0, help="seconds of events before the kill"
    )
    parser.add_argument("--after", type=float, default=60.0, help="longest wait for recovery (s)")
    parser.add_argument("--kafka", help="bootstrap servers of a cluster (default: embedded broker)")
    parser.add_argument(
        "--env", action="append", default=[], metavar="NAME=VALUE", help="worker setting"
    )
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
