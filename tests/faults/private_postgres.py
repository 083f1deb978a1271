"""A PostgreSQL server of a test's own, started from the installed binaries on a free port.

The restart test stops and starts PostgreSQL under a running worker. On the shared server that
would cut every other test's connections (and the suite runs tests side by side), so the test
runs its own server: ``initdb`` into a temporary folder, ``pg_ctl start``/``stop`` on it. As root,
the server runs as the ``postgres`` user (PostgreSQL refuses to run as root).
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bridge.broker import free_port


def binaries() -> Path | str:
    """The folder of the newest installed server's binaries, or why there is none."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=_version)
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("pg_ctl")
    if on_path and shutil.which("initdb"):
        return Path(on_path).parent
    return "no PostgreSQL server binaries (pg_ctl, initdb) are installed"


def _version(path: str) -> int:
    part = path.split("/")[4]
    return int(part) if part.isdigit() else 0


@dataclass
class PrivatePostgres:
    bindir: Path
    folder: Path
    port: int

    @property
    def admin_url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        command = [str(self.bindir / argv[0]), *argv[1:]]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout)

    def init(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres", "postgres")
        done = self._run(
            "initdb", "-D", str(self.folder / "data"), "-U", "postgres", "--auth=trust", "-N"
        )
        assert done.returncode == 0, done.stderr

    def start(self) -> None:
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        done = self._run(
            "pg_ctl",
            "-D",
            str(self.folder / "data"),
            "-l",
            str(self.folder / "log"),
            "-o",
            options,
            "-w",
            "start",
        )
        assert done.returncode == 0, f"{done.stderr}\n{(self.folder / 'log').read_text()}"

    def stop(self, mode: str = "fast") -> None:
        done = self._run("pg_ctl", "-D", str(self.folder / "data"), "-m", mode, "-w", "stop")
        assert done.returncode == 0, done.stderr

    def running(self) -> bool:
        return self._run("pg_ctl", "-D", str(self.folder / "data"), "status").returncode == 0

    def remove(self) -> None:
        if self.running():
            self.stop("immediate")
        shutil.rmtree(self.folder, ignore_errors=True)


def private_postgres() -> PrivatePostgres | str:
    """A new, stopped server in a folder of its own, or why there can be none here. The folder
    is under the system's temporary folder, which the ``postgres`` user can reach (pytest's
    temporary folders are the test user's alone); ``remove`` deletes it."""
    bindir = binaries()
    if isinstance(bindir, str):
        return bindir
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "running PostgreSQL as root needs runuser"
    server = PrivatePostgres(bindir, Path(tempfile.mkdtemp(prefix="bridge-pg-")), free_port())
    server.init()
    return server
