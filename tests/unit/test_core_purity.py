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


#: What builds SQL statements: only bridge/store (and the migrations) may use it.
STATEMENT_BUILDERS = {"select", "insert", "update", "delete", "text", "func", "and_", "or_"}


def statement_builders(source: str) -> set[str]:
    """The SQL statement builders ``source`` imports from SQLAlchemy."""
    import ast

    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sqlalchemy"):
            found |= {alias.name for alias in node.names} & STATEMENT_BUILDERS
    return found


def test_sql_is_written_only_in_the_store() -> None:
    offenders = []
    for folder in ("bridge", "processors", "approvals"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            relative = path.relative_to(ROOT).as_posix()
            if relative.startswith(("bridge/store/", "bridge/migrations/")):
                continue
            used = statement_builders(path.read_text())
            if used:
                offenders.append(f"{relative}: {', '.join(sorted(used))}")
    assert offenders == []


def test_the_sql_check_sees_a_statement_built_elsewhere() -> None:
    """Control: the same probe reports a builder when one is imported."""
    assert statement_builders("from sqlalchemy import exc, select") == {"select"}
    assert statement_builders("from sqlalchemy.sql import text") == {"text"}
