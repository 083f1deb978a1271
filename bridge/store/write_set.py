"""The writes at the end of a batch that need no answer, sent to PostgreSQL as one statement.

Each statement is a round trip to the database, and at low load, where a batch holds one input,
round trips are most of what a transaction costs: an order took about 45 of them, at roughly a
quarter of a millisecond of the worker's CPU each (much of it in the kernel), and most of each
hop's latency. The inserts and deletes that end a batch (task tokens, timers, the outbox row,
history, the inbox marks) need no answer from the database, so on PostgreSQL they go as one
statement of data-modifying ``WITH`` parts, each inserting from ``unnest`` of one array
parameter per column (or deleting by an array of keys): one round trip where there were up to
six. PostgreSQL runs every part of such a statement to completion, on one snapshot; the parts
touch different rows (a timer cancelled and one started in the same batch never share an id),
and foreign keys are checked at the end of the statement, after every part.

On SQLite (in-process, no round trip to save) each part runs as its own statement, as before.
A write set with a single part also runs it as its own statement: it costs one round trip anyway.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from bridge.store import sql_text


@dataclass(frozen=True)
class Insert:
    """An insert of rows into ``table``: each column named with its PostgreSQL type (``jsonb``
    columns take JSON text)."""

    table: str
    columns: tuple[tuple[str, str], ...]
    #: The statement for one row (``$1 ... $n``), run for each row where parts run alone.
    one_row: sql_text.Statement = field(init=False)

    def __post_init__(self) -> None:
        names = ", ".join(name for name, _ in self.columns)
        values = ", ".join(f"${number}" for number in range(1, len(self.columns) + 1))
        one_row = sql_text.statement(f"INSERT INTO {self.table} ({names}) VALUES ({values})")
        object.__setattr__(self, "one_row", one_row)

    def part(self, first: int) -> str:
        """The ``WITH`` part that inserts from arrays given as ``$first``, ``$first + 1``..."""
        names = ", ".join(name for name, _ in self.columns)
        arrays = ", ".join(
            f"${first + index}::{'text' if kind == 'jsonb' else kind}[]"
            for index, (_, kind) in enumerate(self.columns)
        )
        aliases = [f"c{index}" for index in range(len(self.columns))]
        selected = ", ".join(
            f"{alias}::jsonb" if kind == "jsonb" else alias
            for alias, (_, kind) in zip(aliases, self.columns, strict=True)
        )
        return (
            f"INSERT INTO {self.table} ({names}) SELECT {selected} "
            f"FROM unnest({arrays}) AS u({', '.join(aliases)})"
        )


@dataclass(frozen=True)
class Delete:
    """A delete of the rows of ``table`` whose ``key`` is one of a list."""

    table: str
    key: str
    key_type: str = "varchar"
    #: The statement on its own (one list parameter, as ``sql_text.ids`` gives it).
    alone: sql_text.Statement = field(init=False)

    def __post_init__(self) -> None:
        head = f"DELETE FROM {self.table} WHERE {self.key}"
        alone = sql_text.Statement(
            f"{head} {sql_text.any_of(1, self.key_type).postgres}",
            f"{head} {sql_text.any_of(1).sqlite}",
        )
        object.__setattr__(self, "alone", alone)

    def part(self, first: int) -> str:
        return f"DELETE FROM {self.table} WHERE {self.key} = ANY(${first}::{self.key_type}[])"


class WriteSet:
    """Inserts and deletes gathered in order, written by ``flush`` (see the module docstring)."""

    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn
        self._parts: list[tuple[Insert | Delete, Sequence[Any]]] = []

    def insert(self, spec: Insert, rows: Sequence[tuple[Any, ...]]) -> None:
        """Rows as tuples in ``spec``'s column order, their values as ``sql_text`` converts
        them for this connection."""
        if rows:
            self._parts.append((spec, rows))

    def delete(self, spec: Delete, keys: Sequence[Any]) -> None:
        if keys:
            self._parts.append((spec, keys))

    async def flush(self) -> None:
        parts, self._parts = self._parts, []
        if not sql_text.is_postgres(self.conn) or len(parts) == 1:
            for spec, values in parts:
                if isinstance(spec, Insert):
                    await sql_text.execute_many(self.conn, spec.one_row, values)
                else:
                    ids = sql_text.ids(self.conn, list(values))
                    await sql_text.execute(self.conn, spec.alone, (ids,))
            return
        if not parts:
            return
        pieces: list[str] = []
        parameters: list[list[Any]] = []
        for number, (spec, values) in enumerate(parts):
            pieces.append(f"w{number} AS ({spec.part(len(parameters) + 1)})")
            if isinstance(spec, Insert):
                parameters.extend(list(column) for column in zip(*values, strict=True))
            else:
                parameters.append(list(values))
        text = f"WITH {', '.join(pieces)} SELECT 1"
        await self.conn.exec_driver_sql(text, tuple(parameters))


async def insert(
    conn: AsyncConnection,
    spec: Insert,
    rows: Sequence[tuple[Any, ...]],
    writes: WriteSet | None,
) -> None:
    """Insert ``rows`` now, or, given ``writes``, add them to it to go at its flush."""
    target = writes or WriteSet(conn)
    target.insert(spec, rows)
    if writes is None:
        await target.flush()


async def delete(
    conn: AsyncConnection, spec: Delete, keys: Sequence[Any], writes: WriteSet | None
) -> None:
    """Delete the rows of ``keys`` now, or, given ``writes``, when it is flushed."""
    target = writes or WriteSet(conn)
    target.delete(spec, keys)
    if writes is None:
        await target.flush()
