"""Every row that belongs to a process can be found by its process id without a table scan.

Deleting a process (retention, ``bridge purge``) deletes its rows in every table by process id,
and PostgreSQL checks each foreign key to ``processes`` per deleted process: a table without an
index on that column is scanned whole for each one (500 processes next to 600 000 task tokens
took 25 s, 19 ms with the index).
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Column, Table

from bridge.store.schema import metadata


def _found_by_index(table: Table, column: Column[Any]) -> bool:
    leading = [next(iter(index.columns)) for index in table.indexes]
    leading.append(next(iter(table.primary_key.columns)))
    return any(candidate.name == column.name for candidate in leading)


def _columns_naming_a_row_elsewhere() -> list[tuple[Table, Column[Any]]]:
    found = []
    for table in metadata.sorted_tables:
        for column in table.columns:
            if column.foreign_keys or column.name == "process_id":
                found.append((table, column))
    return found


@pytest.mark.parametrize(
    ("table", "column"),
    _columns_naming_a_row_elsewhere(),
    ids=lambda value: value.name if isinstance(value, Table) else str(value.name),
)
def test_the_column_leads_an_index(table: Table, column: Column[Any]) -> None:
    assert _found_by_index(table, column), f"{table.name}.{column.name} leads no index"
