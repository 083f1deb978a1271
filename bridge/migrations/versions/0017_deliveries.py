"""Deliveries: the mails and webhook posts that tell people of approvals.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision: str = "0017"
down_revision: str | Sequence[str] | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "deliveries",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("process_id", sa.String(64), sa.ForeignKey("processes.id"), nullable=False),
        sa.Column("approval_id", sa.String(64), nullable=True),
        sa.Column("state", sa.String(200), nullable=False),
        sa.Column("event", sa.String(16), nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("format", sa.String(16), nullable=True),
        sa.Column("recipient", sa.Text(), nullable=False),
        sa.Column("seats", JSON, nullable=False),
        sa.Column("outcome", sa.String(16), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("last_error", sa.String(500), nullable=True),
        sa.Column("done_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("result", sa.String(16), nullable=True),
    )
    op.create_index(
        op.f("ix_deliveries_done_at_next_attempt_at"), "deliveries", ["done_at", "next_attempt_at"]
    )
    op.create_index(op.f("ix_deliveries_process_id"), "deliveries", ["process_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_deliveries_process_id"), table_name="deliveries")
    op.drop_index(op.f("ix_deliveries_done_at_next_attempt_at"), table_name="deliveries")
    op.drop_table("deliveries")
