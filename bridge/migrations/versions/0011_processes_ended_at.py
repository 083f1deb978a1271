"""Processes: an index on ``ended_at``, for retention.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03

Retention deletes finished processes whose end is older than a cutoff, a few hundred at a time;
without the index each batch would read every process.
"""

from collections.abc import Sequence

from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(op.f("ix_processes_ended_at"), "processes", ["ended_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_processes_ended_at"), table_name="processes")
