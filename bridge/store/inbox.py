"""The inbox: identities of inputs already applied, written in the same transaction as their
effect."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from bridge.store.schema import inbox


async def seen(conn: AsyncConnection, keys: Iterable[str]) -> set[str]:
    wanted = list(set(keys))
    if not wanted:
        return set()
    rows = await conn.execute(select(inbox.c.key).where(inbox.c.key.in_(wanted)))
    return set(rows.scalars())


async def mark(conn: AsyncConnection, marks: dict[str, str], now: datetime) -> None:
    """``marks`` maps input identity to a short outcome."""
    if marks:
        await conn.execute(
            insert(inbox),
            [
                {"key": key, "outcome": outcome[:200], "received_at": now}
                for key, outcome in marks.items()
            ],
        )
