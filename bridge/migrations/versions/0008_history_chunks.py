"""History in chunks: one row per process and batch, holding the entries that batch added.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03

Every history entry used to be a row of its own (``at``, ``type``, ``state``, ``details``), so a
step wrote as many history rows as entries, about 15 an order in the order saga. A row now holds
the entries ``seq`` to ``last_seq`` that one batch added to one process, as a JSON array
(``bridge.store.history_chunks``); sequence numbers stay what they were. Each existing row
becomes a chunk of one entry, so no entry is lost, and the downgrade expands chunks back into
rows. The entry format is written here in SQL, once per dialect, and must match
``history_chunks.encode``: ``at`` as UTC text ``YYYY-MM-DDTHH:MM:SS.ffffff+00:00``.

Both directions rewrite the whole table in the migration's transaction (SQLite rebuilds it by
copy), so they take time in proportion to the history kept.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _json() -> sa.JSON:
    """JSON; JSONB on PostgreSQL."""
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


# SQLite keeps a UTC time as naive text, "YYYY-MM-DD HH:MM:SS.ffffff" (schema.UTCDateTime).
_TO_CHUNKS = {
    "postgresql": """
        UPDATE history SET last_seq = seq, entries = jsonb_build_array(jsonb_build_object(
            'at', to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"'),
            'type', type, 'state', state, 'details', details))
    """,
    "sqlite": """
        UPDATE history SET last_seq = seq, entries = json_array(json_object(
            'at', replace(at, ' ', 'T') || '+00:00',
            'type', type, 'state', state, 'details', json(details)))
    """,
}

# The chunks' entries become rows beside them (their ``type`` is still NULL), then the chunks go.
_TO_ROWS = {
    "postgresql": """
        INSERT INTO history (process_id, seq, last_seq, entries, at, type, state, details)
        SELECT h.process_id, h.seq + e.number - 1, h.seq + e.number - 1, '[]'::jsonb,
               (e.entry ->> 'at')::timestamptz, e.entry ->> 'type', e.entry ->> 'state',
               e.entry -> 'details'
        FROM history AS h
        CROSS JOIN LATERAL jsonb_array_elements(h.entries) WITH ORDINALITY AS e(entry, number)
        WHERE h.type IS NULL
    """,
    "sqlite": """
        INSERT INTO history (process_id, seq, last_seq, entries, at, type, state, details)
        SELECT h.process_id, h.seq + e.key, h.seq + e.key, '[]',
               replace(replace(json_extract(e.value, '$.at'), 'T', ' '), '+00:00', ''),
               json_extract(e.value, '$.type'), json_extract(e.value, '$.state'),
               json(json_extract(e.value, '$.details'))
        FROM history AS h, json_each(h.entries) AS e
        WHERE h.type IS NULL
    """,
}


def upgrade() -> None:
    dialect = op.get_context().dialect.name
    op.drop_index(op.f("ix_history_process_id_seq"), table_name="history")
    with op.batch_alter_table("history", schema=None) as batch_op:
        batch_op.add_column(sa.Column("last_seq", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("entries", _json(), nullable=True))
    op.execute(_TO_CHUNKS[dialect])
    with op.batch_alter_table("history", schema=None) as batch_op:
        batch_op.alter_column("last_seq", existing_type=sa.Integer(), nullable=False)
        batch_op.alter_column("entries", existing_type=_json(), nullable=False)
        batch_op.drop_column("details")
        batch_op.drop_column("state")
        batch_op.drop_column("type")
        batch_op.drop_column("at")
    op.create_index(
        op.f("ix_history_process_id_last_seq"), "history", ["process_id", "last_seq"], unique=True
    )


def downgrade() -> None:
    dialect = op.get_context().dialect.name
    op.drop_index(op.f("ix_history_process_id_last_seq"), table_name="history")
    with op.batch_alter_table("history", schema=None) as batch_op:
        batch_op.add_column(sa.Column("at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("type", sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column("state", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("details", _json(), nullable=True))
    op.execute(_TO_ROWS[dialect])
    op.execute("DELETE FROM history WHERE type IS NULL")
    with op.batch_alter_table("history", schema=None) as batch_op:
        batch_op.alter_column("at", existing_type=sa.DateTime(timezone=True), nullable=False)
        batch_op.alter_column("type", existing_type=sa.String(length=40), nullable=False)
        batch_op.alter_column("details", existing_type=_json(), nullable=False)
        batch_op.drop_column("entries")
        batch_op.drop_column("last_seq")
    op.create_index(
        op.f("ix_history_process_id_seq"), "history", ["process_id", "seq"], unique=True
    )
