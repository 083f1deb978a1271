"""The approval statements written as SQL text (bridge.store.waits) read and write what the
schema's types do, on SQLite and PostgreSQL alike: a link reads back its approval whole, votes
append to SQL NULL, to JSON null and to earlier votes, and concluding touches only pending
approvals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from bridge.asl.approvals import ApprovalStatus
from bridge.store import waits
from bridge.store.database import open_database
from bridge.store.schema import approvals
from tests.integration.rows import add_processes

pytestmark = pytest.mark.integration

AT = datetime(2026, 12, 4, 5, 6, 7, 891011, tzinfo=UTC)


@pytest.fixture
async def db(database_url: str) -> Any:
    engine = open_database(database_url)
    try:
        yield engine
    finally:
        await engine.dispose()


async def add(db: AsyncEngine, number: int, **extra: Any) -> None:
    async with db.begin() as conn:
        await waits.add_approval(
            conn,
            approval_id=f"a-{number}",
            process_id="p-1",
            definition="orders",
            wait_id=f"w-{number}",
            state="Approve",
            title="Approve é \U0001f600",
            description=None,
            data={"amount": 900, "items": ["x"]},
            seats=["user:ann", "group:ops"],
            rule="all",
            expires_at=AT + timedelta(days=1),
            on_expiry="reject",
            links={f"approve-{number}": (True, "user:ann"), f"reject-{number}": (False, "")},
            now=AT,
            **extra,
        )


async def votes(db: AsyncEngine, number: int) -> Any:
    async with db.connect() as conn:
        return await conn.scalar(select(approvals.c.votes).where(approvals.c.id == f"a-{number}"))


async def test_a_link_reads_back_its_approval_whole(db: AsyncEngine) -> None:
    await add_processes(db, AT, "p-1")
    await add(db, 1, form={"fields": [{"name": "why"}]})
    async with db.connect() as conn:
        found = await waits.find_link(conn, "approve-1")
        rejecting = await waits.find_link(conn, "reject-1")
        assert await waits.find_link(conn, "approve-2") is None
        expected = await waits.get_approval(conn, "a-1")
    assert found is not None and rejecting is not None and expected is not None
    assert found.approval == expected
    assert (found.approve, found.seat) == (True, "user:ann")
    assert (rejecting.approve, rejecting.seat) == (False, "anyone")
    approval = found.approval
    assert approval.data == {"amount": 900, "items": ["x"]}
    assert approval.seats == ["user:ann", "group:ops"] and approval.votes == []
    assert approval.created_at == AT and approval.expires_at == AT + timedelta(days=1)
    assert approval.decided_at is None and approval.holders == {}
    assert approval.form == {"fields": [{"name": "why"}]}


async def test_votes_append_whatever_the_column_held(db: AsyncEngine) -> None:
    await add_processes(db, AT, "p-1")
    for number in (1, 2):
        await add(db, number)
    async with db.begin() as conn:
        # JSON null, as SQLAlchemy's JSON type writes None, for the second.
        await conn.execute(update(approvals).where(approvals.c.id == "a-2").values(votes=None))
        first = {"seat": "user:ann", "by": "ann", "decision": "approve", "values": {"n": 1.5}}
        second = {"seat": "group:ops", "by": "olga", "decision": "reject", "comment": "nö"}
        await waits.record_vote(conn, "w-1", first)
        await waits.record_vote(conn, "w-1", second)
        await waits.record_vote(conn, "w-2", second)
        await waits.record_vote(conn, "w-unknown", first)
    assert await votes(db, 1) == [first, second]
    assert await votes(db, 2) == [second]


async def test_concluding_touches_only_pending_approvals(db: AsyncEngine) -> None:
    await add_processes(db, AT, "p-1")
    for number in (1, 2, 3):
        await add(db, number)
    later = AT + timedelta(minutes=5)
    async with db.begin() as conn:
        await waits.conclude(conn, "w-1", ApprovalStatus.APPROVED, later)
        await waits.close_waits(conn, ["w-1", "w-2"], later + timedelta(minutes=1))
    async with db.connect() as conn:
        found = {
            approval_id: (await waits.get_approval(conn, approval_id))
            for approval_id in ("a-1", "a-2", "a-3")
        }
    assert [(a.status, a.decided_at) for a in found.values() if a is not None] == [
        ("APPROVED", later),
        ("CLOSED", later + timedelta(minutes=1)),
        ("PENDING", None),
    ]
