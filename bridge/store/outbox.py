"""The outbox: messages written with the state that caused them, published by the relay.

One row holds every message one transaction wrote, in order (a JSON array), so that a batch
costs the outbox one insert and, once published, one delete, however many messages it wrote.
A published row is deleted (it may carry task tokens or approval links, which must not stay in
the database in clear). A message that can never be published is moved to a row of its own,
parked with its reason, and waits for an operator (``bridge outbox parked`` / ``bridge outbox
retry``); a parked row therefore holds exactly one message.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from bridge.store import sql_text, write_set
from bridge.store.schema import outbox
from bridge.store.write_set import Insert, WriteSet

#: Any constant: the advisory lock that lets one relay at a time publish, keeping order.
RELAY_LOCK = 0x6272_6964_6765


@dataclass(frozen=True)
class OutboxMessage:
    message_id: str
    topic: str
    key: str | None
    value: Any
    headers: dict[str, str]
    process_id: str | None = None
    #: The W3C trace context of the step that wrote the message.
    traceparent: str | None = None
    tracestate: str | None = None

    @classmethod
    def from_json(cls, item: Mapping[str, Any]) -> OutboxMessage:
        """The message of one element of a row's array."""
        return cls(
            item["message_id"],
            item["topic"],
            item.get("key"),
            item.get("value"),
            dict(item.get("headers") or {}),
            item.get("process_id"),
            item.get("traceparent"),
            item.get("tracestate"),
        )

    def to_json(self) -> dict[str, Any]:
        """The element of a row's array that holds this message."""
        return {
            "message_id": self.message_id,
            "process_id": self.process_id,
            "topic": self.topic,
            "key": self.key,
            "value": self.value,
            "headers": self.headers,
            "traceparent": self.traceparent,
            "tracestate": self.tracestate,
        }


@dataclass(frozen=True)
class OutboxRow:
    """The messages of one row, to be published in this order."""

    id: int
    created_at: datetime
    messages: tuple[OutboxMessage, ...]


class Parking(NamedTuple):
    """A message to set aside in a row of its own: why, and when its first row was written."""

    message: OutboxMessage
    reason: str
    created_at: datetime


#: What a row's array element holds; anything else a caller's mapping carries stays out.
_FIELDS = (
    "message_id",
    "process_id",
    "topic",
    "key",
    "value",
    "headers",
    "traceparent",
    "tracestate",
)


_ADD = Insert(
    "outbox", (("messages", "jsonb"), ("message_count", "integer"), ("created_at", "timestamptz"))
)


async def add(
    conn: AsyncConnection,
    messages: Sequence[Mapping[str, Any]],
    *,
    writes: WriteSet | None = None,
) -> None:
    """One row holding ``messages`` in order: mappings with message_id, process_id, topic, key,
    value, headers, created_at, traceparent, tracestate (see ``bridge.messages.row``). The row's
    ``created_at`` is the earliest of theirs. ``writes``: add the row to this batch's writes
    instead of writing it now."""
    if not messages:
        return
    row = (
        sql_text.json([{name: item.get(name) for name in _FIELDS} for item in messages]),
        len(messages),
        sql_text.time(conn, min(item["created_at"] for item in messages)),
    )
    await write_set.insert(conn, _ADD, [row], writes)


_LOCK = sql_text.statement("SELECT pg_try_advisory_xact_lock($1)")
# Each row holds at least one message, so the first ``limit`` rows are all a round can need;
# they are taken whole while fewer than ``limit`` messages were taken before them.
_CLAIM = sql_text.statement(
    """SELECT id, created_at, messages FROM (
        SELECT id, created_at, messages,
            sum(message_count) OVER (ORDER BY id) - message_count AS before
        FROM outbox WHERE parked_at IS NULL ORDER BY id LIMIT $1
    ) AS counted WHERE before < $1 ORDER BY id"""
)
_DELETE = sql_text.statement(
    f"DELETE FROM outbox WHERE id {sql_text.any_of(1, 'bigint').postgres}",
    f"DELETE FROM outbox WHERE id {sql_text.any_of(1).sqlite}",
)


async def claim(conn: AsyncConnection, limit: int) -> list[OutboxRow] | None:
    """The oldest rows to publish (not parked), in order, taken whole while fewer than ``limit``
    messages are taken (so a row of more than ``limit`` messages comes alone); None when another
    relay holds the lock."""
    if sql_text.is_postgres(conn) and not await _lock(conn):
        return None
    found: list[OutboxRow] = []
    for row_id, created_at, stored in await sql_text.fetch(conn, _CLAIM, (limit,)):
        found.append(_row(conn, row_id, created_at, stored))
    return found


# PostgreSQL: the relay's lock and its claim as one statement, the claimed rows deleted as they
# are read, so that a round costs the database three round trips (BEGIN, this, COMMIT) instead of
# five. The rows come back (``restore``) for what the round could not settle, in the same
# transaction; a crash before its commit leaves every row as it was. The statement's snapshot
# is taken before the lock: rows another relay deleted since are skipped by the DELETE (a row
# deleted by a committed transaction is not deleted twice), and a row it trimmed is deleted as
# trimmed (the DELETE reads its newest version).
_TAKE = sql_text.statement(
    """WITH lock AS (SELECT pg_try_advisory_xact_lock($2) AS held),
    taken AS (
        DELETE FROM outbox WHERE (SELECT held FROM lock) AND id IN (
            SELECT id FROM (
                SELECT id, sum(message_count) OVER (ORDER BY id) - message_count AS before
                FROM outbox WHERE parked_at IS NULL ORDER BY id LIMIT $1
            ) AS counted WHERE before < $1
        )
        RETURNING id, created_at, messages
    )
    SELECT lock.held, taken.id, taken.created_at, taken.messages
    FROM lock LEFT JOIN taken ON true ORDER BY taken.id"""
)
_RESTORE = Insert(
    "outbox",
    (
        ("id", "bigint"),
        ("messages", "jsonb"),
        ("message_count", "integer"),
        ("created_at", "timestamptz"),
    ),
)


async def take(conn: AsyncConnection, limit: int) -> list[OutboxRow] | None:
    """PostgreSQL: ``claim`` and delete the rows claimed, in one statement; None when another
    relay holds the lock. Whatever the round does not settle goes back with ``restore`` before
    the transaction commits."""
    found: list[OutboxRow] = []
    for held, row_id, created_at, stored in await sql_text.fetch(conn, _TAKE, (limit, RELAY_LOCK)):
        if not held:
            return None
        if row_id is None:
            continue
        found.append(_row(conn, row_id, created_at, stored))
    return found


async def restore(conn: AsyncConnection, rows: Sequence[OutboxRow]) -> None:
    """Put rows ``take`` deleted back, each with its id (its place in the order) and the
    messages it still holds."""
    if rows:
        await write_set.insert(
            conn,
            _RESTORE,
            [
                (
                    row.id,
                    sql_text.json([message.to_json() for message in row.messages]),
                    len(row.messages),
                    sql_text.time(conn, row.created_at),
                )
                for row in rows
            ],
            None,
        )


def _row(conn: AsyncConnection, row_id: int, created_at: Any, stored: Any) -> OutboxRow:
    """A row as the claim reads it: its time and its messages' JSON as the driver gives them."""
    when = sql_text.read_time(created_at)
    assert when is not None
    messages = sql_text.read_json(conn, stored)
    return OutboxRow(row_id, when, tuple(OutboxMessage.from_json(item) for item in messages))


async def _lock(conn: AsyncConnection) -> bool:
    """Whether this transaction took the relay's lock (PostgreSQL)."""
    return bool((await sql_text.fetch(conn, _LOCK, (RELAY_LOCK,)))[0][0])


async def delete_sent(conn: AsyncConnection, ids: Sequence[int]) -> None:
    """Forget rows whose messages are all published or parked elsewhere."""
    if ids:
        await sql_text.execute(conn, _DELETE, (sql_text.ids(conn, list(ids)),))


async def keep_only(conn: AsyncConnection, row_id: int, messages: Sequence[OutboxMessage]) -> None:
    """Leave in a row only the messages still to publish (those before them went out or were
    parked), so that they keep the row's place in the order."""
    await conn.execute(
        update(outbox)
        .where(outbox.c.id == row_id)
        .values(messages=[message.to_json() for message in messages], message_count=len(messages))
    )


async def park(conn: AsyncConnection, parked: Sequence[Parking], now: datetime) -> None:
    """Set messages aside that can never be published, each in a row of its own with its
    reason, in the order given."""
    if parked:
        await conn.execute(
            insert(outbox),
            [
                {
                    "messages": [item.message.to_json()],
                    "message_count": 1,
                    "created_at": item.created_at,
                    "parked_at": now,
                    "park_reason": item.reason[:2000],
                }
                for item in parked
            ],
        )


async def backlog(conn: AsyncConnection) -> int:
    """How many messages wait to be published (parked ones do not)."""
    query = select(func.coalesce(func.sum(outbox.c.message_count), 0)).where(
        outbox.c.parked_at.is_(None)
    )
    return int(await conn.scalar(query) or 0)


async def oldest_waiting(conn: AsyncConnection) -> datetime | None:
    """When the oldest message still waiting to be published was written (parked ones left
    out); None when none waits."""
    query = select(func.min(outbox.c.created_at)).where(outbox.c.parked_at.is_(None))
    found: datetime | None = await conn.scalar(query)
    return found


async def pending(conn: AsyncConnection) -> list[OutboxMessage]:
    """Every message waiting to be published, in order, without claiming any (to look at)."""
    rows = await conn.execute(
        select(outbox.c.messages).where(outbox.c.parked_at.is_(None)).order_by(outbox.c.id)
    )
    return [OutboxMessage.from_json(item) for messages in rows.scalars() for item in messages]


@dataclass(frozen=True)
class ParkedMessage:
    id: int
    message_id: str
    process_id: str | None
    topic: str
    key: str | None
    parked_at: datetime
    reason: str


def _field(name: str) -> Any:
    """A field of a parked row's only message, read by the database: the value stays there."""
    return outbox.c.messages[(0, name)].as_string()


async def parked(conn: AsyncConnection, limit: int = 1000) -> list[ParkedMessage]:
    """Parked messages, oldest first (their values stay out: they may hold secrets)."""
    rows = await conn.execute(
        select(
            outbox.c.id,
            _field("message_id").label("message_id"),
            _field("process_id").label("process_id"),
            _field("topic").label("topic"),
            _field("key").label("key"),
            outbox.c.parked_at,
            outbox.c.park_reason,
        )
        .where(outbox.c.parked_at.is_not(None))
        .order_by(outbox.c.id)
        .limit(limit)
    )
    return [
        ParkedMessage(
            row.id,
            row.message_id,
            row.process_id,
            row.topic,
            row.key,
            row.parked_at,
            row.park_reason or "",
        )
        for row in rows
    ]


async def unpark(conn: AsyncConnection, message_ids: Sequence[str] | None = None) -> int:
    """Give parked messages (those of ``message_ids``, or all) back to the relay; how many."""
    statement = update(outbox).where(outbox.c.parked_at.is_not(None))
    if message_ids is not None:
        statement = statement.where(_field("message_id").in_(list(message_ids)))
    result = await conn.execute(statement.values(parked_at=None, park_reason=None))
    return int(result.rowcount or 0)
