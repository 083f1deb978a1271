"""The reads that open a batch: the database's clock, which of its inputs the inbox has seen,
and what its task tokens answer.

At low load a batch holds one or two inputs, and each statement is a round trip that the batch
waits for; on PostgreSQL these three reads go as one statement (the clock and two aggregates,
which always make exactly one row). On SQLite, in process, they stay three.

The same statement sets how the rest of the batch's transaction is planned (PostgreSQL). A
session of the bridge plans each statement for its values (``bridge.store.database``), and a
batch's statements (the write set's ``WITH ... unnest`` parts above all) took a quarter of
PostgreSQL's CPU being planned again at every run. Every statement of a batch finds its rows by
key, so the batch uses each statement's generic plan, made once per session, with sequential
scans off: a plan first made while the tables were empty still reads them by index once they
have grown (a sequential scan is what the generic plan chose on empty tables before, see
``tests/integration/test_plan_cache.py``). Both settings end with the transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from bridge.asl.task_tokens import token_hash
from bridge.store import inbox, sql_text, waits
from bridge.store.database import database_now
from bridge.store.waits import TokenTarget

_OPENING = sql_text.statement(
    """SELECT clock_timestamp(), seen.keys, tokens.hashes, tokens.process_ids, tokens.wait_ids
    FROM (SELECT array_agg(key) AS keys FROM inbox WHERE key = ANY($1::varchar[])) AS seen
    CROSS JOIN (
        SELECT array_agg(token_hash) AS hashes, array_agg(process_id) AS process_ids,
            array_agg(wait_id) AS wait_ids
        FROM task_tokens WHERE token_hash = ANY($2::varchar[])
    ) AS tokens
    CROSS JOIN (
        SELECT set_config('plan_cache_mode', 'force_generic_plan', true) AS plan_cache_mode,
            set_config('enable_seqscan', 'off', true) AS enable_seqscan
    ) AS planning"""
)


@dataclass(frozen=True)
class Opening:
    #: The database server's time (aware UTC), read as the batch opens.
    now: datetime
    #: The inbox keys asked about that are already there.
    seen: set[str]
    #: Token -> what it answers, for the tokens that exist.
    tokens: dict[str, TokenTarget]


async def open_batch(
    conn: AsyncConnection, inbox_keys: Sequence[str], tokens: Sequence[str]
) -> Opening:
    """The clock, the ``inbox_keys`` already seen and the targets of ``tokens``."""
    if not sql_text.is_postgres(conn):
        return Opening(
            await database_now(conn),
            await inbox.seen(conn, inbox_keys),
            await waits.find_task_tokens(conn, list(tokens)),
        )
    by_hash = {token_hash(token): token for token in tokens}
    ((moment, keys, hashes, process_ids, wait_ids),) = await sql_text.fetch(
        conn, _OPENING, (list(set(inbox_keys)), list(by_hash))
    )
    assert isinstance(moment, datetime)
    rows = zip(hashes or (), process_ids or (), wait_ids or (), strict=True)
    targets = {by_hash[hashed]: TokenTarget(process, wait) for hashed, process, wait in rows}
    return Opening(moment.astimezone(UTC), set(keys or ()), targets)
