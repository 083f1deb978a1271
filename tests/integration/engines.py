"""An engine on a migrated database with one definition deployed, for tests that apply inputs
to it directly."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from bridge.asl.loading import parse_definition
from bridge.definitions import Registry
from bridge.engine import Engine, EngineConfig
from bridge.store.database import open_database
from bridge.store.migrate import upgrade


@asynccontextmanager
async def engine_for(
    database_url: str, definition: dict[str, Any], name: str
) -> AsyncIterator[Engine]:
    """An engine with ``definition`` deployed as ``name``; dead letters go to ``dlq``, and no
    lifecycle events are written."""
    db = open_database(database_url)
    await upgrade(db)
    registry = Registry()
    registry.add(parse_definition(definition, name))
    try:
        yield Engine(db, registry, EngineConfig(dlq_topic="dlq", lifecycle_topic=""))
    finally:
        await db.dispose()
