"""The inbox: identities of inputs already applied, written in the same transaction as their
effect, and for events what became of them (``GET /events/{id}`` reads it)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from bridge.store import sql_text, write_set
from bridge.store.schema import inbox
from bridge.store.write_set import Insert, WriteSet

_SEEN = sql_text.statement(
    f"SELECT key FROM inbox WHERE key {sql_text.any_of(1).postgres}",
    f"SELECT key FROM inbox WHERE key {sql_text.any_of(1).sqlite}",
)


async def seen(conn: AsyncConnection, keys: Iterable[str]) -> set[str]:
    wanted = list(set(keys))
    if not wanted:
        return set()
    return {key for (key,) in await sql_text.fetch(conn, _SEEN, (sql_text.ids(conn, wanted),))}


_MARK = Insert(
    "inbox",
    (
        ("key", "varchar"),
        ("received_at", "timestamptz"),
        ("outcome", "varchar"),
        ("event_id", "varchar"),
        ("source", "varchar"),
        ("topic", "varchar"),
        ("partition", "integer"),
        ('"offset"', "bigint"),
        ("event_type", "varchar"),
        ("details", "jsonb"),
        ("duplicates", "integer"),
        ("last_duplicate_at", "timestamptz"),
    ),
)


async def mark(
    conn: AsyncConnection, rows: list[dict[str, Any]], *, writes: WriteSet | None = None
) -> None:
    """Rows with key, received_at, outcome and, for events, the event's columns and details;
    duplicates and last_duplicate_at when the batch saw the input again. ``writes``: add them
    to this batch's writes instead of writing them now."""
    await write_set.insert(
        conn,
        _MARK,
        [
            (
                row["key"],
                sql_text.time(conn, row["received_at"]),
                row["outcome"],
                row.get("event_id"),
                row.get("source"),
                row.get("topic"),
                row.get("partition"),
                row.get("offset"),
                row.get("event_type"),
                sql_text.json(row.get("details")),
                row.get("duplicates", 0),
                sql_text.time(conn, row.get("last_duplicate_at")),
            )
            for row in rows
        ],
        writes,
    )


async def count_duplicate(conn: AsyncConnection, key: str, now: datetime) -> None:
    await conn.execute(
        update(inbox)
        .where(inbox.c.key == key)
        .values(duplicates=inbox.c.duplicates + 1, last_duplicate_at=now)
    )


async def add_details(conn: AsyncConnection, key: str, outcome: str, extra: dict[str, Any]) -> None:
    """Merge ``extra`` into an event's details (a delivery from the buffer, an expiry)."""
    row = (await conn.execute(select(inbox.c.details).where(inbox.c.key == key))).first()
    if row is None:
        return
    details = dict(row.details or {})
    for name, value in extra.items():
        if isinstance(value, list):
            details[name] = [*details.get(name, []), *value]
        else:
            details[name] = value
    await conn.execute(
        update(inbox).where(inbox.c.key == key).values(details=details, outcome=outcome[:200])
    )


async def find(conn: AsyncConnection, ident: str) -> list[dict[str, Any]]:
    """Inbox rows for an identity key, an event id, or a ``topic/partition/offset`` position."""
    conditions = [inbox.c.key == ident, inbox.c.event_id == ident]
    head, _, offset = ident.rpartition("/")
    topic_name, _, partition_text = head.rpartition("/")
    if topic_name and partition_text.isdigit() and offset.isdigit():
        conditions.append(
            (inbox.c.topic == topic_name)
            & (inbox.c.partition == int(partition_text))
            & (inbox.c.offset == int(offset))
        )
    rows = await conn.execute(
        select(inbox).where(or_(*conditions)).order_by(inbox.c.received_at).limit(50)
    )
    return [dict(row._mapping) for row in rows]


async def forget(conn: AsyncConnection, keys: Sequence[str]) -> None:
    """Forget these identities: the events they name count as new again (a replay)."""
    if keys:
        await conn.execute(delete(inbox).where(inbox.c.key.in_(list(keys))))


async def purge(conn: AsyncConnection, before: datetime, limit: int = 10_000) -> int:
    """Forget identities older than the retention; a later copy then counts as new."""
    old = select(inbox.c.key).where(inbox.c.received_at < before).limit(limit)
    result = await conn.execute(delete(inbox).where(inbox.c.key.in_(old.scalar_subquery())))
    return int(result.rowcount or 0)
