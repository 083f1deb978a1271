"""The demo's script, played as the README says: it ends with the process's outcome, whether the
order completes or a person rejects it."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from bridge.definitions import EXAMPLES_DIR
from tests.integration.harness import running_bridge

pytestmark = pytest.mark.integration

SCRIPT = EXAMPLES_DIR / "try_order.py"


async def play(kafka: str, web: str, *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        str(SCRIPT),
        "--kafka",
        kafka,
        "--web",
        web,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def lines_until(script: asyncio.subprocess.Process, text: str) -> list[str]:
    assert script.stdout is not None
    seen: list[str] = []
    while True:
        line = (await asyncio.wait_for(script.stdout.readline(), 30)).decode()
        assert line, f"the script ended before printing {text!r}: {seen}"
        seen.append(line.rstrip())
        if text in line:
            return seen


async def test_the_script_ends_with_the_outcome(kafka: str, tmp_path: Path) -> None:
    database = f"sqlite+aiosqlite:///{tmp_path}/b.db"
    async with running_bridge(
        database,
        kafka,
        tmp_path,
        definitions=EXAMPLES_DIR,
        kafka_replies_topic="bridge.replies",
        kafka_approvals_topic="bridge.approvals",
    ) as bridge:
        small = await play(kafka, bridge.url, "--amount", "120")
        seen = await lines_until(small, "process ")
        assert "SUCCEEDED" in seen[-1], seen
        assert await asyncio.wait_for(small.wait(), 30) == 0

        large = await play(kafka, bridge.url, "--amount", "950")
        seen = await lines_until(large, "or reject: ")
        reject_url = seen[-1].split("or reject: ", 1)[1]
        async with bridge.http.post(reject_url, json={}) as response:
            assert response.status == 200
        seen = await lines_until(large, "process ")
        assert "FAILED (Approval.Rejected" in seen[-1], seen
        assert await asyncio.wait_for(large.wait(), 30) == 1
