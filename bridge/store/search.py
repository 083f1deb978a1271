"""The search attribute index: rows written when a process's attributes change, and the SQL of an
attribute filter (``bridge.asl.search_filter``) for the process list and bulk operations.

A process's rows are rewritten whole when its attributes change (it has at most
``bridge.asl.search.MAX_ATTRIBUTES``): the old rows are deleted at once, the new ones go with the
batch's other inserts (``bridge.store.write_set``). A process whose attributes did not change,
and every process of a definition without SearchAttributes, writes nothing here.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import and_, select, true
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement

from bridge.asl import search
from bridge.asl.process import Process
from bridge.asl.search_filter import AttributeFilter, prefix_end
from bridge.store import write_set
from bridge.store.schema import process_search_attributes as table
from bridge.store.schema import processes
from bridge.store.write_set import Delete, Insert, WriteSet

_ADD = Insert(
    "process_search_attributes",
    (
        ("process_id", "varchar"),
        ("name", "varchar"),
        ("text_value", "text"),
        ("number_value", "float8"),
    ),
)
_FORGET = Delete("process_search_attributes", "process_id")


def rows_of(process: Process) -> list[tuple[str, str, str | None, float | None]]:
    """The index rows of ``process``'s attributes."""
    return [
        (process.id, name, *search.columns(value))
        for name, value in sorted(process.search_attributes.items())
    ]


async def write(
    conn: AsyncConnection, new: Sequence[Process], changed: Sequence[Process], writes: WriteSet
) -> None:
    """Index the attributes of ``new`` processes and of ``changed`` ones (whose attributes
    differ from what was read): the changed ones' old rows are deleted now, every new row goes
    with ``writes``."""
    # A statement of its own, before the inserts: the parts of one PostgreSQL WITH statement
    # run in no set order, and the primary key would refuse a row not yet deleted.
    await write_set.delete(conn, _FORGET, [process.id for process in changed], None)
    rows = [row for process in (*new, *changed) for row in rows_of(process)]
    writes.insert(_ADD, rows)


def condition(filters: Sequence[AttributeFilter]) -> ColumnElement[bool]:
    """The processes that pass every filter (an AND). A process has one row per attribute, so
    the filters on one name are one look-up: ``amount>=100`` and ``amount<200`` are one range
    scan of the index, not two."""
    by_name: dict[str, list[AttributeFilter]] = {}
    for found in filters:
        by_name.setdefault(found.name, []).append(found)
    return and_(
        true(),
        *(
            processes.c.id.in_(
                select(table.c.process_id).where(
                    and_(table.c.name == name, *(_test(found) for found in alike))
                )
            )
            for name, alike in by_name.items()
        ),
    )


def _test(found: AttributeFilter) -> ColumnElement[bool]:
    column = table.c.number_value if found.numeric else table.c.text_value
    value = found.value
    match found.operator:
        case "=":
            return column == value
        case "!=":
            return column != value
        case "<":
            return column < value
        case "<=":
            return column <= value
        case ">":
            return column > value
        case ">=":
            return column >= value
        case "^=":
            # A range, not LIKE: the index serves it on both databases, whatever the prefix
            # holds (% and _ are plain characters here), and SQLite's LIKE ignores case.
            assert isinstance(value, str)
            end = prefix_end(value)
            return column >= value if end is None else and_(column >= value, column < end)
