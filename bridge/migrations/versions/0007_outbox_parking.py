"""Outbox: published rows are deleted, and a row that can never be published is parked.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26

A published row used to stay with its ``sent_at``, and with it the task tokens of commands and
the approve/reject links of approval requests, in clear. The relay now deletes a row once it is
published, so ``sent_at`` goes, and so do the rows already published. A row the broker can never
take (too large, an invalid topic, a value that cannot be encoded) gets ``parked_at`` and
``park_reason`` instead of blocking every row after it; an operator retries it by clearing them.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("DELETE FROM outbox WHERE sent_at IS NOT NULL")
    op.drop_index(op.f("ix_outbox_sent_at_id"), table_name="outbox")
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_column("sent_at")
        batch_op.add_column(sa.Column("parked_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("park_reason", sa.String(length=2000), nullable=True))
    op.create_index(op.f("ix_outbox_parked_at_id"), "outbox", ["parked_at", "id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_outbox_parked_at_id"), table_name="outbox")
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_column("park_reason")
        batch_op.drop_column("parked_at")
        batch_op.add_column(sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index(op.f("ix_outbox_sent_at_id"), "outbox", ["sent_at", "id"])
