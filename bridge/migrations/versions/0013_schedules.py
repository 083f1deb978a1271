"""Schedules that start processes: cron, rate or one-off, with overlap and catch-up policies.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision: str = "0013"
down_revision: str | Sequence[str] | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "schedules",
        sa.Column("id", sa.String(200), primary_key=True),
        sa.Column("definition", sa.String(300), nullable=False),
        sa.Column("declared_by", sa.String(200), nullable=True),
        sa.Column("spec", JSON, nullable=False),
        sa.Column("input", JSON, nullable=True),
        sa.Column("description", sa.String(1000), nullable=False, server_default=""),
        sa.Column("overlap", sa.String(16), nullable=False),
        sa.Column("catch_up", sa.String(16), nullable=False),
        sa.Column("paused", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("paused_note", sa.String(500), nullable=True),
        sa.Column("next_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("buffered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_tick_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_result", sa.String(16), nullable=True),
        sa.Column("last_note", sa.String(500), nullable=True),
        sa.Column("last_process_id", sa.String(64), nullable=True),
        sa.Column("started", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("skipped", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("missed", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index(op.f("ix_schedules_paused_next_at"), "schedules", ["paused", "next_at"])
    op.create_index(op.f("ix_schedules_declared_by"), "schedules", ["declared_by"])


def downgrade() -> None:
    op.drop_index(op.f("ix_schedules_declared_by"), table_name="schedules")
    op.drop_index(op.f("ix_schedules_paused_next_at"), table_name="schedules")
    op.drop_table("schedules")
