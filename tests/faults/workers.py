"""Bridge workers for the crash tests: ``python -m bridge worker`` in a subprocess of its own,
which a test starts, waits for, kills and restarts, and whose log it reads."""

from __future__ import annotations

import asyncio
import ctypes
import signal
import subprocess
import sys
from pathlib import Path

from tests.faults.verdict import now


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
