"""Search attribute filters on a large process table: the plans PostgreSQL picks, and their times.

    .venv/bin/python bench/search_attributes.py                     # a million processes
    .venv/bin/python bench/search_attributes.py --processes 200000 --keep

Creates a fresh PostgreSQL database on postgres@127.0.0.1:5432 (dropped at the end unless
``--keep``), migrates it, fills it with ``--processes`` processes of one definition (one in ten
FAILED, the rest RUNNING, a second apart) and three search attributes each (``customerId``: 20
processes a customer; ``amount``: 0 to 9999; ``region``: one of five), analyses the tables, then
runs the process list's query (``bridge.store.processes.find_query``, the first page of 100) for
a set of filters, with ``EXPLAIN ANALYZE``. It prints each filter, its rows, the time PostgreSQL
reports, and which indexes the plan uses. A printed figure, not a test: the test suite checks the
plans on a smaller table (tests/integration/test_search_index_plans.py).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import time
import uuid

from sqlalchemy import text
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from bridge.asl.search_filter import parse_all
from bridge.store.database import open_database
from bridge.store.migrate import upgrade
from bridge.store.processes import find_query

SERVER = "postgresql+asyncpg://postgres@127.0.0.1:5432"

#: (filters, other filters of the list) as an operator would ask.
CASES: list[tuple[list[str], dict[str, str]]] = [
    (["customerId=c-1234"], {}),
    (["customerId=c-1234"], {"status": "RUNNING", "definition": "orders"}),
    (["customerId^=c-1234"], {}),
    (["amount>=9990"], {}),
    (["amount>=100", "amount<101"], {}),
    (["customerId^=c-12", "amount<50"], {}),
    (["region=eu"], {}),
    (["region=eu"], {"status": "FAILED"}),
    (["customerId=nobody"], {}),
]

FILL = """
WITH numbered AS (
    SELECT i, 'p-' || lpad(i::text, 8, '0') AS id,
           CASE WHEN i % 10 = 0 THEN 'FAILED' ELSE 'RUNNING' END AS status,
           timestamptz '2026-01-01 00:00:00+00' + make_interval(secs => i) AS started_at
    FROM generate_series(1, :count) AS i
)
INSERT INTO processes (id, definition, version, correlation_key, status, current_state, state,
                       started_at, updated_at, history_seq, row_version)
SELECT id, 'orders', 1, NULL, status, 'Pay',
       jsonb_build_object(
           'id', id, 'definition', 'orders', 'version', 1, 'status', status,
           'started_at', to_char(started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')),
       started_at, started_at, 0, 1
FROM numbered
"""

FILL_ATTRIBUTES = """
INSERT INTO process_search_attributes (process_id, name, text_value, number_value)
SELECT 'p-' || lpad(i::text, 8, '0'), 'customerId', 'c-' || (i % greatest(:count / 20, 1)), NULL
FROM generate_series(1, :count) AS i
UNION ALL
SELECT 'p-' || lpad(i::text, 8, '0'), 'amount', NULL, (i % 10000)::float8
FROM generate_series(1, :count) AS i
UNION ALL
SELECT 'p-' || lpad(i::text, 8, '0'), 'region',
       (ARRAY['eu', 'us', 'apac', 'latam', 'africa'])[1 + i % 5], NULL
FROM generate_series(1, :count) AS i
"""


async def fill(conn: AsyncConnection, count: int) -> None:
    """``count`` processes with three attributes each, analysed."""
    await conn.execute(text(FILL), {"count": count})
    await conn.execute(text(FILL_ATTRIBUTES), {"count": count})
    await conn.execute(text("ANALYZE processes"))
    await conn.execute(text("ANALYZE process_search_attributes"))


async def explain(conn: AsyncConnection, where: list[str], **others: str) -> tuple[str, float, int]:
    """The plan of the list's first page for these filters, its execution time (ms), its rows."""
    query = find_query(attributes=parse_all(where), limit=100, **others)  # type: ignore[arg-type]
    sql = str(query.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}))
    rows = (await conn.execute(text(f"EXPLAIN (ANALYZE, BUFFERS) {sql}"))).scalars().all()
    plan = "\n".join(rows)
    found = re.search(r"Execution Time: ([0-9.]+) ms", plan)
    returned = re.search(r"^Limit .*actual time=[^ ]+ rows=(\d+)", plan)
    return plan, float(found.group(1)) if found else -1.0, int(returned.group(1)) if returned else 0


def indexes_of(plan: str) -> list[str]:
    return sorted(set(re.findall(r"(?:using|on) (ix_\w+|pk_\w+)", plan)))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=1_000_000)
    parser.add_argument("--keep", action="store_true", help="Keep the database.")
    parser.add_argument("--plans", action="store_true", help="Print each whole plan.")
    options = parser.parse_args()

    name = f"bridge_bench_search_{uuid.uuid4().hex[:8]}"
    admin = create_async_engine(f"{SERVER}/postgres", isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    engine = open_database(f"{SERVER}/{name}")
    try:
        await upgrade(engine)
        began = time.perf_counter()
        async with engine.begin() as conn:
            await fill(conn, options.processes)
        print(
            f"database {name}: {options.processes} processes, {3 * options.processes} "
            f"attribute rows, filled in {time.perf_counter() - began:.1f} s"
        )
        async with engine.connect() as conn:
            for where, others in CASES:
                await explain(conn, where, **others)  # warm the cache
                plan, took, rows = await explain(conn, where, **others)
                label = " AND ".join(where + [f"{key}={value}" for key, value in others.items()])
                print(f"{label:<52} {rows:>4} rows {took:>9.2f} ms  {', '.join(indexes_of(plan))}")
                if options.plans:
                    print(plan, end="\n\n")
    finally:
        await engine.dispose()
        if not options.keep:
            async with admin.connect() as conn:
                await conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.dispose()


if __name__ == "__main__":
    asyncio.run(main())
