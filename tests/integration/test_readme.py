"""The README's commands and snippets, run as a reader would run them, so the docs cannot drift.

Every ``sh`` and ``python`` block of README.md runs here: Python snippets as scripts from the
project folder; in shell blocks, ``bridge`` commands (``.venv/bin/bridge`` too) against the test
broker, and ``curl`` commands against a running bridge at the README's address. A block that
cannot run here says why in a comment just above it: ``<!-- not run by the README test: ... -->``.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.harness import running_bridge

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
FENCE = re.compile(r"^\s*```(\w*)\s*$")
SKIP = re.compile(r"<!-- not run by the README test: (.+?) -->")
README_WEB = "http://127.0.0.1:8080"


@dataclass(frozen=True)
class Block:
    language: str
    code: str
    line: int
    skipped: str | None


def blocks() -> list[Block]:
    found: list[Block] = []
    lines = README.read_text(encoding="utf-8").splitlines()
    index = 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        end = next(i for i in range(index + 1, len(lines)) if FENCE.match(lines[i]))
        body = [
            line.strip() if opening.group(1) == "sh" else line for line in lines[index + 1 : end]
        ]
        before = "\n".join(lines[max(index - 3, 0) : index])
        reason = SKIP.search(before)
        found.append(
            Block(opening.group(1), _dedent(body), index + 1, reason.group(1) if reason else None)
        )
        index = end + 1
    return found


def _dedent(lines: list[str]) -> str:
    indents = [len(line) - len(line.lstrip()) for line in lines if line.strip()]
    cut = min(indents, default=0)
    return "\n".join(line[cut:] for line in lines)


def commands(code: str) -> list[str]:
    """The shell commands of a block: continuation lines and quotes spanning lines joined,
    comment lines dropped."""
    joined = re.sub(r"\\\n\s*", " ", code)
    found: list[str] = []
    pending = ""
    for line in joined.splitlines():
        if not pending and (not line.strip() or line.startswith("#")):
            continue
        pending = f"{pending}\n{line}" if pending else line
        try:
            shlex.split(pending)
        except ValueError:
            continue  # a quote still open: the command goes on
        found.append(pending)
        pending = ""
    assert not pending, f"unbalanced quotes in {pending!r}"
    return found


#: The README opens with two commands: the demo (it runs until Ctrl-C) and the whole test suite
#: (CI runs exactly that); the rest runs here.
OPENING = 2
RUN = [
    block
    for block in blocks()[OPENING:]
    if block.language in ("sh", "python") and not block.skipped
]


def test_the_readme_opens_with_the_demo_and_the_suite() -> None:
    demo, suite = (block.code for block in blocks()[:OPENING])
    assert demo.endswith("bridge dev")
    assert suite == (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]


def test_every_block_runs_here_or_says_why_not() -> None:
    assert RUN, "no README block runs"
    for block in RUN:
        if block.language == "sh":
            for command in commands(block.code):
                assert command.startswith(("bridge ", ".venv/bin/bridge ", "curl ")), (
                    f"README.md:{block.line}: {command!r} is not run by this test; run it here "
                    "or say why not in a comment above the block"
                )


@pytest.mark.parametrize(
    "block", [b for b in RUN if b.language == "python"], ids=lambda b: f"line-{b.line}"
)
def test_python_snippets_run(block: Block) -> None:
    result = subprocess.run(
        [sys.executable, "-c", block.code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"README.md:{block.line}:\n{result.stderr}"


async def test_shell_commands_run(kafka: str, tmp_path: Path) -> None:
    shell = [
        (block, command)
        for block in RUN
        if block.language == "sh"
        for command in commands(block.code)
    ]
    assert shell
    async with running_bridge(f"sqlite+aiosqlite:///{tmp_path}/b.db", kafka, tmp_path) as bridge:
        for block, command in shell:
            words = shlex.split(command)
            if words[0] == "curl":
                if shutil.which("curl") is None:
                    pytest.skip("no curl on this machine")
                # The bridge here reads the example's topics under names of its own.
                topic = f"topic={bridge.topics['orders.events']}"
                words = ["curl", "--fail-with-body", "-sS"] + [
                    re.sub(
                        r"topic=orders\.events\b(?!\.)", topic, word.replace(README_WEB, bridge.url)
                    )
                    for word in words[1:]
                ]
            else:
                words = [sys.executable, "-m", "bridge", *words[1:]]
            # In a thread: the bridge that curl talks to runs on this test's event loop.
            result = await asyncio.to_thread(
                subprocess.run,
                words,
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
                env={
                    **os.environ,
                    "BRIDGE_KAFKA_BOOTSTRAP": kafka,
                    "BRIDGE_DATABASE_URL": bridge.settings.database_url,
                    # Commands that talk to the API (bridge schedules, bridge bulk) reach it.
                    "BRIDGE_URL": bridge.url,
                },
            )
            where = f"README.md:{block.line}: {command}"
            assert result.returncode == 0, f"{where}\n{result.stdout}\n{result.stderr}"
            if words[0] == "curl" or "--json" in words or " run " in f" {command} ":
                json.loads(result.stdout)
