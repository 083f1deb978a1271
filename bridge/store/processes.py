"""Process rows and their history: bulk load for the engine, save, and the API's read queries."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from pydantic_core import PydanticSerializationError
from sqlalchemy import Select, Text, and_, cast, select
from sqlalchemy.ext.asyncio import AsyncConnection

from bridge.asl import json_text
from bridge.asl.effects import HistoryEntry
from bridge.asl.errors import BridgeError
from bridge.asl.process import Process
from bridge.asl.search_filter import AttributeFilter
from bridge.store import history_chunks, search, sql_text, write_set
from bridge.store.schema import history, processes
from bridge.store.write_set import Insert, Update, WriteSet


@dataclass
class Loaded:
    """A process as read for an update: the row version guards the write."""

    process: Process
    row_version: int
    history_seq: int
    #: The W3C trace context the process runs in (see bridge.tracing).
    traceparent: str | None = None
    tracestate: str | None = None


class ConcurrentUpdate(BridgeError):
    """Another writer changed the process since it was read; the transaction must be retried."""


_LOAD = sql_text.statement(
    f"""SELECT id, state::text, row_version, history_seq, traceparent, tracestate FROM processes
    WHERE id {sql_text.any_of(1).postgres} ORDER BY id FOR UPDATE""",
    f"""SELECT id, state, row_version, history_seq, traceparent, tracestate FROM processes
    WHERE id {sql_text.any_of(1).sqlite}""",
)


async def load_for_update(conn: AsyncConnection, ids: Iterable[str]) -> dict[str, Loaded]:
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    # Sorted ids and row locks (PostgreSQL; SQLite's writers hold its one write lock): a Kafka
    # worker and an HTTP request cannot both win.
    rows = await sql_text.fetch(conn, _LOAD, (sql_text.ids(conn, wanted),))
    return {
        process_id: Loaded(
            _read_state(state),
            row_version,
            history_seq,
            traceparent,
            tracestate,
        )
        for process_id, state, row_version, history_seq, traceparent, tracestate in rows
    }


_INSERT = sql_text.statement(
    """INSERT INTO processes (id, definition, version, correlation_key, status, current_state,
    state, started_at, updated_at, ended_at, wake_at, traceparent, tracestate, history_seq,
    row_version) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, 1)"""
)


async def insert_processes(
    conn: AsyncConnection,
    rows: Sequence[tuple[Process, int, Mapping[str, str | None]]],
    now: datetime,
) -> None:
    """New processes, one statement: ``(process, history_seq, trace columns)`` each (the trace
    columns as ``bridge.tracing.columns`` gives them)."""
    await sql_text.execute_many(
        conn,
        _INSERT,
        [
            (
                *_columns(conn, process, now),
                trace.get("traceparent"),
                trace.get("tracestate"),
                seq,
            )
            for process, seq, trace in rows
        ],
    )


_UPDATE = Update(
    "processes",
    ("id", "varchar"),
    (
        ("definition", "varchar"),
        ("version", "integer"),
        ("correlation_key", "varchar"),
        ("status", "varchar"),
        ("current_state", "varchar"),
        ("state", "jsonb"),
        ("started_at", "timestamptz"),
        ("updated_at", "timestamptz"),
        ("ended_at", "timestamptz"),
        ("wake_at", "timestamptz"),
        ("traceparent", "varchar"),
        ("tracestate", "varchar"),
        ("history_seq", "integer"),
    ),
    "row_version",
)


async def update_processes(
    conn: AsyncConnection,
    rows: Sequence[tuple[Process, int, int, Mapping[str, str | None]]],
    now: datetime,
    *,
    writes: WriteSet | None = None,
) -> None:
    """Changed processes: ``(process, row_version read, history_seq, trace columns)`` each, in
    one statement, or, given ``writes``, as a part of it. Each update is guarded by the row
    version it was read with; a row changed since raises ``ConcurrentUpdate`` (at the flush).
    Processes are read locked on PostgreSQL and under an immediate write lock on SQLite, so that
    is a guard, not a path."""
    if not rows:
        return
    parameters = [
        (
            *_columns(conn, process, now),
            trace.get("traceparent"),
            trace.get("tracestate"),
            seq,
            row_version,
        )
        for process, row_version, seq, trace in rows
    ]

    def check(changed: int) -> None:
        if changed != len(parameters):
            raise ConcurrentUpdate(", ".join(process.id for process, *_ in rows))

    target = writes or WriteSet(conn)
    target.update(_UPDATE, parameters, check)
    if writes is None:
        await target.flush()


def _columns(conn: AsyncConnection, process: Process, now: datetime) -> tuple[Any, ...]:
    """id to wake_at, as ``_INSERT`` and ``_UPDATE`` take them."""
    return (
        process.id,
        process.definition,
        process.version,
        process.correlation_key,
        process.status.value,
        process.current_state,
        _state_text(process),
        sql_text.time(conn, process.started_at),
        sql_text.time(conn, now),
        sql_text.time(conn, process.ended_at),
        sql_text.time(conn, process.wake_at),
    )


def _state_text(process: Process) -> str:
    """The ``state`` column's JSON. pydantic writes it in one pass; a value it cannot encode (a
    lone surrogate, which the bounds in ``bridge.asl.limits`` keep out of new values) goes the
    long way, through ``json_text``, as it always did."""
    try:
        return process.model_dump_json()
    except PydanticSerializationError:
        return json_text.dumps(process.model_dump(mode="json"))


def _read_state(text: str) -> Process:
    """A process from its ``state`` column, read as text (``state::text`` on PostgreSQL), so that
    pydantic parses and validates in one pass; what its parser refuses (the escape of a lone
    surrogate) is read by ``json_text`` first."""
    try:
        return Process.model_validate_json(text)
    except ValidationError as exc:
        if any(error["type"] != "json_invalid" for error in exc.errors()):
            raise
        return Process.model_validate(json_text.loads(text))


async def append_history(
    conn: AsyncConnection,
    rows: Sequence[tuple[str, int, HistoryEntry]],
    *,
    writes: WriteSet | None = None,
) -> None:
    """Store ``(process_id, seq, entry)`` triples, in the order they were added, in one
    statement: a row per process and run of consecutive entries (``history_chunks.chunks``).
    ``writes``: add them to this batch's writes instead of writing them now."""
    await write_set.insert(
        conn,
        _APPEND_HISTORY,
        [
            (
                chunk["process_id"],
                chunk["seq"],
                chunk["last_seq"],
                sql_text.json(chunk["entries"]),
            )
            for chunk in history_chunks.chunks(rows)
        ],
        writes,
    )


_APPEND_HISTORY = Insert(
    "history",
    (("process_id", "varchar"), ("seq", "integer"), ("last_seq", "integer"), ("entries", "jsonb")),
)


async def running_ids(conn: AsyncConnection, definition: str, key: str) -> list[str]:
    """Running processes of ``definition`` with correlation key ``key`` (for OnRunning)."""
    rows = await conn.execute(
        select(processes.c.id).where(
            and_(
                processes.c.definition == definition,
                processes.c.correlation_key == key,
                processes.c.status == "RUNNING",
            )
        )
    )
    return list(rows.scalars())


# --------------------------------------------------------------------- reads for the API


async def get(conn: AsyncConnection, process_id: str) -> Process | None:
    row = (
        await conn.execute(select(processes.c.state).where(processes.c.id == process_id))
    ).first()
    return None if row is None else Process.model_validate(row.state)


async def find(
    conn: AsyncConnection,
    *,
    correlation_key: str | None = None,
    status: str | None = None,
    definition: str | None = None,
    version: int | None = None,
    started_after: datetime | None = None,
    started_before: datetime | None = None,
    attributes: Sequence[AttributeFilter] = (),
    limit: int = 100,
    before: tuple[datetime, str] | None = None,
) -> list[Process]:
    """Newest first; ``before`` is the (started_at, id) of the last row of the previous page;
    ``attributes``: search attribute filters, every one of which a process passes."""
    query = find_query(
        correlation_key=correlation_key,
        status=status,
        definition=definition,
        version=version,
        started_after=started_after,
        started_before=started_before,
        attributes=attributes,
        limit=limit,
        before=before,
    )
    return [Process.model_validate(row.state) for row in (await conn.execute(query)).all()]


def find_query(
    *,
    correlation_key: str | None = None,
    status: str | None = None,
    definition: str | None = None,
    version: int | None = None,
    started_after: datetime | None = None,
    started_before: datetime | None = None,
    attributes: Sequence[AttributeFilter] = (),
    limit: int = 100,
    before: tuple[datetime, str] | None = None,
) -> Select[tuple[Any]]:
    """The query ``find`` runs (a benchmark explains it on a large table)."""
    query = select(processes.c.state)
    if attributes:
        query = query.where(search.condition(attributes))
    if correlation_key is not None:
        query = query.where(processes.c.correlation_key == correlation_key)
    if status is not None:
        query = query.where(processes.c.status == status)
    if definition is not None:
        query = query.where(processes.c.definition == definition)
    if version is not None:
        query = query.where(processes.c.version == version)
    if started_after is not None:
        query = query.where(processes.c.started_at >= started_after)
    if started_before is not None:
        query = query.where(processes.c.started_at < started_before)
    if before is not None:
        started_at, process_id = before
        query = query.where(
            (processes.c.started_at < started_at)
            | and_(processes.c.started_at == started_at, processes.c.id < process_id)
        )
    return query.order_by(processes.c.started_at.desc(), processes.c.id.desc()).limit(limit)


#: The most history chunks one query of a page reads.
HISTORY_GROUP = 50


async def read_history(
    conn: AsyncConnection, process_id: str, *, after_seq: int = 0, limit: int = 1000
) -> list[dict[str, Any]]:
    """Up to ``limit`` entries of the history after ``after_seq``, oldest first:
    ``{seq, at, type, state, details}`` each. Chunks are read a group at a time, from the one
    that holds ``after_seq + 1``, until the page is full: a page never reads the whole history."""
    found: list[dict[str, Any]] = []
    past = after_seq
    while len(found) < limit:
        # A chunk holds one entry at least, so more chunks than entries still wanted are never
        # needed; a group bounds what one query decodes when the page is large.
        group = min(limit - len(found), HISTORY_GROUP)
        rows = (
            await conn.execute(
                select(history.c.seq, history.c.last_seq, history.c.entries)
                .where(and_(history.c.process_id == process_id, history.c.last_seq > past))
                .order_by(history.c.last_seq)
                .limit(group)
            )
        ).all()
        for row in rows:
            found.extend(history_chunks.entries(row.seq, row.entries, after_seq=after_seq))
        if len(rows) < group:
            break
        past = rows[-1].last_seq
    return found[:limit]


async def children_of(conn: AsyncConnection, process_id: str) -> list[dict[str, Any]]:
    """The child processes ``process_id`` started, oldest first, from its ChildStarted history
    entries: id, state, definition, version, name, sync, and the child's status and start time
    (None when the child row is gone)."""
    # Only chunks that mention ChildStarted are decoded; the text of JSON and JSONB alike
    # holds the type as a quoted string.
    query = (
        select(history.c.seq, history.c.entries)
        .where(
            and_(
                history.c.process_id == process_id,
                cast(history.c.entries, Text).like('%"ChildStarted"%'),
            )
        )
        .order_by(history.c.last_seq)
    )
    found: dict[str, dict[str, Any]] = {}
    for row in (await conn.execute(query)).all():
        for entry in history_chunks.entries(row.seq, row.entries):
            if entry["type"] != "ChildStarted":
                continue
            details = entry["details"] or {}
            child = details.get("processId")
            if isinstance(child, str) and child not in found:
                found[child] = {
                    "id": child,
                    "state": entry["state"],
                    "definition": details.get("definition"),
                    "version": details.get("version"),
                    "name": details.get("name"),
                    "sync": bool(details.get("sync")),
                    "status": None,
                    "started_at": None,
                }
    if found:
        rows = await conn.execute(
            select(processes.c.id, processes.c.status, processes.c.started_at).where(
                processes.c.id.in_(list(found))
            )
        )
        for child_row in rows.all():
            found[child_row.id].update(status=child_row.status, started_at=child_row.started_at)
    return list(found.values())
