"""How the bridge's PostgreSQL statements are planned: a session plans each prepared statement
for the values it runs with; a batch uses each statement's generic plan, with sequential scans
off, for the rest of its transaction.

PostgreSQL's default is to switch a prepared statement to a generic plan after five runs and to
keep that plan until the table is analyzed again. A worker starts on a nearly empty inbox: the
generic plan of its first statement reads the inbox and the task tokens whole, and where
autovacuum is off or slow to come by it kept doing so as they grew (the fill of
bench/waiting.py slowed from 790 to 400 processes/s over 100 000). Plans, not times.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import pytest
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bridge.store.batch_reads import _OPENING
from bridge.store.database import open_database
from tests.conftest import create_postgres_database, drop_postgres_database
from tests.integration.rows import add_processes

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

ROWS = 20_000

#: What the opening statement reads, without the settings it makes for its batch.
_LOOKUP = """SELECT seen.keys, tokens.hashes
    FROM (SELECT array_agg(key) AS keys FROM inbox WHERE key = ANY($1::varchar[])) AS seen
    CROSS JOIN (
        SELECT array_agg(token_hash) AS hashes FROM task_tokens
        WHERE token_hash = ANY($2::varchar[])
    ) AS tokens"""


@asynccontextmanager
async def fresh_database(template: str) -> AsyncIterator[AsyncEngine]:
    """A new migrated database with one process, ``p``, and empty inbox and task tokens."""
    url = await create_postgres_database(template=template)
    engine = open_database(url)
    try:
        await add_processes(engine, datetime(2026, 12, 4, tzinfo=UTC), "p")
        yield engine
    finally:
        await engine.dispose()
        await drop_postgres_database(url)


async def _grow(conn: AsyncConnection) -> None:
    await conn.exec_driver_sql(
        "INSERT INTO inbox (key, received_at, outcome) "
        f"SELECT 'k' || n, now(), 'applied' FROM generate_series(1, {ROWS}) AS n"
    )
    await conn.exec_driver_sql(
        "INSERT INTO task_tokens (token_hash, process_id, wait_id, state, created_at) "
        f"SELECT 't' || n, 'p', 'w', 'S', now() FROM generate_series(1, {ROWS}) AS n"
    )


async def _open_as_a_batch(conn: AsyncConnection) -> None:
    """Run a batch's opening statement (on empty lists), as a batch begins its transaction."""
    await conn.exec_driver_sql(
        f"PREPARE batch_opening(varchar[], varchar[]) AS {_OPENING.postgres}"
    )
    await conn.exec_driver_sql("EXECUTE batch_opening('{}', '{}')")
    await conn.exec_driver_sql("DEALLOCATE batch_opening")


async def _plan_after_growth(conn: AsyncConnection, *, in_batches: bool) -> str:
    """The plan of the lookup, prepared and run eight times on empty tables, then explained
    once the inbox and the task tokens hold ``ROWS`` rows each; with ``in_batches``, each run
    and the explaining in a transaction that a batch's opening statement began."""
    await conn.exec_driver_sql(f"PREPARE lookup(varchar[], varchar[]) AS {_LOOKUP}")
    for _ in range(8):
        if in_batches:
            await _open_as_a_batch(conn)
        await conn.exec_driver_sql("EXECUTE lookup('{a}', '{b}')")
        await conn.commit()
    await _grow(conn)
    await conn.commit()
    if in_batches:
        await _open_as_a_batch(conn)
    result = await conn.exec_driver_sql("EXPLAIN EXECUTE lookup('{k1}', '{t1}')")
    plan = "\n".join(row[0] for row in result)
    await conn.commit()
    await conn.exec_driver_sql("DEALLOCATE lookup")
    return plan


async def _plans(template: str, *, in_batches: bool, contrast_mode: str) -> tuple[str, str]:
    """The lookup's plan after growth on the bridge's session, and, for contrast, on a session
    with ``plan_cache_mode = contrast_mode`` outside batches; each on a fresh database."""
    async with fresh_database(template) as db, db.connect() as conn:
        plan = await _plan_after_growth(conn, in_batches=in_batches)
    async with fresh_database(template) as db, db.connect() as conn:
        await conn.exec_driver_sql(f"SET plan_cache_mode = {contrast_mode}")
        contrast = await _plan_after_growth(conn, in_batches=False)
    return plan, contrast


def _assert_reads_by_index(plan: str) -> None:
    assert "Seq Scan" not in plan, plan
    assert "pk_inbox" in plan and "pk_task_tokens" in plan, plan


async def test_a_statement_first_run_on_empty_tables_reads_them_by_index_later(
    migrated_postgres: str,
) -> None:
    # The contrast is PostgreSQL's default: the plan made on the empty tables stays.
    plan, default_plan = await _plans(migrated_postgres, in_batches=False, contrast_mode="auto")
    _assert_reads_by_index(plan)
    assert "Seq Scan on inbox" in default_plan, default_plan


async def test_a_batch_keeps_its_generic_plans_and_they_read_by_index_as_tables_grow(
    migrated_postgres: str,
) -> None:
    # The contrast is the generic plan alone: made on empty tables, it reads them whole.
    plan, generic_plan = await _plans(
        migrated_postgres, in_batches=True, contrast_mode="force_generic_plan"
    )
    _assert_reads_by_index(plan)
    assert "Seq Scan on inbox" in generic_plan, generic_plan


async def test_the_batch_settings_last_as_long_as_its_transaction(migrated_postgres: str) -> None:
    async def settings(conn: AsyncConnection) -> tuple[str, str]:
        result = await conn.exec_driver_sql(
            "SELECT current_setting('plan_cache_mode'), current_setting('enable_seqscan')"
        )
        ((mode, seqscan),) = result.all()
        return mode, seqscan

    async with fresh_database(migrated_postgres) as db, db.connect() as conn:
        assert await settings(conn) == ("force_custom_plan", "on")
        await conn.commit()
        await _open_as_a_batch(conn)
        assert await settings(conn) == ("force_generic_plan", "off")
        await conn.rollback()
        assert await settings(conn) == ("force_custom_plan", "on")
