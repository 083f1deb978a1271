"""Definition aliases as stored: one row per (definition, alias)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from bridge.aliases import Route
from bridge.store.schema import definition_aliases as aliases


@dataclass(frozen=True)
class Alias:
    definition: str
    name: str
    description: str
    routes: tuple[Route, ...]
    updated_at: datetime


def _alias(row: object) -> Alias:
    mapping = row._mapping  # type: ignore[attr-defined]
    return Alias(
        definition=mapping["definition"],
        name=mapping["name"],
        description=mapping["description"],
        routes=tuple(Route(int(r["version"]), int(r["weight"])) for r in mapping["routes"]),
        updated_at=mapping["updated_at"],
    )


async def get(conn: AsyncConnection, definition: str, name: str) -> Alias | None:
    row = (
        await conn.execute(
            select(aliases).where((aliases.c.definition == definition) & (aliases.c.name == name))
        )
    ).first()
    return None if row is None else _alias(row)


async def of_definition(conn: AsyncConnection, definition: str) -> list[Alias]:
    rows = (
        await conn.execute(
            select(aliases).where(aliases.c.definition == definition).order_by(aliases.c.name)
        )
    ).all()
    return [_alias(row) for row in rows]


async def put(conn: AsyncConnection, alias: Alias) -> None:
    values = {
        "definition": alias.definition,
        "name": alias.name,
        "description": alias.description,
        "routes": [{"version": r.version, "weight": r.weight} for r in alias.routes],
        "updated_at": alias.updated_at,
    }
    # Delete and insert in the caller's transaction: portable across SQLite and PostgreSQL.
    await remove(conn, alias.definition, alias.name)
    await conn.execute(insert(aliases).values(**values))


async def remove(conn: AsyncConnection, definition: str, name: str) -> bool:
    result = await conn.execute(
        delete(aliases).where((aliases.c.definition == definition) & (aliases.c.name == name))
    )
    return bool(result.rowcount)
