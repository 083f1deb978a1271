"""Task tokens: whether a token still works is its process's to say; the row keeps no state.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02

Closing a wait used to set ``closed_at`` on its task-token rows, found through an index on
``wait_id``: an update per token and an index entry per insert. The step already refuses an
answer to a wait its process no longer has, so the column and the index go. The downgrade
brings them back empty: an earlier version then takes every token for open, and its step
refuses those of closed waits the same way.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index(op.f("ix_task_tokens_wait_id"), table_name="task_tokens")
    with op.batch_alter_table("task_tokens", schema=None) as batch_op:
        batch_op.drop_column("closed_at")


def downgrade() -> None:
    with op.batch_alter_table("task_tokens", schema=None) as batch_op:
        batch_op.add_column(sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index(op.f("ix_task_tokens_wait_id"), "task_tokens", ["wait_id"])
