"""bridge's processes load SQLAlchemy's asyncio engine without its ORM (bridge/lean_imports.py),
and code that asks for the ORM's async names still gets them."""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = """
import json, sys
import bridge.cli
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncResult, create_async_engine
engine_only = "sqlalchemy.orm" not in sys.modules
import sqlalchemy.ext.asyncio as lean
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
names = sorted(n for n in vars(lean) if not n.startswith("_"))
print(json.dumps({"engine_only": engine_only, "names": names, "session": AsyncSession.__name__}))
"""

PLAIN = """
import json
import sqlalchemy.ext.asyncio as plain
print(json.dumps(sorted(n for n in vars(plain) if not n.startswith("_"))))
"""


def _run(code: str) -> object:
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    return json.loads(result.stdout)


def test_the_engine_comes_without_the_orm_and_the_rest_on_demand() -> None:
    probe = _run(PROBE)
    assert isinstance(probe, dict)
    assert probe["engine_only"], "importing the engine's names loaded sqlalchemy.orm"
    assert probe["session"] == "AsyncSession"
    assert set(_run(PLAIN)) <= set(probe["names"]), "the completed module lacks a name"


FALLBACK = """
import json, sys
from bridge import lean_imports
lean_imports._engine_names = lambda source: {"gone": [("AsyncEngine", "AsyncEngine")]}
lean_imports.install()
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
print(json.dumps({"orm": "sqlalchemy.orm" in sys.modules, "engine": AsyncEngine.__name__}))
"""


def test_a_changed_package_layout_falls_back_to_the_whole_import() -> None:
    assert _run(FALLBACK) == {"orm": True, "engine": "AsyncEngine"}
