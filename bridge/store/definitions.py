"""Deployed definition versions. A version is immutable: a changed document becomes a new one."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from bridge.store.schema import definitions


@dataclass(frozen=True)
class StoredDefinition:
    name: str
    version: int
    document: dict[str, Any]
    digest: str
    deployed_at: datetime


def digest(document: dict[str, Any]) -> str:
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


async def latest(conn: AsyncConnection, name: str) -> StoredDefinition | None:
    row = (
        await conn.execute(
            select(definitions)
            .where(definitions.c.name == name)
            .order_by(definitions.c.version.desc())
            .limit(1)
        )
    ).first()
    return None if row is None else StoredDefinition(**row._mapping)


async def add_version(
    conn: AsyncConnection, name: str, document: dict[str, Any], now: datetime
) -> tuple[StoredDefinition, bool]:
    """Store ``document`` as the next version unless it equals the latest; ``(stored, is_new)``.

    Raises ``IntegrityError`` when another process deployed a version at the same moment; the
    caller retries in a new transaction.
    """
    current = await latest(conn, name)
    document_digest = digest(document)
    if current is not None and current.digest == document_digest:
        return current, False
    version = (current.version if current else 0) + 1
    await conn.execute(
        insert(definitions).values(
            name=name, version=version, document=document, digest=document_digest, deployed_at=now
        )
    )
    return StoredDefinition(name, version, document, document_digest, now), True


async def all_versions(conn: AsyncConnection) -> list[StoredDefinition]:
    rows = (
        await conn.execute(select(definitions).order_by(definitions.c.name, definitions.c.version))
    ).all()
    return [StoredDefinition(**row._mapping) for row in rows]


async def versions_of(conn: AsyncConnection, name: str) -> list[int]:
    query = select(definitions.c.version).where(definitions.c.name == name)
    return list((await conn.scalars(query.order_by(definitions.c.version))).all())


async def version_count(conn: AsyncConnection) -> int:
    return int(await conn.scalar(select(func.count()).select_from(definitions)) or 0)


__all__ = ["IntegrityError", "StoredDefinition", "add_version", "all_versions", "digest", "latest"]


async def get_version(conn: AsyncConnection, name: str, version: int) -> dict[str, Any] | None:
    row = (
        await conn.execute(
            select(definitions.c.document).where(
                (definitions.c.name == name) & (definitions.c.version == version)
            )
        )
    ).first()
    return None if row is None else dict(row.document)
