"""Rows written and transactions of one PostgreSQL database, from ``pg_stat_user_tables`` and
``pg_stat_database``, and the server's WAL from ``pg_stat_wal``: a snapshot before and after a
run, the difference per order. The WAL is the whole server's: on a machine where only the bench
writes, it is the run's.

PostgreSQL 15 flushes a backend's counters at most once a second, and an idle backend's within
about ten seconds; a backend flushes at exit. Take the second snapshot after the clients have
disconnected to see everything they did.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

TABLES = """
SELECT relname, n_tup_ins, n_tup_upd, n_tup_del, n_tup_hot_upd
FROM pg_stat_user_tables
"""
DATABASE = """
SELECT xact_commit, xact_rollback
FROM pg_stat_database
WHERE datname = current_database()
"""
WAL = "SELECT wal_bytes FROM pg_stat_wal"


@dataclass(frozen=True)
class PgSnapshot:
    #: table -> (inserted, updated, deleted, updated in place) rows; an update "in place"
    #: (heap-only) wrote no index entry.
    tables: dict[str, tuple[int, int, int, int]]
    commits: int
    rollbacks: int
    wal_bytes: int


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
            wal_bytes = (await conn.execute(text(WAL))).scalar_one()
    finally:
        await engine.dispose()
    return PgSnapshot(
        tables={
            str(name): (int(ins), int(upd), int(dels), int(hot))
            for name, ins, upd, dels, hot in rows
        },
        commits=int(commits),
        rollbacks=int(rollbacks),
        wal_bytes=int(wal_bytes),
    )


def per_order(before: PgSnapshot, after: PgSnapshot, orders: int) -> dict[str, Any]:
    """Rows written (inserted + updated + deleted) and transactions between the snapshots,
    divided by ``orders``; per table too (tables with no writes left out, and ``hot``: the
    updates that wrote no index entry); and the WAL written, in bytes per order."""
    if orders <= 0:
        return {}
    by_table: dict[str, dict[str, float]] = {}
    total = 0
    for table, counts in sorted(after.tables.items()):
        old = before.tables.get(table, (0, 0, 0, 0))
        ins, upd, dels, hot = (new - was for new, was in zip(counts, old, strict=True))
        if ins or upd or dels:
            total += ins + upd + dels
            by_table[table] = {
                "ins": round(ins / orders, 2),
                "upd": round(upd / orders, 2),
                "del": round(dels / orders, 2),
                "hot": round(hot / orders, 2),
            }
    commits = after.commits - before.commits
    rollbacks = after.rollbacks - before.rollbacks
    return {
        "rows_written_per_order": round(total / orders, 2),
        "rows_written_per_order_by_table": by_table,
        "commits_per_order": round(commits / orders, 2),
        "rollbacks_per_order": round(rollbacks / orders, 2),
        "transactions_per_order": round((commits + rollbacks) / orders, 2),
        "wal_bytes_per_order": round((after.wal_bytes - before.wal_bytes) / orders),
        "rows_written": total,
        "commits": commits,
        "rollbacks": rollbacks,
    }
