"""The timer scan reads only the processes that have a timer: its statements go through the
partial index on ``processes.wake_at``, never a scan of every process (most have ended, and
the scan runs whenever a timer comes due). Plans, not times. SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncConnection

from bridge.store import sql_text, timers
from bridge.store.database import open_database
from bridge.store.migrate import upgrade

pytestmark = pytest.mark.integration

ROWS = 20_000
#: One process in this many has a timer.
WITH_TIMER = 100


async def _fill(conn: AsyncConnection) -> None:
    """``ROWS`` ended processes, every ``WITH_TIMER``-th running with a wake time."""
    numbers = (
        f"SELECT n FROM generate_series(1, {ROWS}) AS n"
        if sql_text.is_postgres(conn)
        else f"WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < {ROWS}) "
        "SELECT n FROM s"
    )
    now = "now()" if sql_text.is_postgres(conn) else "strftime('%Y-%m-%d %H:%M:%f', 'now')"
    await conn.exec_driver_sql(
        "INSERT INTO processes (id, definition, version, status, state, started_at, "
        "updated_at, history_seq, row_version, wake_at) "
        f"SELECT 'p' || n, 'd', 1, 'SUCCEEDED', '{{}}', {now}, {now}, 0, 1, "
        f"CASE WHEN n % {WITH_TIMER} = 0 THEN {now} ELSE NULL END FROM ({numbers}) AS numbers"
    )
    await conn.exec_driver_sql("ANALYZE")


async def _plan(conn: AsyncConnection, statement: sql_text.Statement, *values: object) -> str:
    if sql_text.is_postgres(conn):
        types = f"({', '.join(('timestamptz', 'int')[: len(values)])})" if values else ""
        await conn.exec_driver_sql(f"PREPARE scan{types} AS {statement.postgres}")
        try:
            # EXPLAIN EXECUTE takes no parameters: the values go in as literals.
            literals = ", ".join(
                f"'{value.isoformat()}'" if isinstance(value, datetime) else str(value)
                for value in values
            )
            rows = await conn.exec_driver_sql(
                f"EXPLAIN EXECUTE scan({literals})" if values else "EXPLAIN EXECUTE scan"
            )
            return "\n".join(str(row[0]) for row in rows)
        finally:
            await conn.exec_driver_sql("DEALLOCATE scan")
    rows = await conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement.sqlite}", tuple(values))
    return "\n".join(str(row[-1]) for row in rows)


async def test_the_timer_scan_reads_the_wake_time_index(database_url: str) -> None:
    db = open_database(database_url)
    try:
        await upgrade(db)
        async with db.begin() as conn:
            await _fill(conn)
            later = datetime.now(UTC) + timedelta(minutes=1)
            due = await _plan(conn, timers._DUE, sql_text.time(conn, later), 100)
            following = await _plan(conn, timers._NEXT)
            found, stale = await timers.due(conn, later, 1000)
    finally:
        await db.dispose()
    for plan in (due, following):
        assert "ix_processes_wake_at" in plan, plan
        assert "Seq Scan" not in plan and "SCAN processes\n" not in f"{plan}\n", plan
    # Those processes' states name no timer: each is reported for repair, none fires.
    assert found == [] and len(stale) == ROWS // WITH_TIMER
