"""Rows written and transactions of one PostgreSQL database, from ``pg_stat_user_tables`` and
``pg_stat_database``: a snapshot before and after a run, the difference per order.

PostgreSQL 15 flushes a backend's counters at most once a second, and an idle backend's within
about ten seconds; a backend flushes at exit. Take the second snapshot after the clients have
disconnected to see everything they did.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

TABLES = """
SELECT relname, n_tup_ins, n_tup_upd, n_tup_del
FROM pg_stat_user_tables
"""
DATABASE = """
SELECT xact_commit, xact_rollback
FROM pg_stat_database
WHERE datname = current_database()
"""


@dataclass(frozen=True)
class PgSnapshot:
    tables: dict[str, tuple[int, int, int]]  # table -> (inserted, updated, deleted) rows
    commits: int
    rollbacks: int


async def snapshot(database_url: str) -> PgSnapshot:
    """The counters of the database at ``database_url`` (SQLAlchemy asyncpg URL), read on a
    fresh connection (the statistics snapshot is per transaction)."""
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(database_url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            rows = (await conn.execute(text(TABLES))).all()
            commits, rollbacks = (await conn.execute(text(DATABASE))).one()
    finally:
        await engine.dispose()
    return PgSnapshot(
        tables={str(name): (int(ins), int(upd), int(dels)) for name, ins, upd, dels in rows},
        commits=int(commits),
        rollbacks=int(rollbacks),
    )


def per_order(before: PgSnapshot, after: PgSnapshot, orders: int) -> dict[str, Any]:
    """Rows written (inserted + updated + deleted) and transactions between the snapshots,
    divided by ``orders``; per table too (tables with no writes left out)."""
    if orders <= 0:
        return {}
    by_table: dict[str, dict[str, float]] = {}
    total = 0
    for table, counts in sorted(after.tables.items()):
        old = before.tables.get(table, (0, 0, 0))
        ins, upd, dels = (new - was for new, was in zip(counts, old, strict=True))
        if ins or upd or dels:
            total += ins + upd + dels
            by_table[table] = {
                "ins": round(ins / orders, 2),
                "upd": round(upd / orders, 2),
                "del": round(dels / orders, 2),
            }
    commits = after.commits - before.commits
    rollbacks = after.rollbacks - before.rollbacks
    return {
        "rows_written_per_order": round(total / orders, 2),
        "rows_written_per_order_by_table": by_table,
        "commits_per_order": round(commits / orders, 2),
        "rollbacks_per_order": round(rollbacks / orders, 2),
        "transactions_per_order": round((commits + rollbacks) / orders, 2),
        "rows_written": total,
        "commits": commits,
        "rollbacks": rollbacks,
    }
