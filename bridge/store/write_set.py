"""The writes at the end of a batch, sent to PostgreSQL as one statement.

Each statement is a round trip to the database, and at low load, where a batch holds one input,
round trips are most of what a transaction costs: an order took about 45 of them, at roughly a
quarter of a millisecond of the worker's CPU each (much of it in the kernel), and most of each
hop's latency. The writes that end a batch (the changed processes, task tokens, the outbox
row, history, the inbox marks) need no answer from the database but a count of the
processes updated (their guard), so on PostgreSQL they go as one statement of data-modifying
``WITH`` parts, each inserting or updating from ``unnest`` of one array parameter per column
(or deleting by an array of keys), and the statement returns how many rows each update part
changed: one round trip where there were up to seven. PostgreSQL runs every part of such a
statement to completion, on one snapshot; the parts must touch different rows (a row deleted
and one inserted with the same key would collide), and foreign keys are checked at the end of
the statement, after every part.

On SQLite (in-process, no round trip to save) each part runs as its own statement, as before.
A write set with a single insert or delete also runs it as its own statement: it costs one
round trip anyway.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
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


@dataclass(frozen=True)
class Update:
    """An update of rows of ``table`` found by ``key`` and guarded by ``version``, a counter the
    update increments: each row gives the key, then ``columns`` in order, then the version it was
    read with. A row whose version changed since is not updated, and the count says so."""

    table: str
    key: tuple[str, str]
    columns: tuple[tuple[str, str], ...]
    version: str
    #: The statement for one row (``$1`` the key, then the columns, then the version).
    one_row: sql_text.Statement = field(init=False)

    def __post_init__(self) -> None:
        last = len(self.columns) + 2
        sets = ", ".join(f"{name} = ${number}" for number, (name, _) in enumerate(self.columns, 2))
        one_row = sql_text.statement(
            f"UPDATE {self.table} SET {sets}, {self.version} = ${last} + 1 "
            f"WHERE {self.key[0]} = $1 AND {self.version} = ${last}"
        )
        object.__setattr__(self, "one_row", one_row)

    def part(self, first: int) -> str:
        """The ``WITH`` part that updates from arrays given as ``$first``, ``$first + 1``...,
        returning a row per row updated."""
        kinds = [self.key[1], *(kind for _, kind in self.columns), "integer"]
        arrays = ", ".join(
            f"${first + index}::{'text' if kind == 'jsonb' else kind}[]"
            for index, kind in enumerate(kinds)
        )
        aliases = [f"c{index}" for index in range(len(kinds))]
        sets = ", ".join(
            f"{name} = u.{alias}{'::jsonb' if kind == 'jsonb' else ''}"
            for alias, (name, kind) in zip(aliases[1:-1], self.columns, strict=True)
        )
        return (
            f"UPDATE {self.table} AS t SET {sets}, {self.version} = u.{aliases[-1]} + 1 "
            f"FROM unnest({arrays}) AS u({', '.join(aliases)}) "
            f"WHERE t.{self.key[0]} = u.c0 AND t.{self.version} = u.{aliases[-1]} RETURNING 1"
        )


#: Told how many rows an ``Update`` changed, once they are written.
Counted = Callable[[int], None]


class WriteSet:
    """Inserts, updates and deletes gathered in order, written by ``flush`` (see the module
    docstring)."""

    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn
        self._parts: list[tuple[Insert | Delete | Update, Sequence[Any]]] = []
        self._counted: dict[int, Counted] = {}

    def insert(self, spec: Insert, rows: Sequence[tuple[Any, ...]]) -> None:
        """Rows as tuples in ``spec``'s column order, their values as ``sql_text`` converts
        them for this connection."""
        if rows:
            self._parts.append((spec, rows))

    def delete(self, spec: Delete, keys: Sequence[Any]) -> None:
        if keys:
            self._parts.append((spec, keys))

    def update(self, spec: Update, rows: Sequence[tuple[Any, ...]], counted: Counted) -> None:
        """Rows as tuples (key, columns, version read); ``counted`` is told how many rows were
        updated, at the flush."""
        if rows:
            self._counted[len(self._parts)] = counted
            self._parts.append((spec, rows))

    async def flush(self) -> None:
        parts, self._parts = self._parts, []
        counted, self._counted = self._counted, {}
        if not parts:
            return
        # An update alone on PostgreSQL still goes as a WITH part: asyncpg does not count the
        # rows of a batched statement, and the count is the update's guard.
        alone = len(parts) == 1 and not isinstance(parts[0][0], Update)
        if not sql_text.is_postgres(self.conn) or alone:
            for number, (spec, values) in enumerate(parts):
                if isinstance(spec, Delete):
                    ids = sql_text.ids(self.conn, list(values))
                    await sql_text.execute(self.conn, spec.alone, (ids,))
                    continue
                changed = await sql_text.execute_many(self.conn, spec.one_row, values)
                if number in counted:
                    counted[number](changed)
            return
        pieces: list[str] = []
        parameters: list[list[Any]] = []
        for number, (spec, values) in enumerate(parts):
            pieces.append(f"w{number} AS ({spec.part(len(parameters) + 1)})")
            if isinstance(spec, Delete):
                parameters.append(list(values))
            else:
                parameters.extend(list(column) for column in zip(*values, strict=True))
        counts = ", ".join(f"(SELECT count(*) FROM w{number})" for number in counted) or "1"
        text = f"WITH {', '.join(pieces)} SELECT {counts}"
        (row,) = await sql_text.fetch_text(self.conn, text, tuple(parameters))
        if counted:
            for told, changed in zip(counted.values(), row, strict=True):
                told(int(changed))


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
