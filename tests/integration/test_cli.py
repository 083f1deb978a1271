"""The command line as users run it: ``bridge dev`` starts, answers, and stops on Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from bridge.broker import free_port

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def test_bridge_dev_starts_answers_and_stops(tmp_path: Path) -> None:
    http_port, broker_port = free_port(), free_port()
    env = {
        **os.environ,
        "BRIDGE_EMBEDDED_BROKER_PORT": str(broker_port),
        "BRIDGE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/bridge.db",
    }
    output = open(tmp_path / "out.log", "w+")  # noqa: SIM115 - the child writes to it
    process = subprocess.Popen(
        [sys.executable, "-m", "bridge", "dev", "--port", str(http_port)],
        cwd=tmp_path,  # no ./definitions here: the shipped examples are loaded
        env=env,
        stdout=output,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        health = None
        while time.monotonic() < deadline and process.poll() is None:
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{http_port}/healthz", timeout=1
                ) as r:
                    health = json.loads(r.read())
                    break
            except OSError:
                time.sleep(0.2)
        printed = Path(output.name).read_text()
        assert health == {
            "status": "ok",
            "definitions": ["aggregator", "order-batch", "order-saga", "shipment-follow-up"],
        }, printed
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
        printed = Path(output.name).read_text()
        assert f"127.0.0.1:{broker_port} (embedded broker" in printed
        assert f"http://127.0.0.1:{http_port}" in printed
        assert "order-saga v1 (OrderPlaced on orders.events)" in printed
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        output.close()


def test_validate_names_state_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "broken.asl.json"
    bad.write_text(json.dumps({"StartAt": "A", "States": {"A": {"Type": "Pass", "Next": "B"}}}))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bridge",
            "validate",
            str(bad),
            str(ROOT / "examples" / "order-saga.asl.yaml"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "States.A.Next: state 'B' does not exist" in result.stdout
    assert "ok" in result.stdout and "order-saga" in result.stdout
