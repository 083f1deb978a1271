"""Finished processes past their retention: found, summed up, and deleted with what hangs on them.

A process is past its retention when it ended (any status but RUNNING) before its definition's
cutoff (``bridge.retention`` computes the cutoffs). Deleting one removes, in one transaction, its
history, task tokens, approvals and their links, HTTP calls, event waits and search attributes,
then its row; the rows are selected again under a lock in that transaction, so a process
redriven meanwhile (RUNNING again) is left whole.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, delete, func, not_, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement

from bridge.store.database import is_postgres
from bridge.store.schema import (
    approval_links,
    approval_views,
    approvals,
    deliveries,
    event_waits,
    history,
    http_calls,
    process_search_attributes,
    processes,
    task_tokens,
)


@dataclass(frozen=True)
class Cutoffs:
    """Processes that ended before these times go. ``default``: for definitions without their
    own; ``by_definition``: a definition's own. None: kept for good."""

    default: datetime | None
    by_definition: Mapping[str, datetime | None]


@dataclass(frozen=True)
class Expired:
    """What retention would delete of one definition."""

    definition: str
    processes: int
    oldest_end: datetime
    newest_end: datetime


@dataclass(frozen=True)
class Deleted:
    """Processes deleted per definition, and the history chunks that went with them."""

    processes: dict[str, int]
    history_chunks: int

    @property
    def total(self) -> int:
        return sum(self.processes.values())


def _past(cutoffs: Cutoffs) -> ColumnElement[bool] | None:
    """The condition on processes past their cutoff; None when nothing can be."""
    ended = processes.c.status != "RUNNING"
    own = [
        and_(processes.c.definition == name, processes.c.ended_at < cutoff)
        for name, cutoff in cutoffs.by_definition.items()
        if cutoff is not None
    ]
    if cutoffs.default is not None:
        others = processes.c.ended_at < cutoffs.default
        if cutoffs.by_definition:
            others = and_(others, not_(processes.c.definition.in_(list(cutoffs.by_definition))))
        own.append(others)
    if not own:
        return None
    return and_(ended, or_(*own))


async def summary(conn: AsyncConnection, cutoffs: Cutoffs) -> list[Expired]:
    """Per definition, how many processes are past their retention, and when they ended."""
    condition = _past(cutoffs)
    if condition is None:
        return []
    rows = await conn.execute(
        select(
            processes.c.definition,
            func.count(),
            func.min(processes.c.ended_at),
            func.max(processes.c.ended_at),
        )
        .where(condition)
        .group_by(processes.c.definition)
        .order_by(processes.c.definition)
    )
    return [Expired(row[0], int(row[1]), row[2], row[3]) for row in rows]


async def delete_batch(conn: AsyncConnection, cutoffs: Cutoffs, limit: int) -> Deleted:
    """Delete up to ``limit`` processes past their retention, oldest end first, and everything
    that is theirs. Call it in a writing transaction."""
    condition = _past(cutoffs)
    if condition is None:
        return Deleted({}, 0)
    chosen = (
        select(processes.c.id, processes.c.definition)
        .where(condition)
        .order_by(processes.c.ended_at)
        .limit(limit)
    )
    if is_postgres(conn):
        # Another worker deleting the same batch, or the engine redriving one of these, waits
        # for nothing: those rows are skipped, the next round takes what is left.
        chosen = chosen.with_for_update(skip_locked=True)
    rows = (await conn.execute(chosen)).all()
    if not rows:
        return Deleted({}, 0)
    ids = [row.id for row in rows]
    await _delete_dependents(conn, ids)
    chunks = await conn.execute(delete(history).where(history.c.process_id.in_(ids)))
    await conn.execute(delete(processes).where(processes.c.id.in_(ids)))
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.definition] = counts.get(row.definition, 0) + 1
    return Deleted(counts, int(chunks.rowcount or 0))


async def _delete_dependents(conn: AsyncConnection, ids: Sequence[str]) -> None:
    of_approvals = select(approvals.c.id).where(approvals.c.process_id.in_(ids))
    await conn.execute(delete(approval_links).where(approval_links.c.approval_id.in_(of_approvals)))
    for table in (
        approvals,
        approval_views,
        task_tokens,
        http_calls,
        event_waits,
        process_search_attributes,
        deliveries,
    ):
        await conn.execute(delete(table).where(table.c.process_id.in_(ids)))
