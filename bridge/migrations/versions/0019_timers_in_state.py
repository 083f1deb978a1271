"""Timers live in their process: its state keeps its pending timers, its row the earliest's time.

A timer had a row of its own: a task with a TimeoutSeconds inserted one when it began and
deleted it when it was answered, two of the fourteen rows an order wrote, each with three index
entries. A process's state now keeps its pending timers by id with their due times
(``"timers": {"ID": "TIME", ...}``), written with the step that starts, cancels or fires one,
and ``processes.wake_at`` says when the earliest is due; a partial index over the rows that have
one is the timer scan's queue.

The upgrade moves each timer row into its process's state and sets ``wake_at``, then drops the
table. The downgrade makes the rows again from the states and takes the timers out of them.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0019"
down_revision: str | Sequence[str] | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_HAS_WAKE_TIME = "wake_at IS NOT NULL"


def _postgres() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def upgrade() -> None:
    with op.batch_alter_table("processes", schema=None) as batch_op:
        batch_op.add_column(sa.Column("wake_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index(
        op.f("ix_processes_wake_at"),
        "processes",
        ["wake_at"],
        postgresql_where=sa.text(_HAS_WAKE_TIME),
        sqlite_where=sa.text(_HAS_WAKE_TIME),
    )
    if _postgres():
        op.execute(
            """UPDATE processes p SET state = jsonb_set(p.state, '{timers}', t.ledger),
            wake_at = t.earliest
            FROM (
                SELECT process_id, jsonb_object_agg(id, to_jsonb(due_at)) AS ledger,
                    min(due_at) AS earliest
                FROM timers GROUP BY process_id
            ) t
            WHERE p.id = t.process_id"""
        )
    else:
        # SQLite keeps times as naive UTC text ("2026-12-04 10:00:00.000000"): made ISO 8601
        # with its offset, as the state's other times are.
        op.execute(
            """UPDATE processes SET
            state = json_set(state, '$.timers', json((
                SELECT json_group_object(id, replace(due_at, ' ', 'T') || '+00:00')
                FROM timers WHERE timers.process_id = processes.id
            ))),
            wake_at = (SELECT min(due_at) FROM timers WHERE timers.process_id = processes.id)
            WHERE id IN (SELECT process_id FROM timers)"""
        )
    op.drop_table("timers")


def downgrade() -> None:
    op.create_table(
        "timers",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("process_id", sa.String(length=64), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["process_id"], ["processes.id"], name=op.f("fk_timers_process_id_processes")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_timers")),
    )
    op.create_index(op.f("ix_timers_due_at"), "timers", ["due_at"])
    op.create_index(op.f("ix_timers_process_id"), "timers", ["process_id"])
    if _postgres():
        op.execute(
            """INSERT INTO timers (id, process_id, due_at)
            SELECT t.key, p.id, (t.value #>> '{}')::timestamptz
            FROM processes p, jsonb_each(p.state -> 'timers') t
            WHERE jsonb_typeof(p.state -> 'timers') = 'object'"""
        )
        op.execute("UPDATE processes SET state = state - 'timers' WHERE state ? 'timers'")
    else:
        op.execute(
            """INSERT INTO timers (id, process_id, due_at)
            SELECT t.key, p.id, strftime('%Y-%m-%d %H:%M:%f', t.value)
            FROM processes p, json_each(p.state, '$.timers') t
            WHERE json_type(p.state, '$.timers') = 'object'"""
        )
        op.execute(
            "UPDATE processes SET state = json_remove(state, '$.timers')"
            " WHERE json_type(state, '$.timers') IS NOT NULL"
        )
    op.drop_index(op.f("ix_processes_wake_at"), table_name="processes")
    with op.batch_alter_table("processes", schema=None) as batch_op:
        batch_op.drop_column("wake_at")
