"""Approvals keep their form and outcomes (to show the page and check values without the
definition) and who holds which seat (claims, delegations, reassignments).

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision: str = "0016"
down_revision: str | Sequence[str] | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
    op.add_column("approvals", sa.Column("form", json, nullable=True))
    op.add_column("approvals", sa.Column("holders", json, nullable=True))


def downgrade() -> None:
    op.drop_column("approvals", "holders")
    op.drop_column("approvals", "form")
