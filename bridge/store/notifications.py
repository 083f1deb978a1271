"""PostgreSQL notifications: sent in a writing transaction, delivered once it commits."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection


async def notify(conn: AsyncConnection, channel: str, payload: str) -> None:
    await conn.execute(
        text("SELECT pg_notify(:channel, :payload)"), {"channel": channel, "payload": payload}
    )
