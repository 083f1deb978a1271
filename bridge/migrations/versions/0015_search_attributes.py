"""Search attributes: the business fields processes are listed and filtered by.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0015"
down_revision: str | Sequence[str] | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "process_search_attributes",
        sa.Column("process_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        # Byte order on PostgreSQL (SQLite's own): ranges and prefixes use the index alike.
        sa.Column(
            "text_value",
            sa.Text().with_variant(sa.Text(collation="C"), "postgresql"),
            nullable=True,
        ),
        sa.Column("number_value", sa.Double(), nullable=True),
        sa.ForeignKeyConstraint(
            ["process_id"],
            ["processes.id"],
            name=op.f("fk_process_search_attributes_process_id_processes"),
        ),
        sa.PrimaryKeyConstraint("process_id", "name", name=op.f("pk_process_search_attributes")),
    )
    op.create_index(
        op.f("ix_process_search_attributes_name_text_value"),
        "process_search_attributes",
        ["name", "text_value"],
    )
    op.create_index(
        op.f("ix_process_search_attributes_name_number_value"),
        "process_search_attributes",
        ["name", "number_value"],
    )


def downgrade() -> None:
    op.drop_index(
        op.f("ix_process_search_attributes_name_number_value"),
        table_name="process_search_attributes",
    )
    op.drop_index(
        op.f("ix_process_search_attributes_name_text_value"),
        table_name="process_search_attributes",
    )
    op.drop_table("process_search_attributes")
