"""Statements of ``bridge.store.sql_text`` go straight to the driver's cursor on PostgreSQL; its
errors still reach callers as SQLAlchemy raises them, classified the same by
``bridge.failures``, and a connection that broke is invalidated, so the pool hands out a
working one next."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import exc as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from bridge.failures import Retry, classify
from bridge.store import sql_text
from bridge.store.database import open_database
from tests.conftest import create_postgres_database, drop_postgres_database

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

_INSERT = sql_text.statement(
    "INSERT INTO inbox (key, received_at, outcome) VALUES ($1, $2, 'applied')"
)
_KEYS = sql_text.statement("SELECT key FROM inbox WHERE key = ANY($1::varchar[]) ORDER BY key")
_BACKEND = sql_text.statement("SELECT pg_backend_pid()")


@pytest.fixture
async def db(migrated_postgres: str) -> AsyncIterator[AsyncEngine]:
    url = await create_postgres_database(template=migrated_postgres)
    engine = open_database(url)
    try:
        yield engine
    finally:
        await engine.dispose()
        await drop_postgres_database(url)


async def test_rows_and_counts_as_sqlalchemy_gives_them(db: AsyncEngine) -> None:
    now = datetime.now(UTC)
    async with db.begin() as conn:
        assert await sql_text.execute(conn, _INSERT, ("a", now)) == 1
        assert await sql_text.execute(conn, _INSERT, ("b", now)) == 1
        assert await sql_text.fetch(conn, _KEYS, (["a", "b", "c"],)) == [("a",), ("b",)]
    async with db.connect() as conn:
        # Not in a transaction yet: SQLAlchemy runs it (and begins one).
        assert await sql_text.fetch(conn, _KEYS, (["b"],)) == [("b",)]


async def test_a_taken_key_is_a_conflict_to_retry_now(db: AsyncEngine) -> None:
    now = datetime.now(UTC)
    async with db.begin() as conn:
        await sql_text.execute(conn, _INSERT, ("taken", now))
    with pytest.raises(sa.IntegrityError) as raised:
        async with db.begin() as conn:
            await sql_text.execute(conn, _INSERT, ("taken", now))
    assert classify(raised.value) is Retry.NOW
    async with db.begin() as conn:
        assert await sql_text.fetch(conn, _KEYS, (["taken"],)) == [("taken",)]


async def test_a_refused_value_is_not_retried(db: AsyncEngine) -> None:
    with pytest.raises(sa.DBAPIError) as raised:
        async with db.begin() as conn:
            await sql_text.execute(conn, _INSERT, ("nul\x00", datetime.now(UTC)))
    assert classify(raised.value) is Retry.NEVER


async def test_a_connection_that_broke_is_invalidated_and_the_next_works(db: AsyncEngine) -> None:
    async with db.begin() as conn:
        ((pid,),) = await sql_text.fetch(conn, _BACKEND)
    with pytest.raises(sa.DBAPIError) as raised:
        async with db.begin() as conn:
            assert await sql_text.fetch(conn, _BACKEND) == [(pid,)]  # the same connection
            async with db.connect() as other:
                await other.exec_driver_sql(f"SELECT pg_terminate_backend({pid})")
            await sql_text.fetch(conn, _KEYS, (["a"],))
    assert raised.value.connection_invalidated
    assert classify(raised.value) is Retry.LATER
    async with db.begin() as conn:
        ((new_pid,),) = await sql_text.fetch(conn, _BACKEND)
    assert new_pid != pid


async def test_a_statement_cancelled_midway_leaves_no_broken_connection(db: AsyncEngine) -> None:
    async def sleep_in_the_database() -> None:
        async with db.begin() as conn:
            await sql_text.fetch(conn, _BACKEND)
            await sql_text.fetch(conn, sql_text.statement("SELECT pg_sleep(10)"))

    task = asyncio.create_task(sleep_in_the_database())
    await asyncio.sleep(0.5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    for _ in range(3):
        async with asyncio.timeout(5), db.begin() as conn:
            assert await sql_text.fetch(conn, _KEYS, (["x"],)) == []
