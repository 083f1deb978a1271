"""What PostgreSQL needs from its operator for the bridge to stay fast: vacuum.

Some of the bridge's tables are queues: the outbox, HTTP calls and deliveries get rows inserted
and deleted all day, and processes are updated at every step. A deleted or replaced
row stays in the table until vacuum removes it, and ``ANALYZE`` (which autovacuum also runs) is
what tells the planner how large the tables have grown. Without them every read of these
tables slows down as they grow. The bridge says so once when it opens the database.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from sqlalchemy.ext.asyncio import AsyncEngine

from bridge.store import sql_text
from bridge.store.database import reading

#: The tables whose rows come and go (or change) all day.
CHURNING: Final = (
    "outbox",
    "http_calls",
    "deliveries",
    "processes",
    "task_tokens",
    "event_waits",
    "buffered_events",
)

_SETTINGS = sql_text.statement(
    """SELECT current_setting('autovacuum') = 'on',
        array(
            SELECT name FROM unnest($1::varchar[]) WITH ORDINALITY AS given(name, place)
            JOIN pg_class ON pg_class.oid = to_regclass(name)
            WHERE EXISTS (
                SELECT FROM unnest(pg_class.reloptions) AS option
                WHERE lower(option) IN (
                    'autovacuum_enabled=false', 'autovacuum_enabled=off',
                    'autovacuum_enabled=0', 'autovacuum_enabled=no'
                )
            )
            ORDER BY place
        )"""
)


def vacuum_warning(server_autovacuum: bool, disabled: Sequence[str]) -> str | None:
    """What to tell the operator, given whether the server runs autovacuum and the churning
    tables it is disabled for; ``None`` when all is well."""
    if not server_autovacuum:
        return (
            "autovacuum is off on this PostgreSQL server: the rows the bridge deletes and "
            f"replaces in {', '.join(CHURNING)} stay in the tables and slow every read of them "
            "as they grow; turn it on (autovacuum = on, the default) or run VACUUM ANALYZE on "
            "them on a schedule"
        )
    if disabled:
        return (
            f"autovacuum is disabled for the tables {', '.join(disabled)} "
            "(ALTER TABLE ... SET (autovacuum_enabled = false)): their deleted and replaced rows "
            "stay and slow every read of them as they grow; reset it (ALTER TABLE ... RESET "
            "(autovacuum_enabled)) or run VACUUM ANALYZE on them on a schedule"
        )
    return None


async def vacuum_settings(db: AsyncEngine) -> tuple[bool, list[str]]:
    """Whether the PostgreSQL server runs autovacuum, and the churning tables it is disabled
    for (in the order of ``CHURNING``)."""
    async with reading(db) as conn:
        ((server_autovacuum, disabled),) = await sql_text.fetch(conn, _SETTINGS, (list(CHURNING),))
    return bool(server_autovacuum), list(disabled or ())


async def check_vacuum(db: AsyncEngine) -> str | None:
    """The warning ``vacuum_warning`` gives for this database; ``None`` on SQLite, which
    reuses the space of deleted rows by itself."""
    if db.dialect.name != "postgresql":
        return None
    return vacuum_warning(*await vacuum_settings(db))
