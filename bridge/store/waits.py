"""Task tokens and approvals: the secrets that let the outside world answer a waiting step.

Only SHA-256 hashes of tokens are stored. A token or link works while its wait is open. A task
token names the process and wait it answers, and the wait keeps its hash
(``bridge.asl.task_tokens``); tokens handed out before have a row here that says which process
and wait they answer. Whether that wait is still open is the process's to say (the step refuses
an answer to a wait it no longer has). Approval rows and links are closed with their wait, in
the same transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import SimpleNamespace
from typing import Any

from sqlalchemy import and_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from bridge.asl import json_text
from bridge.asl.approvals import ApprovalStatus
from bridge.asl.task_tokens import token_hash
from bridge.store import sql_text
from bridge.store.schema import approvals


@dataclass(frozen=True)
class TokenTarget:
    process_id: str
    wait_id: str
    #: Named by the token itself (``bridge.asl.task_tokens``): whether it is that wait's is
    #: for the wait's hash to say. False: found by the token's row.
    named: bool = False


#: Stored as text: the status an approval waits in.
PENDING = ApprovalStatus.PENDING.value


_FIND_TASK_TOKENS = sql_text.statement(
    "SELECT token_hash, process_id, wait_id FROM task_tokens WHERE token_hash "
    + sql_text.any_of(1).postgres,
    "SELECT token_hash, process_id, wait_id FROM task_tokens WHERE token_hash "
    + sql_text.any_of(1).sqlite,
)


async def find_task_tokens(conn: AsyncConnection, tokens: list[str]) -> dict[str, TokenTarget]:
    """Token -> what it answers, for the tokens that exist."""
    by_hash = {token_hash(token): token for token in tokens}
    if not by_hash:
        return {}
    rows = await sql_text.fetch(conn, _FIND_TASK_TOKENS, (sql_text.ids(conn, list(by_hash)),))
    return {
        by_hash[hashed]: TokenTarget(process_id, wait_id) for hashed, process_id, wait_id in rows
    }


#: The pending approvals of some waits, concluded (decided, expired, closed) at a time.
_CONCLUDE = sql_text.Statement(
    f"UPDATE approvals SET status = $2, decided_at = $3 "
    f"WHERE wait_id {sql_text.any_of(1).postgres} AND status = '{PENDING}'",
    f"UPDATE approvals SET status = ?2, decided_at = ?3 "
    f"WHERE wait_id {sql_text.any_of(1).sqlite} AND status = '{PENDING}'",
)


async def close_waits(conn: AsyncConnection, wait_ids: list[str], now: datetime) -> None:
    """Close the approvals of closed waits. A task token needs no closing: its wait is gone
    from the process, so the step it would answer refuses it."""
    if not wait_ids:
        return
    closed = ApprovalStatus.CLOSED.value
    await sql_text.execute(
        conn, _CONCLUDE, (sql_text.ids(conn, wait_ids), closed, sql_text.time(conn, now))
    )


# --------------------------------------------------------------------- approvals


async def add_approval(
    conn: AsyncConnection,
    *,
    approval_id: str,
    process_id: str,
    definition: str,
    wait_id: str,
    state: str,
    title: str,
    description: str | None,
    data: Any,
    seats: list[str],
    rule: str | int,
    expires_at: datetime | None,
    on_expiry: str,
    links: dict[str, tuple[bool, str]],
    now: datetime,
    form: Any = None,
) -> None:
    """``links`` maps each link token to (whether it approves, the seat it decides for)."""
    await sql_text.execute(
        conn,
        _ADD_APPROVAL,
        (
            approval_id,
            process_id,
            definition,
            wait_id,
            state,
            title,
            description,
            # JSON null, not SQL NULL, for no data: as the JSON column type wrote it.
            json_text.dumps(data),
            sql_text.time(conn, now),
            json_text.dumps(seats),
            str(rule),
            sql_text.time(conn, expires_at),
            on_expiry,
            None if form is None else json_text.dumps(form),
        ),
    )
    await add_links(conn, approval_id, links)


async def add_links(
    conn: AsyncConnection, approval_id: str, links: dict[str, tuple[bool, str]]
) -> None:
    """More links of an approval (a reminder's, a mail's): ``links`` maps each link token to
    (whether it approves, the seat it decides for); only their hashes are kept."""
    if not links:
        return
    await sql_text.execute_many(
        conn,
        _ADD_APPROVAL_LINKS,
        [
            (token_hash(token), approval_id, approve, seat)
            for token, (approve, seat) in links.items()
        ],
    )


_ADD_APPROVAL = sql_text.statement(
    """INSERT INTO approvals (id, process_id, definition, wait_id, state, title, description, data,
    status, created_at, seats, rule, votes, expires_at, on_expiry, form)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'PENDING', $9, $10, $11, '[]', $12, $13, $14)"""
)
_ADD_APPROVAL_LINKS = sql_text.statement(
    "INSERT INTO approval_links (token_hash, approval_id, approve, seat) VALUES ($1, $2, $3, $4)"
)


@dataclass(frozen=True)
class Approval:
    id: str
    process_id: str
    definition: str | None
    wait_id: str
    state: str
    title: str
    description: str | None
    data: Any
    status: str
    created_at: datetime
    decided_at: datetime | None
    seats: list[str]
    rule: str | None
    votes: list[dict[str, Any]]
    expires_at: datetime | None
    on_expiry: str | None
    #: The form and outcomes of the task's own (``bridge.asl.forms.Form.to_json``), if any.
    form: Any = None
    #: Who holds which seat besides its own user (claims, delegations, reassignments).
    holders: dict[str, str] = field(default_factory=dict)

    def holder(self, seat: str) -> str | None:
        return self.holders.get(seat)

    def as_json(self, base_url: str = "") -> dict[str, Any]:
        return {
            "id": self.id,
            "processId": self.process_id,
            "definition": self.definition,
            "state": self.state,
            "title": self.title,
            "description": self.description,
            "data": self.data,
            "status": self.status,
            "createdAt": self.created_at.isoformat(),
            "decidedAt": self.decided_at.isoformat() if self.decided_at else None,
            "expiresAt": self.expires_at.isoformat() if self.expires_at else None,
            "onExpiry": self.on_expiry,
            "rule": int(self.rule) if self.rule and self.rule.isdigit() else self.rule,
            "seats": self.seats,
            "votes": self.votes,
            "form": self.form,
            "holders": self.holders,
            "pending": [
                seat for seat in self.seats if not any(v["seat"] == seat for v in self.votes)
            ],
            "links": {
                "self": f"{base_url}/approvals/{self.id}",
                "process": f"{base_url}/processes/{self.process_id}",
            },
        }


#: An approval row's columns, in the order ``_approval`` reads them.
_APPROVAL_NAMES = (
    "id",
    "process_id",
    "definition",
    "wait_id",
    "state",
    "title",
    "description",
    "data",
    "status",
    "created_at",
    "decided_at",
    "seats",
    "rule",
    "votes",
    "expires_at",
    "on_expiry",
    "form",
    "holders",
)
_APPROVAL_COLUMNS = tuple(approvals.c[name] for name in _APPROVAL_NAMES)
#: Columns a statement in SQL text reads back raw: JSON text on SQLite, naive times.
_JSON_NAMES = frozenset({"data", "seats", "votes", "form", "holders"})
_TIME_NAMES = frozenset({"created_at", "decided_at", "expires_at"})


def _approval(row: Any) -> Approval:
    return Approval(
        id=row.id,
        process_id=row.process_id,
        definition=row.definition,
        wait_id=row.wait_id,
        state=row.state,
        title=row.title,
        description=row.description,
        data=row.data,
        status=row.status,
        created_at=row.created_at,
        decided_at=row.decided_at,
        seats=list(row.seats or ["anyone"]),
        rule=row.rule,
        votes=list(row.votes or []),
        expires_at=row.expires_at,
        on_expiry=row.on_expiry,
        form=row.form,
        holders=dict(row.holders or {}),
    )


@dataclass(frozen=True)
class LinkTarget:
    approval: Approval
    approve: bool
    seat: str

    @property
    def approval_id(self) -> str:
        return self.approval.id

    @property
    def process_id(self) -> str:
        return self.approval.process_id

    @property
    def wait_id(self) -> str:
        return self.approval.wait_id

    @property
    def status(self) -> str:
        return self.approval.status

    @property
    def title(self) -> str:
        return self.approval.title


_FIND_LINK = sql_text.statement(
    f"""SELECT {", ".join(f"a.{name}" for name in _APPROVAL_NAMES)}, l.approve, l.seat
    FROM approval_links AS l JOIN approvals AS a ON a.id = l.approval_id
    WHERE l.token_hash = $1"""
)


async def find_link(conn: AsyncConnection, token: str) -> LinkTarget | None:
    """What the approval link ``token`` decides, if it exists. Every decision reads it twice
    (the page, then the batch): fixed SQL text, not a statement built each time."""
    rows = await sql_text.fetch(conn, _FIND_LINK, (token_hash(token),))
    if not rows:
        return None
    *columns, approve, seat = rows[0]
    return LinkTarget(_approval(_text_row(conn, columns)), bool(approve), seat or "anyone")


def _text_row(conn: AsyncConnection, values: Sequence[Any]) -> SimpleNamespace:
    """An approval row read with SQL text, as the schema's types would have read it:
    PostgreSQL's driver decodes JSONB itself, SQLite gives the text SQLAlchemy's JSON type
    wrote; times come back aware UTC."""
    decode_json = not sql_text.is_postgres(conn)
    row: dict[str, Any] = {}
    for name, value in zip(_APPROVAL_NAMES, values, strict=True):
        if name in _TIME_NAMES:
            value = sql_text.read_time(value)
        elif name in _JSON_NAMES and decode_json and value is not None:
            value = json_text.loads(value)
        row[name] = value
    return SimpleNamespace(**row)


async def get_approval(conn: AsyncConnection, approval_id: str) -> Approval | None:
    row = (
        await conn.execute(select(*_APPROVAL_COLUMNS).where(approvals.c.id == approval_id))
    ).first()
    return None if row is None else _approval(row)


async def approvals_of_process(conn: AsyncConnection, process_id: str) -> list[Approval]:
    rows = await conn.execute(
        select(*_APPROVAL_COLUMNS)
        .where(approvals.c.process_id == process_id)
        .order_by(approvals.c.created_at)
    )
    return [_approval(row) for row in rows]


async def list_approvals(
    conn: AsyncConnection,
    *,
    status: str | None = ApprovalStatus.PENDING.value,
    definition: str | None = None,
    created_before: datetime | None = None,
    seat: str | None = None,
    limit: int = 200,
) -> list[Approval]:
    """Approvals, oldest first, at most ``limit``; ``seat`` keeps those that asked that seat."""
    query = select(*_APPROVAL_COLUMNS)
    if status is not None:
        query = query.where(approvals.c.status == status)
    if definition is not None:
        query = query.where(approvals.c.definition == definition)
    if created_before is not None:
        query = query.where(approvals.c.created_at <= created_before)
    query = query.order_by(approvals.c.created_at, approvals.c.id)
    found: list[Approval] = []
    page, offset = 500, 0
    # Seats are a JSON list, searched alike on SQLite and PostgreSQL by reading page by page.
    while len(found) < limit:
        rows = (await conn.execute(query.limit(page).offset(offset))).all()
        found += [a for a in map(_approval, rows) if seat is None or seat in a.seats]
        if len(rows) < page:
            break
        offset += page
    return found[:limit]


async def record_holders(conn: AsyncConnection, wait_id: str, holders: dict[str, str]) -> None:
    await conn.execute(
        update(approvals).where(approvals.c.wait_id == wait_id).values(holders=holders or None)
    )


async def find_approval_wait(conn: AsyncConnection, approval_id: str) -> tuple[str, str] | None:
    """The process and the wait of approval ``approval_id``."""
    row = (
        await conn.execute(
            select(approvals.c.process_id, approvals.c.wait_id).where(approvals.c.id == approval_id)
        )
    ).first()
    return None if row is None else (row.process_id, row.wait_id)


_RECORD_VOTE = sql_text.statement(
    """UPDATE approvals SET votes = CASE WHEN jsonb_typeof(votes) = 'array' THEN votes
    ELSE '[]'::jsonb END || jsonb_build_array($2::jsonb) WHERE wait_id = $1""",
    """UPDATE approvals SET votes = json_insert(CASE WHEN json_type(votes) = 'array'
    THEN votes ELSE '[]' END, '$[#]', json($2)) WHERE wait_id = $1""",
)


async def record_vote(conn: AsyncConnection, wait_id: str, vote: dict[str, Any]) -> None:
    """Add ``vote`` to the votes of the approval of ``wait_id``, in one statement."""
    await sql_text.execute(conn, _RECORD_VOTE, (wait_id, json_text.dumps(vote)))


async def conclude(
    conn: AsyncConnection, wait_id: str, outcome: ApprovalStatus, now: datetime
) -> None:
    """Conclude a pending approval; one concluded already stays as it ended (see
    ``ApprovalStatus.can_become``)."""
    assert ApprovalStatus.PENDING.can_become(outcome), outcome
    await sql_text.execute(
        conn, _CONCLUDE, (sql_text.ids(conn, [wait_id]), outcome.value, sql_text.time(conn, now))
    )


async def change_seats(conn: AsyncConnection, wait_id: str, seats: list[str]) -> None:
    """The seats of a pending approval after an escalation."""
    await conn.execute(
        update(approvals)
        .where(and_(approvals.c.wait_id == wait_id, approvals.c.status == PENDING))
        .values(seats=seats)
    )


_APPROVAL_ID_OF = sql_text.statement("SELECT id FROM approvals WHERE wait_id = $1")


async def approval_id_of(conn: AsyncConnection, wait_id: str) -> str | None:
    rows = await sql_text.fetch(conn, _APPROVAL_ID_OF, (wait_id,))
    return str(rows[0][0]) if rows else None
