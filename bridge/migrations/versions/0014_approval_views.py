"""Approval views apart from the process: opening a decision page takes no lock on the process.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0014"
down_revision: str | Sequence[str] | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "approval_views",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("approval_id", sa.String(64), nullable=False),
        sa.Column("process_id", sa.String(64), nullable=False),
        sa.Column("seat", sa.String(210), nullable=False),
        sa.Column("action", sa.String(8), nullable=False),
        sa.Column("viewer", sa.String(200), nullable=False),
        sa.Column("views", sa.Integer(), nullable=False),
        sa.Column("first_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index(
        op.f("ix_approval_views_approval_id_seat_action_viewer"),
        "approval_views",
        ["approval_id", "seat", "action", "viewer"],
        unique=True,
    )
    op.create_index(op.f("ix_approval_views_process_id"), "approval_views", ["process_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_approval_views_process_id"), table_name="approval_views")
    op.drop_index(
        op.f("ix_approval_views_approval_id_seat_action_viewer"), table_name="approval_views"
    )
    op.drop_table("approval_views")
