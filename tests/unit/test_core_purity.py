"""The pure core (bridge.asl) must not pull in I/O: no broker, database or HTTP client libraries.

Each check runs in a fresh interpreter, so modules other tests imported cannot hide or fake a
result.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

#: Top-level packages (or dotted modules) that do I/O and have no place in the pure core.
FORBIDDEN = (
    "aiokafka",
    "kafka",
    "faust",
    "mode",
    "sqlalchemy",
    "alembic",
    "asyncpg",
    "aiosqlite",
    "psycopg",
    "psycopg2",
    "aiohttp",
    "aiohttp_jinja2",
    "requests",
    "httpx",
    "urllib3",
    "http.client",
)

SCRIPT = """
import importlib, json, pkgutil, sys
{extra}
import bridge.asl
core = sorted(
    module.name for module in pkgutil.iter_modules(bridge.asl.__path__, "bridge.asl.")
)
for name in core:
    importlib.import_module(name)
print(json.dumps({{"core": core, "modules": sorted(sys.modules)}}))
"""


def imported_by_core(extra: str = "") -> tuple[list[str], list[str]]:
    """Import bridge.asl and every submodule in a fresh interpreter; return them and sys.modules."""
    completed = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(extra=extra)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    report = json.loads(completed.stdout)
    return report["core"], report["modules"]


def forbidden_in(modules: list[str]) -> list[str]:
    return sorted(
        name
        for name in modules
        if any(name == bad or name.startswith(bad + ".") for bad in FORBIDDEN)
    )


def test_importing_the_core_pulls_in_no_io_library() -> None:
    core, modules = imported_by_core()

    # Every module of the core was imported, so none escapes the check.
    for name in ("model", "process", "inputs", "effects", "interpreter", "paths", "choice"):
        assert f"bridge.asl.{name}" in core
    assert forbidden_in(modules) == []


def test_the_core_imports_no_other_part_of_bridge() -> None:
    _, modules = imported_by_core()
    outside = [
        name for name in modules if name.startswith("bridge.") and name.split(".")[1] != "asl"
    ]
    assert outside == []


def test_the_check_sees_a_forbidden_import() -> None:
    """Control: the same probe reports an I/O library when one is imported."""
    _, modules = imported_by_core(extra="import http.client")
    assert forbidden_in(modules) == ["http.client"]
