"""The SQL of attribute filters means what the pure filter says (``AttributeFilter.matches``), on
SQLite and PostgreSQL alike: random values (accents, the characters around the surrogates, the
last code point, LIKE's wildcards, quotes, numbers and booleans) written by the index writer,
random filters, the same answer. And a rewrite replaces a process's rows whole."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from bridge.asl.process import Process
from bridge.asl.search import SearchValue
from bridge.asl.search_filter import OPERATORS, AttributeFilter, parse
from bridge.store import search
from bridge.store.database import open_database
from bridge.store.migrate import upgrade
from bridge.store.schema import process_search_attributes, processes
from bridge.store.write_set import WriteSet
from tests.integration.rows import add_processes

pytestmark = pytest.mark.integration

AT = datetime(2026, 12, 3, tzinfo=UTC)
ALPHABET = ["a", "b", "Z", "é", "%", "_", " ", '"', "\ud7ff", "\ue000", "\U0010ffff", "1", "-"]


def text(rng: random.Random) -> str:
    return "".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 4)))


def value(rng: random.Random) -> SearchValue:
    kind = rng.randrange(5)
    if kind == 0:
        return rng.randint(-3, 3)
    if kind == 1:
        return rng.choice([0.5, -1.5, 1e300, 2.0])
    if kind == 2:
        return rng.choice([True, False])
    return text(rng)


def a_filter(rng: random.Random) -> AttributeFilter:
    operator = rng.choice(OPERATORS)
    wanted: str | float = text(rng)
    if operator != "^=" and rng.random() < 0.4:
        wanted = float(rng.choice([-3, -1.5, 0, 0.5, 2, 3, 1e300]))
    if operator != "^=" and rng.random() < 0.1:
        wanted = rng.choice(["true", "false"])
    found = AttributeFilter(rng.choice("ab"), operator, wanted)
    # Whatever is generated is what its text parses to.
    assert parse(found.text()) == found
    return found


@pytest.fixture
async def db(database_url: str) -> Any:
    engine = open_database(database_url)
    await upgrade(engine)
    try:
        yield engine
    finally:
        await engine.dispose()


async def index(db: AsyncEngine, new: list[Process], changed: list[Process]) -> None:
    async with db.begin() as conn:
        writes = WriteSet(conn)
        await search.write(conn, new, changed, writes)
        await writes.flush()


async def matching(db: AsyncEngine, filters: list[AttributeFilter]) -> set[str]:
    async with db.connect() as conn:
        rows = await conn.execute(select(processes.c.id).where(search.condition(filters)))
        return set(rows.scalars())


def process(process_id: str, attributes: dict[str, SearchValue]) -> Process:
    return Process(
        id=process_id, definition="d", version=1, started_at=AT, search_attributes=attributes
    )


async def test_the_sql_means_what_the_filter_says(db: AsyncEngine) -> None:
    rng = random.Random(20261203)
    population: dict[str, dict[str, SearchValue]] = {}
    for number in range(120):
        attributes = {name: value(rng) for name in "ab" if rng.random() < 0.8}
        population[f"p-{number:03d}"] = attributes
    await add_processes(db, AT, *population)
    await index(db, [process(pid, found) for pid, found in population.items()], [])

    for _ in range(250):
        filters = [a_filter(rng) for _ in range(rng.choice([1, 1, 2]))]
        expected = {
            pid
            for pid, found in population.items()
            if all(wanted.matches(found.get(wanted.name)) for wanted in filters)
        }
        assert await matching(db, filters) == expected, [f.text() for f in filters]


async def test_a_change_rewrites_the_rows_of_the_process(db: AsyncEngine) -> None:
    await add_processes(db, AT, "p-1", "p-2")
    await index(db, [process("p-1", {"a": "x", "b": 1}), process("p-2", {"a": "x"})], [])
    await index(db, [], [process("p-1", {"b": 2, "c": True})])

    async with db.connect() as conn:
        rows = await conn.execute(
            select(
                process_search_attributes.c.process_id,
                process_search_attributes.c.name,
                process_search_attributes.c.text_value,
                process_search_attributes.c.number_value,
            ).order_by(process_search_attributes.c.process_id, process_search_attributes.c.name)
        )
        assert [tuple(row) for row in rows] == [
            ("p-1", "b", None, 2.0),
            ("p-1", "c", "true", None),
            ("p-2", "a", "x", None),
        ]
    assert await matching(db, [parse("a=x")]) == {"p-2"}
