"""bridge's processes load SQLAlchemy's asyncio engine without its ORM (bridge/lean_imports.py),
and code that asks for the ORM's async names still gets them; libraries for features a
deployment may not use are loaded when first used."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

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


OPTIONAL = """
import json, sys
import bridge.cli
from bridge.bootstrap import Web, open_core
from bridge.worker import Worker
import approvals.app
loaded = [name for name in ("jsonata", "jsonpath_ng", "croniter", "sqlite3") if name in sys.modules]
from bridge.asl import jsonata, paths, schedule_times
limit = sys.getrecursionlimit()
jsonata.evaluate("{% $x + 1 %}", {"x": 1}, None)
paths.read_path("$.items[*].n", {"items": [{"n": 1}]}, {})
assert schedule_times.spec_problems("0 9 * * 1-5", "UTC", None, None) == []
now = [name for name in ("jsonata", "jsonpath_ng", "croniter") if name in sys.modules]
print(json.dumps({"loaded": loaded, "limit_kept": sys.getrecursionlimit() == limit, "now": now}))
"""


def test_jsonata_jsonpath_ng_croniter_and_sqlite3_load_only_when_used() -> None:
    # About 4 MiB of every process on PostgreSQL whose definitions need none of them.
    assert _run(OPTIONAL) == {
        "loaded": [],
        "limit_kept": True,
        "now": ["jsonata", "jsonpath_ng", "croniter"],
    }


KAFKA_CLIENT = """
import asyncio, json, sys
import bridge.cli
from bridge.bootstrap import Web, open_core
import approvals.app
from bridge.event_producer import EventProducer, ProducerUnavailable
from bridge.http_events import OutgoingEvent
from bridge.lag import ConsumerLag
at_start = "aiokafka" in sys.modules

async def publish() -> str:
    producer = EventProducer("127.0.0.1:9", timeout_seconds=0.5)
    event = OutgoingEvent("orders", None, b"{}", (), None, None, None)
    try:
        await producer.send(event)
    except ProducerUnavailable:
        return "unavailable"
    finally:
        await producer.close()
    return "sent"

async def read_lag() -> dict:
    return await ConsumerLag("127.0.0.1:9", "g", lambda: ["orders"], wait=0.1).read()

outcome = asyncio.run(publish() if sys.argv[1] == "publish" else read_lag())
print(json.dumps({"at_start": at_start, "outcome": outcome, "after": "aiokafka" in sys.modules}))
"""


@pytest.mark.parametrize(("use", "outcome"), [("publish", "unavailable"), ("lag", {})])
def test_a_web_process_loads_the_kafka_client_only_to_publish_or_read_the_lag(
    use: str, outcome: object
) -> None:
    # About 5 MiB of a web process that never publishes an event and whose /metrics nobody
    # scrapes; the worker imports it at start either way. Each use alone loads it.
    result = subprocess.run(
        [sys.executable, "-c", KAFKA_CLIENT, use],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert json.loads(result.stdout) == {"at_start": False, "outcome": outcome, "after": True}
