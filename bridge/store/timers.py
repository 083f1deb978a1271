"""Durable timers: due times the engine turns into ``TimerDue`` inputs.

A process keeps its pending timers in its state (``Process.timers``), written with every step
that starts, cancels or fires one, and the ``wake_at`` column of its row says when the earliest
is due. So a timer costs no row of its own: a task with a TimeoutSeconds used to insert one when
it began and delete it when it was answered, two of an order's fourteen rows written. The timer
scan reads the processes whose ``wake_at`` has passed (a partial index holds only the processes
with a timer) and the timers of each that are due.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import TypeAdapter, ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection

from bridge.store import sql_text

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DueTimer:
    id: str
    process_id: str
    due_at: datetime


_LEDGER: TypeAdapter[dict[str, datetime]] = TypeAdapter(dict[str, datetime])

_DUE = sql_text.statement(
    """SELECT id, wake_at, (state -> 'timers')::text FROM processes
    WHERE wake_at IS NOT NULL AND wake_at <= $1 ORDER BY wake_at LIMIT $2""",
    """SELECT id, wake_at, json_extract(state, '$.timers') FROM processes
    WHERE wake_at IS NOT NULL AND wake_at <= $1 ORDER BY wake_at LIMIT $2""",
)
_NEXT = sql_text.statement(
    "SELECT wake_at FROM processes WHERE wake_at IS NOT NULL ORDER BY wake_at LIMIT 1"
)
#: Guarded by the wake time read: a step that wrote the process since has set it right.
_REPAIR = sql_text.statement("UPDATE processes SET wake_at = $2 WHERE id = $1 AND wake_at = $3")
_FORGET = sql_text.statement(
    f"UPDATE processes SET wake_at = NULL WHERE id {sql_text.any_of(1).postgres}",
    f"UPDATE processes SET wake_at = NULL WHERE id {sql_text.any_of(1).sqlite}",
)


@dataclass(frozen=True)
class Stale:
    """A process whose wake time passed while its state names no timer due then (a state changed
    by hand, or one that no longer reads): ``wake_at`` is the one its state does say, or None."""

    process_id: str
    wake_at: datetime | None
    #: The wake time as read, in the driver's form: the repair is guarded by it.
    read: Any


async def due(
    conn: AsyncConnection, now: datetime, limit: int
) -> tuple[list[DueTimer], list[Stale]]:
    """The timers due at ``now`` (the database's clock, so that a worker with a skewed clock
    fires nothing early) of the first ``limit`` processes to wake, earliest first; and the
    processes among them that named none (see ``repair``)."""
    found: list[DueTimer] = []
    stale: list[Stale] = []
    for process_id, read, ledger_text in await sql_text.fetch(
        conn, _DUE, (sql_text.time(conn, now), limit)
    ):
        ledger = _ledger(process_id, ledger_text)
        timers = [DueTimer(name, process_id, at) for name, at in ledger.items() if at <= now]
        if timers:
            found += timers
        else:
            stale.append(Stale(process_id, min(ledger.values(), default=None), read))
    found.sort(key=lambda timer: timer.due_at)
    return found, stale


async def repair(conn: AsyncConnection, stale: list[Stale]) -> None:
    """Give stale processes the wake time their state says, so that the scan does not find them
    again and again; a process written since keeps the time its step gave it."""
    for item in stale:
        log.warning(
            "process %s was due to wake at %s but its state names no timer due then; "
            "its wake time is now %s",
            item.process_id,
            sql_text.read_time(item.read),
            item.wake_at,
        )
        await sql_text.execute(
            conn, _REPAIR, (item.process_id, sql_text.time(conn, item.wake_at), item.read)
        )


def _ledger(process_id: str, text: Any) -> dict[str, datetime]:
    if text is None:
        return {}
    try:
        return _LEDGER.validate_json(text)
    except ValidationError:
        log.warning("process %s: its pending timers do not read: %s", process_id, text[:200])
        return {}


async def next_due(conn: AsyncConnection) -> datetime | None:
    rows = await sql_text.fetch(conn, _NEXT)
    return sql_text.read_time(rows[0][0]) if rows else None


async def forget(conn: AsyncConnection, process_ids: list[str]) -> None:
    """Stop waking these processes: their timers are given up on (a process whose state no
    longer reads cannot be stepped by them). A later step of a process sets its wake time
    again from its state."""
    if process_ids:
        await sql_text.execute(conn, _FORGET, (sql_text.ids(conn, process_ids),))
