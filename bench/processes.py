"""Processes the benches start, and what they cost: CPU seconds and RSS from /proc (Linux).

Used by ``order_saga.py`` and ``waiting.py`` (run as scripts from this folder, so imported as
``processes``).
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path


def die_with_parent() -> None:
    """Linux: the child gets SIGTERM when the thread that started it ends."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class BridgeProcess:
    """``python -m bridge ARGS`` with its stdout and stderr in files of ``folder``."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], folder: Path) -> None:
        self.name = name
        self.log = folder / f"{name}.stderr.log"
        self.out = folder / f"{name}.stdout.log"
        self.exit_code: int | None = None
        with self.out.open("wb") as out, self.log.open("wb") as err:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", "bridge", *args],
                cwd=folder,
                env=env,
                stdout=out,
                stderr=err,
                preexec_fn=die_with_parent,
            )

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    def said(self, text: str) -> bool:
        """Whether ``text`` is in what the process printed so far."""
        for path in (self.out, self.log):
            try:
                if text in path.read_text(errors="replace"):
                    return True
            except OSError:
                continue
        return False

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM, then SIGKILL after ``timeout`` seconds; the exit code."""
        if self.alive:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self.exit_code = self.popen.returncode
        return self.exit_code


def tail(path: Path, lines: int = 30) -> str:
    """The last ``lines`` lines of a log file."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def cpu_seconds(pid: int) -> float | None:
    """User plus system CPU time of ``pid`` so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def peak_rss_mib(pid: int) -> float | None:
    """VmHWM of ``pid`` plus that of its live descendants, in MiB."""
    return _status_mib(pid, "VmHWM")


def rss_mib(pid: int) -> float | None:
    """VmRSS (resident now) of ``pid`` plus that of its live descendants, in MiB."""
    return _status_mib(pid, "VmRSS")


def _status_mib(pid: int, name: str) -> float | None:
    """The ``name`` line (in kB) of /proc/PID/status, summed over ``pid`` and its live
    descendants, in MiB."""
    total_kib = 0
    seen = False
    stack = [pid]
    while stack:
        current = stack.pop()
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith(f"{name}:"):
                    total_kib += int(line.split()[1])
                    seen = True
            for task in Path(f"/proc/{current}/task").iterdir():
                children = (task / "children").read_text().split()
                stack.extend(int(child) for child in children)
        except (OSError, ValueError):
            continue
    return round(total_kib / 1024, 1) if seen else None


def cpu_by_name(name: str) -> dict[int, float]:
    """CPU seconds so far of every process whose command name is ``name`` (e.g. postgres)."""
    found: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() != name:
                continue
        except OSError:
            continue
        seconds = cpu_seconds(int(entry.name))
        if seconds is not None:
            found[int(entry.name)] = seconds
    return found


def cpu_spent(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds spent between two ``cpu_by_name`` readings by the processes alive at the
    second; a process that started in between counts from zero, one that ended is missed."""
    return sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items())


@dataclass
class Usage:
    """CPU seconds of the processes of a run at one moment, to subtract from a later reading."""

    bridge: dict[str, float | None]  # bridge process name -> CPU seconds
    broker: float | None
    postgres: dict[int, float] | None  # pid -> CPU seconds; None: not measured
    bench: float


def read_usage(bridge: dict[str, int], broker_pid: int | None, *, postgres: bool) -> Usage:
    """CPU seconds so far of the bridge processes (name -> pid), the broker, every local
    PostgreSQL process (when ``postgres``) and this process."""
    return Usage(
        bridge={name: cpu_seconds(pid) for name, pid in bridge.items()},
        broker=None if broker_pid is None else cpu_seconds(broker_pid),
        postgres=cpu_by_name("postgres") if postgres else None,
        bench=time.process_time(),
    )


def cpu_split(before: Usage, after: Usage) -> dict[str, float | None]:
    """CPU seconds spent between two readings: bridge (all its processes), each bridge process
    (``bridge:NAME``), postgres, broker and bench."""
    per_process = {
        f"bridge:{name}": _minus(after.bridge.get(name), seconds)
        for name, seconds in before.bridge.items()
    }
    values = list(per_process.values())
    split: dict[str, float | None] = {
        "bridge": None if None in values else sum(v for v in values if v is not None),
        "postgres": None
        if before.postgres is None or after.postgres is None
        else cpu_spent(before.postgres, after.postgres),
        "broker": _minus(after.broker, before.broker),
        "bench": after.bench - before.bench,
    }
    split.update(per_process)
    return {name: None if value is None else round(value, 2) for name, value in split.items()}


def _minus(after: float | None, before: float | None) -> float | None:
    return None if after is None or before is None else after - before
