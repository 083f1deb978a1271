"""Indexes on the process id of task tokens, timers and event waits.

Deleting a process (retention, ``bridge purge``) deletes these rows by process id, and for task
tokens and timers PostgreSQL also checks, per deleted process, that no row still refers to it.
Without an index each of those is a scan of the whole table: measured, 500 processes took 25 s
to delete next to 600 000 task tokens, 19 ms with the index. Task tokens stay until their
process is deleted, so that table only grows. Building the indexes blocks writes to the three
tables while it runs (one transaction, as every migration here).

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-04
"""

from collections.abc import Sequence

from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0018"
down_revision: str | Sequence[str] | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("task_tokens", "timers", "event_waits")


def upgrade() -> None:
    for table in TABLES:
        op.create_index(op.f(f"ix_{table}_process_id"), table, ["process_id"])


def downgrade() -> None:
    for table in TABLES:
        op.drop_index(op.f(f"ix_{table}_process_id"), table_name=table)
