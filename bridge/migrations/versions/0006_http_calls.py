"""HTTP calls: the work queue of ``bridge:http:invoke`` tasks.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-24

A step that starts an HTTP call writes a row here in its transaction; a worker claims the row
(``claimed_until``, a lease it renews while the call runs), makes the call outside any
transaction, and feeds the answer back through the engine, which marks the row done in the
transaction that applies the answer. A row whose lease ran out is claimed again (the call is
made again: HTTP calls are at least once).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "http_calls",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("process_id", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=200), nullable=False),
        sa.Column(
            "request", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False
        ),
        sa.Column("timeout_seconds", sa.Integer(), nullable=False),
        sa.Column("deadline", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("done_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.String(length=200), nullable=True),
        sa.Column("traceparent", sa.String(length=55), nullable=True),
        sa.Column("tracestate", sa.String(length=512), nullable=True),
        sa.ForeignKeyConstraint(
            ["process_id"], ["processes.id"], name=op.f("fk_http_calls_process_id_processes")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_http_calls")),
    )
    op.create_index(
        op.f("ix_http_calls_done_at_created_at"), "http_calls", ["done_at", "created_at"]
    )
    op.create_index(op.f("ix_http_calls_process_id"), "http_calls", ["process_id"])


def downgrade() -> None:
    op.drop_table("http_calls")
