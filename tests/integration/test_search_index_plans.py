"""The search attribute index keeps the process list fast on a large table: on PostgreSQL, with
100,000 processes and 300,000 attribute rows, the planner answers an equality, a prefix and a
numeric range through the attribute indexes, never by reading the whole attribute table. Plans,
not times: bench/search_attributes.py prints the times at a million processes."""

from __future__ import annotations

import importlib.util
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from bridge.store.database import open_database
from bridge.store.migrate import upgrade
from tests.conftest import create_postgres_database, drop_postgres_database

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

BENCH = Path(__file__).resolve().parents[2] / "bench" / "search_attributes.py"


def bench() -> ModuleType:
    """The benchmark's own table filler and EXPLAIN, so that the test checks what it prints."""
    spec = importlib.util.spec_from_file_location("bench_search_attributes", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
async def large() -> AsyncIterator[AsyncEngine]:
    url = await create_postgres_database()
    engine = open_database(url)
    try:
        await upgrade(engine)
        async with engine.begin() as conn:
            await bench().fill(conn, 100_000)
        yield engine
    finally:
        await engine.dispose()
        await drop_postgres_database(url)


@pytest.mark.parametrize(
    ("where", "index"),
    [
        (["customerId=c-1234"], "ix_process_search_attributes_name_text_value"),
        (["customerId^=c-123"], "ix_process_search_attributes_name_text_value"),
        (["amount>=9995"], "ix_process_search_attributes_name_number_value"),
        (["amount>=100", "amount<101"], "ix_process_search_attributes_name_number_value"),
        (["customerId=nobody"], "ix_process_search_attributes_name_text_value"),
    ],
)
async def test_a_selective_filter_reads_the_index(
    large: AsyncEngine, where: list[str], index: str
) -> None:
    module = bench()
    async with large.connect() as conn:
        plan, _, rows = await module.explain(conn, where)
    assert index in plan, plan
    assert "Seq Scan on process_search_attributes" not in plan, plan
    assert "Seq Scan on processes" not in plan, plan
    assert rows <= 100


async def test_a_broad_filter_walks_the_newest_first(large: AsyncEngine) -> None:
    """A fifth of the processes match: the newest page comes from the start-time index, each
    process looked up by the attribute table's key, without sorting the fifth."""
    module = bench()
    async with large.connect() as conn:
        plan, _, rows = await module.explain(conn, ["region=eu"])
    assert rows == 100
    assert "Seq Scan" not in plan, plan
