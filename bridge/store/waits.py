"""Task tokens and approvals: the secrets that let the outside world answer a waiting step.

Only SHA-256 hashes of tokens are stored. A token or link works while its wait is open; closing
the wait (answer, timeout, abort) closes all of them in the same transaction.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from bridge.store.schema import approval_links, approvals, task_tokens


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class TokenTarget:
    process_id: str
    wait_id: str
    open: bool


async def add_task_token(
    conn: AsyncConnection, token: str, process_id: str, wait_id: str, state: str, now: datetime
) -> None:
    await conn.execute(
        insert(task_tokens).values(
            token_hash=token_hash(token),
            process_id=process_id,
            wait_id=wait_id,
            state=state,
            created_at=now,
        )
    )


async def find_task_tokens(conn: AsyncConnection, tokens: list[str]) -> dict[str, TokenTarget]:
    """Token -> what it answers, for the tokens that exist."""
    by_hash = {token_hash(token): token for token in tokens}
    if not by_hash:
        return {}
    rows = (
        await conn.execute(
            select(
                task_tokens.c.token_hash,
                task_tokens.c.process_id,
                task_tokens.c.wait_id,
                task_tokens.c.closed_at,
            ).where(task_tokens.c.token_hash.in_(list(by_hash)))
        )
    ).all()
    return {
        by_hash[row.token_hash]: TokenTarget(row.process_id, row.wait_id, row.closed_at is None)
        for row in rows
    }


async def close_waits(conn: AsyncConnection, wait_ids: list[str], now: datetime) -> None:
    if not wait_ids:
        return
    await conn.execute(
        update(task_tokens)
        .where(and_(task_tokens.c.wait_id.in_(wait_ids), task_tokens.c.closed_at.is_(None)))
        .values(closed_at=now)
    )
    await conn.execute(
        update(approvals)
        .where(and_(approvals.c.wait_id.in_(wait_ids), approvals.c.status == "PENDING"))
        .values(status="CLOSED", decided_at=now)
    )


# --------------------------------------------------------------------- approvals


async def add_approval(
    conn: AsyncConnection,
    *,
    approval_id: str,
    process_id: str,
    wait_id: str,
    state: str,
    title: str,
    description: str | None,
    data: Any,
    links: dict[str, bool],
    now: datetime,
) -> None:
    """``links`` maps each link token to whether it approves."""
    await conn.execute(
        insert(approvals).values(
            id=approval_id,
            process_id=process_id,
            wait_id=wait_id,
            state=state,
            title=title,
            description=description,
            data=data,
            status="PENDING",
            created_at=now,
        )
    )
    await conn.execute(
        insert(approval_links),
        [
            {"token_hash": token_hash(token), "approval_id": approval_id, "approve": approve}
            for token, approve in links.items()
        ],
    )


@dataclass(frozen=True)
class LinkTarget:
    approval_id: str
    process_id: str
    wait_id: str
    approve: bool
    status: str
    title: str
    description: str | None
    data: Any
    state: str
    created_at: datetime
    decided_at: datetime | None
    decided_by: str | None
    comment: str | None


async def find_link(conn: AsyncConnection, token: str) -> LinkTarget | None:
    row = (
        await conn.execute(
            select(
                approvals.c.id,
                approvals.c.process_id,
                approvals.c.wait_id,
                approval_links.c.approve,
                approvals.c.status,
                approvals.c.title,
                approvals.c.description,
                approvals.c.data,
                approvals.c.state,
                approvals.c.created_at,
                approvals.c.decided_at,
                approvals.c.decided_by,
                approvals.c.comment,
            )
            .join(approvals, approvals.c.id == approval_links.c.approval_id)
            .where(approval_links.c.token_hash == token_hash(token))
        )
    ).first()
    if row is None:
        return None
    return LinkTarget(
        approval_id=row.id,
        process_id=row.process_id,
        wait_id=row.wait_id,
        approve=row.approve,
        status=row.status,
        title=row.title,
        description=row.description,
        data=row.data,
        state=row.state,
        created_at=row.created_at,
        decided_at=row.decided_at,
        decided_by=row.decided_by,
        comment=row.comment,
    )


async def record_decision(
    conn: AsyncConnection,
    approval_id: str,
    *,
    approved: bool,
    decided_by: str | None,
    comment: str | None,
    now: datetime,
) -> bool:
    """First decision wins: a conditional update that only a PENDING approval passes."""
    result = await conn.execute(
        update(approvals)
        .where(and_(approvals.c.id == approval_id, approvals.c.status == "PENDING"))
        .values(
            status="APPROVED" if approved else "REJECTED",
            decided_at=now,
            decided_by=decided_by,
            comment=comment,
        )
    )
    return result.rowcount == 1
