"""Bridge workers for the crash tests: ``python -m bridge worker`` in a subprocess of its own,
which a test starts, waits for, kills and restarts, and whose log it reads."""

from __future__ import annotations

import asyncio
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bridge.broker import free_port
from bridge.settings import Settings
from tests.faults.verdict import now


def crash_settings(database_url: str, kafka: str, definitions: Path, name: str) -> Settings:
    """Settings of a crash test's own: its consumer group and topics named ``name`` with a
    random suffix, no lifecycle events, the definitions of ``definitions``."""
    suffix = f"{name}-{os.urandom(4).hex()}"
    return Settings(
        database_url=database_url,
        kafka_bootstrap=kafka,
        http_port=free_port(),
        kafka_group_id=suffix,
        kafka_replies_topic=f"bridge.replies.{suffix}",
        kafka_approvals_topic=f"bridge.approvals.{suffix}",
        kafka_lifecycle_topic="",
        definitions_dir=definitions,
    )


def worker_env(settings: Settings, fault: str | None, **extra: str) -> dict[str, str]:
    """The environment of a worker on ``settings``' database, broker, topics and partitions (no
    other ``BRIDGE_`` variable of this process), dying at ``fault`` when given; ``extra``
    settings by their variable names."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("BRIDGE_")}
    env.update(
        {
            "PYTHONUNBUFFERED": "1",
            "BRIDGE_KAFKA_BOOTSTRAP": str(settings.kafka_bootstrap),
            "BRIDGE_DATABASE_URL": settings.database_url,
            "BRIDGE_DATABASE_MIGRATE": "false",
            "BRIDGE_DEFINITIONS_DIR": str(settings.definitions_dir),
            "BRIDGE_KAFKA_GROUP_ID": settings.kafka_group_id,
            "BRIDGE_KAFKA_REPLIES_TOPIC": settings.kafka_replies_topic,
            "BRIDGE_KAFKA_APPROVALS_TOPIC": settings.kafka_approvals_topic,
            "BRIDGE_KAFKA_LIFECYCLE_TOPIC": settings.kafka_lifecycle_topic,
            "BRIDGE_KAFKA_DLQ_TOPIC": settings.kafka_dlq_topic,
            "BRIDGE_KAFKA_TOPIC_PARTITIONS": str(settings.kafka_topic_partitions),
            "BRIDGE_HTTP_PORT": str(settings.http_port),
            # Any free port for the worker's probes: other tests run workers at the same time.
            "BRIDGE_WORKER_HTTP_PORT": "0",
            "BRIDGE_KAFKA_FETCH_MAX_WAIT_MS": "10",
            "BRIDGE_KAFKA_SESSION_TIMEOUT_MS": "2000",
            "BRIDGE_LOG_LEVEL": "INFO",
            **extra,
        }
    )
    if fault:
        env["BRIDGE_FAULT"] = fault
    return env


async def until(predicate: Callable[[], Awaitable[Any]], timeout: float, what: str) -> Any:
    """What ``predicate`` returns once it is truthy; fails saying ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = await predicate()
        if found:
            return found
        await asyncio.sleep(0.1)
    raise AssertionError(f"{what} within {timeout}s")


def _die_with_parent() -> None:
    """Linux: a worker gets SIGKILL when the test process dies, so none is left behind."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class WorkerProcess:
    """``python -m bridge worker`` with its output in a log file."""

    def __init__(self, name: str, env: dict[str, str], log_path: Path, cwd: Path) -> None:
        self.name = name
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.started_at = now()
        # Popen from the event loop's (main) thread: PR_SET_PDEATHSIG follows the calling thread.
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "bridge", "worker"],
            env=env,
            cwd=cwd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.popen.poll()

    def text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.text().splitlines()[-lines:])

    async def ready(self, timeout: float = 60.0) -> None:
        """Until the worker says it consumes (its stream processors are started)."""
        deadline = now() + timeout
        while now() < deadline:
            if "bridge worker consuming" in self.text():
                return
            if not self.alive:
                raise AssertionError(
                    f"worker {self.name} exited with {self.returncode} at start:\n{self.tail()}"
                )
            await asyncio.sleep(0.05)
        raise AssertionError(f"worker {self.name} not ready within {timeout}s:\n{self.tail()}")

    async def exited(self, timeout: float) -> int | None:
        """Wait until the process ends; its exit code, or None when it still runs."""
        deadline = now() + timeout
        while self.alive and now() < deadline:
            await asyncio.sleep(0.02)
        return self.returncode

    def kill(self) -> None:
        if self.alive:
            self.popen.send_signal(signal.SIGKILL)
        self.popen.wait()
        self._log.close()

    def stop(self, timeout: float = 20.0) -> int:
        if self.alive:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self._log.close()
        return self.popen.returncode


class Workers:
    """The workers a crash test starts on ``settings``, numbered w1, w2... with their logs in
    ``folder``; ``extra`` settings by their variable names."""

    def __init__(self, settings: Settings, folder: Path, **extra: str) -> None:
        self.settings = settings
        self.folder = folder
        self.extra = extra
        self.started: list[WorkerProcess] = []

    def start(self, fault: str | None) -> WorkerProcess:
        name = f"w{len(self.started) + 1}"
        env = worker_env(self.settings, fault, **{"BRIDGE_RELAY_POLL_MS": "20", **self.extra})
        worker = WorkerProcess(name, env, self.folder / f"{name}.log", self.folder)
        self.started.append(worker)
        return worker

    def kill_all(self) -> None:
        for worker in self.started:
            worker.kill()
