"""``free_port`` keeps out of the kernel's ephemeral range, where an outgoing connection may take
the port between the check and the server's bind."""

from __future__ import annotations

import socket
from pathlib import Path

from bridge.broker import free_port


def test_the_port_is_free_and_below_the_ephemeral_range() -> None:
    first_ephemeral = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    ports = {free_port() for _ in range(50)}
    assert all(1024 <= port < first_ephemeral for port in ports), sorted(ports)
    assert len(ports) > 40, "drawn at random, not the same few"
    for port in list(ports)[:5]:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))
