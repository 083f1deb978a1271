"""PostgreSQL notifications: sent in a writing transaction, delivered once it commits."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from bridge.store import sql_text

# Fixed text: every writing transaction of bridge web sends one.
_NOTIFY = sql_text.statement("SELECT pg_notify($1, $2)")


async def notify(conn: AsyncConnection, channel: str, payload: str) -> None:
    await sql_text.execute(conn, _NOTIFY, (channel, payload))
