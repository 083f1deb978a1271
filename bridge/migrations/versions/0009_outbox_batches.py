"""Outbox: one row holds every message one transaction wrote, in order.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03

A row per message cost a batch one insert and one delete per message it wrote. A row now holds
the messages of one transaction as a JSON array (``messages``, each element with message_id,
process_id, topic, key, value, headers, traceparent, tracestate) and their number
(``message_count``); the message columns go. Each row waiting becomes a one-message row with the
same id, so the order holds, and a parked row stays parked (a parked row holds one message).
The downgrade splits rows into one row per message, in order, parked ones staying parked.

The message ids lose their unique index: they now live inside the array.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: The message columns of a row before this revision, and the fields of an array element after.
_FIELDS = (
    "message_id",
    "process_id",
    "topic",
    "key",
    "value",
    "headers",
    "traceparent",
    "tracestate",
)
#: The fields that hold JSON rather than text.
_JSON_FIELDS = ("value", "headers")


def _json() -> sa.JSON:
    """JSON; JSONB on PostgreSQL."""
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _postgres() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def _element(column: str) -> str:
    """A message column as a value of the JSON object built from it: SQLite keeps JSON columns
    as text, which must be read as JSON, not embedded as a string."""
    if column in _JSON_FIELDS and not _postgres():
        return f"json({column})"
    return column


def upgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("messages", _json(), nullable=True))
        batch_op.add_column(sa.Column("message_count", sa.Integer(), nullable=True))
    fields = ", ".join(f"'{name}', {_element(name)}" for name in _FIELDS)
    array, obj = (
        ("jsonb_build_array", "jsonb_build_object")
        if _postgres()
        else ("json_array", "json_object")
    )
    op.execute(f"UPDATE outbox SET messages = {array}({obj}({fields})), message_count = 1")
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("uq_outbox_message_id"), type_="unique")
        for name in _FIELDS:
            batch_op.drop_column(name)
        batch_op.alter_column("messages", existing_type=_json(), nullable=False)
        batch_op.alter_column("message_count", existing_type=sa.Integer(), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("message_id", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("process_id", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("topic", sa.String(length=249), nullable=True))
        batch_op.add_column(sa.Column("key", sa.String(length=500), nullable=True))
        batch_op.add_column(sa.Column("value", _json(), nullable=True))
        batch_op.add_column(sa.Column("headers", _json(), nullable=True))
        batch_op.add_column(sa.Column("traceparent", sa.String(length=55), nullable=True))
        batch_op.add_column(sa.Column("tracestate", sa.String(length=512), nullable=True))
        batch_op.alter_column("messages", existing_type=_json(), nullable=True)
        batch_op.alter_column("message_count", existing_type=sa.Integer(), nullable=True)
    # One row per message, inserted in (row, position) order so that new ids keep the order;
    # then the rows they came from go.
    columns = ", ".join(_FIELDS)
    if _postgres():
        fields = ", ".join(
            f"m -> '{name}'" if name in _JSON_FIELDS else f"m ->> '{name}'" for name in _FIELDS
        )
        source = (
            "FROM outbox o CROSS JOIN LATERAL jsonb_array_elements(o.messages)"
            " WITH ORDINALITY AS e(m, n) WHERE o.messages IS NOT NULL ORDER BY o.id, e.n"
        )
    else:
        # ->> gives SQL values and -> JSON text, which is how SQLite keeps a JSON column.
        fields = ", ".join(
            f"e.value -> '$.{name}'" if name in _JSON_FIELDS else f"e.value ->> '$.{name}'"
            for name in _FIELDS
        )
        source = (
            "FROM outbox o, json_each(o.messages) e WHERE o.messages IS NOT NULL"
            " ORDER BY o.id, e.key"
        )
    op.execute(
        f"INSERT INTO outbox ({columns}, created_at, parked_at, park_reason)"
        f" SELECT {fields}, o.created_at, o.parked_at, o.park_reason {source}"
    )
    op.execute("DELETE FROM outbox WHERE messages IS NOT NULL")
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_column("message_count")
        batch_op.drop_column("messages")
        batch_op.alter_column("message_id", existing_type=sa.String(length=64), nullable=False)
        batch_op.alter_column("topic", existing_type=sa.String(length=249), nullable=False)
        batch_op.alter_column("headers", existing_type=_json(), nullable=False)
        batch_op.create_unique_constraint(op.f("uq_outbox_message_id"), ["message_id"])
