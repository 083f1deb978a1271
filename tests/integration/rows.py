"""Rows for store tests: bare processes that the store's other tables can point at."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from bridge.store.schema import processes


async def add_processes(
    db: AsyncEngine,
    at: datetime,
    *ids: str,
    history_seq: int = 0,
    states: Mapping[str, dict[str, Any]] | None = None,
) -> None:
    """Running processes ``ids`` of definition "d", started at ``at``, with the state
    ``states`` gives each (none: an empty one); their history numbered up to ``history_seq``."""
    async with db.begin() as conn:
        await conn.execute(
            insert(processes),
            [
                {
                    "id": process_id,
                    "definition": "d",
                    "version": 1,
                    "status": "RUNNING",
                    "state": (states or {}).get(process_id, {}),
                    "started_at": at,
                    "updated_at": at,
                    "history_seq": history_seq,
                    "row_version": 1,
                }
                for process_id in ids
            ],
        )
