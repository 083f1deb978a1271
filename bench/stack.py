"""The bridge a bench runs against: a Tansu broker on a free port, a fresh database (a temporary
SQLite file, or a fresh PostgreSQL database dropped at the end) and the bridge as subprocesses
(``bridge dev``, or ``bridge db upgrade`` then ``bridge worker`` processes and one ``bridge web``),
started, awaited and cleaned up whatever happens.

Used by ``order_saga.py`` and ``waiting.py`` (run as scripts from this folder, so imported as
``stack``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Coroutine, Iterable, Mapping
from pathlib import Path
from typing import Any

import aiohttp
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from processes import BridgeProcess, Usage, peak_rss_mib, read_usage, tail
from saga_services import now

from bridge.broker import EmbeddedBroker, free_port

PG_SERVER = "postgresql+asyncpg://postgres@127.0.0.1:5432"
# The README's advice for workers on a Tansu broker (see "Fail-over: what to tune").
PRODUCTION_ENV = {"BRIDGE_KAFKA_SESSION_TIMEOUT_MS": "2000"}


# --------------------------------------------------------------------- resources


class Resources:
    """Everything the bench starts, stopped by ``close`` whatever happened.

    ``definitions`` maps file names (``NAME.asl.yaml``) to the text of the definitions the
    bridge loads: only these, so that a bench measures its own processes alone."""

    def __init__(self, definitions: Mapping[str, str]) -> None:
        self.definitions = dict(definitions)
        self.workdir = Path(tempfile.mkdtemp(prefix="bridge-bench-"))
        self.broker: EmbeddedBroker | None = None
        self.bridges: dict[str, BridgeProcess] = {}  # in start order
        self.exit_codes: dict[str, int] = {}
        self.pg_database: str | None = None
        self.group_id = f"bench-bridge-{uuid.uuid4().hex[:8]}"

    def start_broker(self) -> str:
        self.broker = EmbeddedBroker(free_port())
        self.broker.start()  # from the main thread: the broker dies with this process
        return self.broker.bootstrap

    @property
    def broker_pid(self) -> int | None:
        if self.broker is None or self.broker.process is None:
            return None
        return self.broker.process.pid

    def _env(self, database_url: str, extra: dict[str, str]) -> dict[str, str]:
        env = {
            **os.environ,
            "BRIDGE_DATABASE_URL": database_url,
            "BRIDGE_LOG_LEVEL": "WARNING",
            "BRIDGE_KAFKA_GROUP_ID": self.group_id,
            # Several workers on one host: each serves its probes on a free port.
            "BRIDGE_WORKER_HTTP_PORT": "0",
        }
        env.pop("BRIDGE_KAFKA_BOOTSTRAP", None)
        env.update(extra)
        return env

    def _definitions(self) -> Path:
        definitions = self.workdir / "definitions"
        definitions.mkdir(exist_ok=True)
        for name, text in self.definitions.items():
            (definitions / name).write_text(text)
        return definitions

    def start_dev(
        self, bootstrap: str, http_port: int, database_url: str, extra_env: dict[str, str]
    ) -> None:
        """``bridge dev --kafka ...``: workers and web endpoint in one process."""
        command = ["dev", "--kafka", bootstrap, "--port", str(http_port)]
        command += ["--database", database_url, "--definitions", str(self._definitions())]
        env = self._env(database_url, extra_env)
        self.bridges["bridge"] = BridgeProcess("bridge", command, env, self.workdir)

    def start_production(
        self,
        bootstrap: str,
        http_port: int,
        database_url: str,
        workers: int,
        extra_env: dict[str, str],
    ) -> None:
        """``bridge db upgrade``, then ``workers`` ``bridge worker`` processes (one consumer
        group) and one ``bridge web``, all on the same database and broker."""
        env = self._env(
            database_url,
            {
                **PRODUCTION_ENV,
                "BRIDGE_KAFKA_BOOTSTRAP": bootstrap,
                "BRIDGE_DEFINITIONS_DIR": str(self._definitions()),
                "BRIDGE_HTTP_PORT": str(http_port),  # approval links point at the web process
                "BRIDGE_DATABASE_MIGRATE": "false",
                **extra_env,
            },
        )
        upgrade = subprocess.run(
            [sys.executable, "-m", "bridge", "db", "upgrade"],
            cwd=self.workdir,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if upgrade.returncode != 0:
            raise RuntimeError(f"bridge db upgrade failed:\n{upgrade.stdout}{upgrade.stderr}")
        for number in range(1, workers + 1):
            name = f"worker-{number}"
            self.bridges[name] = BridgeProcess(name, ["worker"], env, self.workdir)
        self.bridges["web"] = BridgeProcess("web", ["web"], env, self.workdir)

    @property
    def bridge_log(self) -> Path:
        """The log to look at first: that of the first process started."""
        first = next(iter(self.bridges.values()), None)
        return first.log if first is not None else self.workdir / "bridge.stderr.log"

    def all_alive(self) -> bool:
        return bool(self.bridges) and all(p.alive for p in self.bridges.values())

    def tails(self, lines: int = 30) -> str:
        return "\n".join(
            f"--- {p.name} ({p.log}):\n{tail(p.log, lines)}{tail(p.out, lines)}"
            for p in self.bridges.values()
        )

    def pids(self) -> dict[str, int]:
        return {name: p.pid for name, p in self.bridges.items() if p.alive}

    def peak_rss(self) -> dict[str, float | None]:
        """Peak RSS (VmHWM) per bridge process so far, MiB."""
        return {name: peak_rss_mib(p.pid) for name, p in self.bridges.items()}

    def usage(self, *, postgres: bool) -> Usage:
        return read_usage(self.pids(), self.broker_pid, postgres=postgres)

    def stop_bridges(self) -> None:
        """Workers first, the web process last; their exit codes kept."""
        for name, process in list(self.bridges.items()):
            self.exit_codes[name] = process.stop()

    @property
    def exit_code(self) -> int | None:
        """The first non-zero exit code of a bridge process, else 0; None before they stop."""
        if not self.exit_codes:
            return None
        return next((code for code in self.exit_codes.values() if code != 0), 0)

    def close(self) -> None:
        try:
            self.stop_bridges()
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


# --------------------------------------------------------------------- readiness


async def wait_ready(startup_timeout: float, res: Resources, base_url: str, bootstrap: str) -> str:
    """Until the web endpoint is healthy, every worker says it consumes and (production) the
    consumer group is stable with all workers in it; what the group looked like."""
    deadline = now() + startup_timeout
    workers = [p for name, p in res.bridges.items() if name.startswith("worker-")]
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
        while now() < deadline:
            if not res.all_alive():
                raise RuntimeError(f"a bridge process exited at start:\n{res.tails()}")
            if all(w.said("bridge worker consuming") for w in workers) and await _healthy(
                session, base_url
            ):
                break
            await asyncio.sleep(0.2)
        else:
            raise RuntimeError(
                f"the bridge was not ready within {startup_timeout}s:\n{res.tails()}"
            )
    if not workers:
        return "one process"
    return await wait_group(bootstrap, res.group_id, len(workers), max(deadline - now(), 5.0))


async def _healthy(session: aiohttp.ClientSession, base_url: str) -> bool:
    try:
        async with session.get(f"{base_url}/healthz") as response:
            return response.status == 200
    except (aiohttp.ClientError, TimeoutError):
        return False


async def wait_group(bootstrap: str, group: str, members: int, timeout: float) -> str:
    """Until the consumer group is Stable with ``members`` members that all have partitions
    (as far as the broker tells through DescribeGroups); the last state seen."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    seen = "not described"
    try:
        deadline = now() + timeout
        while now() < deadline:
            try:
                response = (await admin.describe_consumer_groups([group]))[0]
                _error, _id, state, _type, _protocol, group_members = response.groups[0][:6]
            except Exception as exc:  # a broker that does not describe groups
                return f"not described ({type(exc).__name__})"
            assigned = sum(1 for member in group_members if member[4])
            seen = f"{state}, {len(group_members)} member(s)"
            seen += f", {assigned} with partitions" if assigned else ""
            # Tansu 0.6 describes no assignments: a stable group of all workers has to do.
            if state == "Stable" and len(group_members) == members and assigned in (0, members):
                return seen
            await asyncio.sleep(0.2)
    finally:
        await admin.close()
    print(f"the consumer group did not settle within {timeout:.0f}s: {seen}", file=sys.stderr)
    return seen


async def create_topics(bootstrap: str, partitions: int, topics: Iterable[str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(topic, num_partitions=partitions, replication_factor=1) for topic in topics]
        )
    finally:
        await admin.close()


async def open_database(database: str, res: Resources) -> str:
    """A fresh database (``sqlite`` or ``postgres``); its SQLAlchemy URL."""
    if database == "postgres":
        res.pg_database = f"bridge_bench_{uuid.uuid4().hex[:10]}"
        await create_database(res.pg_database)
        return f"{PG_SERVER}/{res.pg_database}"
    return f"sqlite+aiosqlite:///{res.workdir / 'bench.db'}"


def env_pair(text: str) -> tuple[str, str]:
    """``--env NAME=VALUE``: a setting for the bridge processes."""
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=VALUE")
    return name, value


def run_to_end(
    run: Callable[[Resources], Coroutine[Any, Any, dict[str, Any]]],
    res: Resources,
    deadline: float,
) -> tuple[dict[str, Any] | None, int]:
    """Run a bench until it ends, fails, is interrupted (Ctrl-C, SIGTERM) or hits ``deadline``
    seconds, and clean up the broker, the bridge processes and the database whatever happened.
    The result (None when there is none) and the exit code; on a failure, the bridge's log
    tails are printed."""

    def terminate(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # also when started in the background
    code = 0
    result = None
    try:
        result = asyncio.run(asyncio.wait_for(run(res), deadline))
    except KeyboardInterrupt:
        print("interrupted; cleaning up", file=sys.stderr)
        code = 130
    except TimeoutError:
        print(f"the bench hit its deadline of {deadline}s; cleaning up", file=sys.stderr)
        code = 2
    except Exception as exc:
        print(f"bench failed: {exc!r}", file=sys.stderr)
        code = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # let cleanup finish
        res.close()
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if result is None and code:
        print(f"bridge log tails:\n{res.tails()}", file=sys.stderr)
    return result, code
