"""schemathesis against a running ``bridge dev``: no 5xx on any input, every answer matches the
OpenAPI document (status, content type, headers, body), refused input is refused, the API token is
enforced. On SQLite and PostgreSQL (which refuses NUL characters that SQLite stores)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import urllib.request
from pathlib import Path

import pytest

from bridge.broker import free_port

pytestmark = pytest.mark.integration
HERE = Path(__file__).resolve().parent
ADMIN = "fuzz-admin-token"
SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"


def _call(url: str, method: str = "GET", body: object = None) -> tuple[int, object]:
    request = urllib.request.Request(
        url,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {ADMIN}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, json.loads(response.read() or b"null")


async def _until_healthy(url: str, process: asyncio.subprocess.Process, log: Path) -> None:
    for _ in range(300):
        if process.returncode is not None:
            break
        try:
            await asyncio.to_thread(_call, f"{url}/healthz")
            return
        except OSError:
            await asyncio.sleep(0.2)
    raise AssertionError(f"bridge dev did not come up:\n{log.read_text()[-4000:]}")


# About 2,000 requests: half a minute alone, several times that on a machine running other
# suites. Its own bound is the wait for schemathesis below.
@pytest.mark.timeout(480)
async def test_schemathesis_finds_nothing(database_url: str, tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "bridge.log"
    env = {
        **os.environ,
        "BRIDGE_EMBEDDED_BROKER_PORT": str(free_port()),
        "BRIDGE_DATABASE_URL": database_url,
        "BRIDGE_API_ADMIN_TOKENS": ADMIN,
        "BRIDGE_API_READ_TOKENS": "fuzz-read-token",
    }
    with log.open("w") as output:
        bridge = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bridge", "dev", "--port", str(port),
            cwd=tmp_path, env=env, stdout=output, stderr=output,
        )  # fmt: skip
    try:
        await _until_healthy(url, bridge, log)
        # Something to find: a running process, a second version and an alias.
        order = {"orderId": "o-fuzz", "amount": 5, "customerId": "c", "items": []}
        await asyncio.to_thread(
            _call, f"{url}/processes", "POST", {"definition": "order-saga", "input": order}
        )
        _, definition = await asyncio.to_thread(_call, f"{url}/definitions/order-saga")
        document = dict(definition["document"], Comment="second version")  # type: ignore[index]
        await asyncio.to_thread(_call, f"{url}/definitions/order-saga", "PUT", document)
        routes = {"routes": [{"version": 1, "weight": 50}, {"version": 2, "weight": 50}]}
        await asyncio.to_thread(_call, f"{url}/definitions/order-saga/aliases/live", "PUT", routes)

        fuzz = await asyncio.create_subprocess_exec(
            str(SCHEMATHESIS), "--no-color", "--config-file", str(HERE / "schemathesis.toml"),
            "run", f"{url}/openapi.json",
            "--header", f"Authorization: Bearer {ADMIN}",
            "--checks", "all", "--exclude-checks", "positive_data_acceptance",
            "--max-examples", "12", "--workers", "1",
            "--seed", "20261122", "--generation-database", "none",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=tmp_path,
        )  # fmt: skip
        printed, _ = await asyncio.wait_for(fuzz.communicate(), timeout=400)
        report = printed.decode(errors="replace")
        print(report[-3000:])
        assert fuzz.returncode == 0, report[-20_000:]
        logged = log.read_text()
        assert "request failed" not in logged, logged[-10_000:]
    finally:
        if bridge.returncode is None:
            bridge.terminate()
            await asyncio.wait_for(bridge.wait(), timeout=30)
