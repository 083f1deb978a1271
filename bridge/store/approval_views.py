"""Who opened a decision link's page, how often, first and last: the audit of views, kept apart
from the process (a view takes no lock on it and bumps no version)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bridge.store.schema import approval_views


@dataclass(frozen=True)
class View:
    seat: str
    action: str
    viewer: str | None
    views: int
    first_at: datetime
    last_at: datetime

    def as_json(self) -> dict[str, Any]:
        return {
            "seat": self.seat,
            "action": self.action,
            "viewer": self.viewer,
            "views": self.views,
            "firstAt": self.first_at.isoformat(),
            "lastAt": self.last_at.isoformat(),
        }


async def record(
    db: AsyncEngine,
    *,
    approval_id: str,
    process_id: str,
    seat: str,
    action: str,
    viewer: str | None,
    now: datetime,
) -> None:
    """Count one view, in its own short transaction: the row of this approval, seat, link and
    viewer is counted up, or made (two first views at once: one makes it, the other counts)."""
    key = (
        (approval_views.c.approval_id == approval_id)
        & (approval_views.c.seat == seat)
        & (approval_views.c.action == action)
        & (approval_views.c.viewer == (viewer or ""))
    )
    counted = (
        update(approval_views).where(key).values(views=approval_views.c.views + 1, last_at=now)
    )
    for _ in range(2):
        try:
            async with db.begin() as conn:
                if (await conn.execute(counted)).rowcount:
                    return
                await conn.execute(
                    insert(approval_views).values(
                        approval_id=approval_id,
                        process_id=process_id,
                        seat=seat,
                        action=action,
                        viewer=viewer or "",
                        views=1,
                        first_at=now,
                        last_at=now,
                    )
                )
                return
        except IntegrityError:
            continue


async def of_approval(conn: AsyncConnection, approval_id: str) -> list[View]:
    rows = await conn.execute(
        select(approval_views)
        .where(approval_views.c.approval_id == approval_id)
        .order_by(approval_views.c.first_at, approval_views.c.id)
    )
    return [
        View(row.seat, row.action, row.viewer or None, row.views, row.first_at, row.last_at)
        for row in rows
    ]
