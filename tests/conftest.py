"""Shared fixtures: a real Kafka-protocol broker and real databases, started once per session."""

from __future__ import annotations

import ast
import asyncio
import functools
import os
import shutil
import sqlite3
import uuid
from collections.abc import AsyncIterator, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import settings
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from bridge.broker import EmbeddedBroker, free_port
from bridge.store.migrate import upgrade
from tests import bytecode

# Property tests judge results, not speed: a busy machine (the suite runs files side by side)
# must not fail them on hypothesis's default 200 ms deadline per example.
settings.register_profile("bridge", deadline=None)
settings.load_profile("bridge")

# Tests run many `bridge worker` processes on one host: each takes a free port for its probes
# (a test that looks at them names its own).
os.environ.setdefault("BRIDGE_WORKER_HTTP_PORT", "0")

# The test broker (Tansu) holds a JoinGroup for half the consumers' session timeout: with the
# ten-second default for a named cluster, every bridge a test starts waited 5 s for its group
# (about 5 minutes of the suite). Two seconds is what `bridge dev` uses on the same broker.
os.environ.setdefault("BRIDGE_KAFKA_SESSION_TIMEOUT_MS", "2000")

T = TypeVar("T")

POSTGRES_ADMIN_URL = os.environ.get(
    "BRIDGE_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
)


@pytest.fixture(scope="session")
def kafka() -> Iterator[str]:
    """Bootstrap servers of a Tansu broker on a free port (memory storage)."""
    broker = EmbeddedBroker(free_port())
    broker.start()
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


async def create_postgres_database(
    admin_url: str = POSTGRES_ADMIN_URL, template: str | None = None
) -> str:
    """A new, empty PostgreSQL database (or a copy of ``template``); its URL."""
    name = f"bridge_test_{uuid.uuid4().hex[:12]}"
    copy = f' TEMPLATE "{template}"' if template else ""
    admin = create_async_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await conn.execute(text(f'CREATE DATABASE "{name}"{copy}'))
    finally:
        await admin.dispose()
    return admin_url.rsplit("/", 1)[0] + f"/{name}"


async def drop_postgres_database(url: str, admin_url: str = POSTGRES_ADMIN_URL) -> None:
    name = url.rsplit("/", 1)[1]
    admin = create_async_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        await admin.dispose()


def _run_apart(work: Coroutine[Any, Any, T]) -> T:
    """Run ``work`` on an event loop of its own, whether or not one runs here: the session's
    templates are made on first use, from inside a test's async fixture."""
    with ThreadPoolExecutor(1) as thread:
        return thread.submit(asyncio.run, work).result()


async def _migrated(url: str) -> None:
    engine = create_async_engine(url)
    try:
        await upgrade(engine)
    finally:
        # CREATE DATABASE ... TEMPLATE refuses a template anyone is connected to.
        await engine.dispose()


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file at the schema's head, copied for each test that wants one."""
    path = tmp_path_factory.mktemp("template") / "bridge.db"
    _run_apart(_migrated(f"sqlite+aiosqlite:///{path}"))
    with closing(sqlite3.connect(path)) as plain:  # everything into the one file that is copied
        plain.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return path


@pytest.fixture(scope="session")
def migrated_postgres() -> Iterator[str]:
    """The name of a PostgreSQL database at the schema's head, the template of each test's."""
    url = _run_apart(create_postgres_database())
    try:
        _run_apart(_migrated(url))
        yield url.rsplit("/", 1)[1]
    finally:
        _run_apart(drop_postgres_database(url))


#: The databases a test runs against, as fixture parameters.
DATABASES = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=DATABASES, scope="function")
async def database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[str]:
    """A fresh database at the schema's head (no rows): a SQLite file, or a new PostgreSQL
    database dropped afterwards. Copied from one migrated per test process: migrating took
    about half a second per test (tests/integration/test_migrations.py starts from empty ones)."""
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("db") / "bridge.db"
        shutil.copyfile(request.getfixturevalue("migrated_sqlite"), path)
        yield f"sqlite+aiosqlite:///{path}"
        return
    url = await create_postgres_database(template=request.getfixturevalue("migrated_postgres"))
    try:
        yield url
    finally:
        await drop_postgres_database(url)


def pytest_configure(config: pytest.Config) -> None:
    """Before pytest-xdist starts its test processes: compile what each of them would (see
    tests/bytecode.py)."""
    if config.getoption("numprocesses", None) and not hasattr(config, "workerinput"):
        bytecode.warm(config)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``sqlite_only`` run on SQLite alone: what they check (tracing headers, the
    HTTP contract, express history, relaying across a restart) does not depend on the database,
    and the PostgreSQL paths they go through are exercised by the tests that are about them. This
    keeps the whole suite within its time budget."""
    kept, dropped = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        on_postgres = callspec is not None and callspec.params.get("database_url") == "postgres"
        (dropped if on_postgres and item.get_closest_marker("sqlite_only") else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """With ``--dist loadgroup``: each test goes to whichever test process is free, except that
    the tests of a module with a module-scoped fixture (a running bridge per database) stay
    together in one process, which starts that fixture once.

    xdist's own loadgroup reads ``xdist_group`` marks through a node id suffix that pytest 9 no
    longer shows, so the grouping is done here, where the controller schedules by node id."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ModuleFixturesTogether(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return path if has_module_fixture(config.rootpath / path) else nodeid

    return ModuleFixturesTogether(config, log)


@functools.cache
def has_module_fixture(path: Path) -> bool:
    """Whether the test module at ``path`` declares a fixture with ``scope="module"``."""
    if path.suffix != ".py" or not path.exists():
        return False
    return any(
        isinstance(node, ast.keyword)
        and node.arg == "scope"
        and isinstance(node.value, ast.Constant)
        and node.value.value == "module"
        for node in ast.walk(ast.parse(path.read_text()))
    )
