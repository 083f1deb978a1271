"""The approval a process asked for, as its ApprovalRequested message in the outbox says (for
tests that run the web app in process, with no relay publishing it)."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select

from bridge.bootstrap import Core
from bridge.intake import StartRequested
from bridge.store.database import reading
from bridge.store.schema import outbox


def path_of(url: str) -> str:
    """``/approve/TOKEN`` of ``http://host/approve/TOKEN``."""
    return "/" + url.split("://", 1)[1].split("/", 1)[1]


async def start_and_request(core: Core, definition: str, given: Any = None) -> dict[str, Any]:
    """Start a process of ``definition``; the approval request it wrote."""
    outcome = await core.engine.apply_one(StartRequested(definition, given or {}))
    process_id = outcome.process_ids[0]
    async with reading(core.db) as conn:
        rows = (await conn.scalars(select(outbox.c.messages))).all()
    for messages in rows:
        for message in messages:
            value = message["value"]
            value = json.loads(value) if isinstance(value, str) else value
            if value.get("type") == "ApprovalRequested" and value["processId"] == process_id:
                return dict(value)
    raise AssertionError(f"no approval request of process {process_id}")
