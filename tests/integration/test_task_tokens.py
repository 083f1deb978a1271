"""Task tokens name the wait they answer and are checked against the hash the wait keeps: a
token answers its own wait once; a forged one (right process and wait, wrong secret; or a
process that does not exist) is as unknown as a made-up one and changes nothing; a token handed
out before tokens named their wait is still found by its row. No token writes a row. SQLite and
PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import func, insert, select, update

from bridge.asl import task_tokens
from bridge.engine import CallbackReceived, Engine, EventReceived
from bridge.events import KafkaRecord
from bridge.store import outbox
from bridge.store.database import reading
from bridge.store.schema import processes
from bridge.store.schema import task_tokens as token_rows
from tests.integration.engines import engine_for

pytestmark = pytest.mark.integration

DEFINITION = {
    "Triggers": [{"Topic": "t", "EventType": "Go", "CorrelationKey": "$.k", "EventId": "$.id"}],
    "StartAt": "Ask",
    "States": {
        "Ask": {
            "Type": "Task",
            "Resource": "bridge:kafka:send.waitForTaskToken",
            "Parameters": {"Topic": "out", "Message": {"t.$": "$$.Task.Token"}},
            "TimeoutSeconds": 3600,
            "End": True,
        }
    },
}


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[Engine]:
    async with engine_for(database_url, DEFINITION, "ask") as engine:
        yield engine


async def start(engine: Engine, key: str) -> tuple[str, str]:
    """Start a process that waits for a callback: its id and the token it handed out."""
    value = json.dumps({"type": "Go", "id": f"e-{key}", "k": key}).encode()
    outcome = await engine.apply_one(EventReceived(KafkaRecord("t", 0, 0, b"k", value)))
    (process_id,) = outcome.process_ids
    async with reading(engine.db) as conn:
        (token,) = [m.value["t"] for m in await outbox.pending(conn) if m.process_id == process_id]
    return process_id, token


async def state(engine: Engine, process_id: str) -> dict[str, Any]:
    async with reading(engine.db) as conn:
        found = await conn.scalar(select(processes.c.state).where(processes.c.id == process_id))
    assert isinstance(found, dict)
    return found


def forged(token: str) -> str:
    """The same process and wait, another secret."""
    named = task_tokens.named(token)
    assert named is not None
    return task_tokens.make(*named, "x" * 43)


async def test_a_token_answers_its_wait_once_and_writes_no_row(engine: Engine) -> None:
    process_id, token = await start(engine, "a")
    assert task_tokens.named(token) is not None and task_tokens.named(token)[0] == process_id
    async with reading(engine.db) as conn:
        assert await conn.scalar(select(func.count()).select_from(token_rows)) == 0

    first = await engine.apply_one(CallbackReceived(token, "success", {"ok": 1}))
    again = await engine.apply_one(CallbackReceived(token, "success", {"ok": 2}))

    assert first.status == "applied"
    assert again.status == "conflict" and "already used" in again.reason
    assert (await state(engine, process_id))["output"] == {"ok": 1}


async def test_a_forged_token_is_unknown_and_changes_nothing(engine: Engine) -> None:
    process_id, token = await start(engine, "b")
    before = await state(engine, process_id)
    made_up = task_tokens.make("no-such-process", "w", "y" * 43)

    outcomes = await engine.apply(
        [
            CallbackReceived(forged(token), "success", {"stolen": True}),
            CallbackReceived(forged(token), "heartbeat"),
            CallbackReceived(made_up, "failure", error="E"),
            CallbackReceived("A" * 43, "success", {}),
        ]
    )

    assert [(o.status, o.reason) for o in outcomes] == [("not_found", "unknown task token")] * 4
    assert await state(engine, process_id) == before
    # The real one still works.
    assert (await engine.apply_one(CallbackReceived(token, "success", {}))).status == "applied"


async def test_a_token_with_a_row_of_its_own_still_answers(engine: Engine) -> None:
    """A process that waited before tokens named their wait: its wait keeps no hash, and its
    token (random only) is found by its row."""
    process_id, _ = await start(engine, "c")
    old_state = await state(engine, process_id)
    wait = old_state["position"]["wait"]
    old_state["position"]["wait"] = {k: v for k, v in wait.items() if k != "token_hash"}
    old_token = "B" * task_tokens.UNNAMED_LENGTH
    async with engine.db.begin() as conn:
        await conn.execute(
            update(processes).where(processes.c.id == process_id).values(state=old_state)
        )
        await conn.execute(
            insert(token_rows).values(
                token_hash=task_tokens.token_hash(old_token),
                process_id=process_id,
                wait_id=wait["id"],
                state="Ask",
                created_at=datetime.now(UTC),
            )
        )
    # A token that names this wait is refused: the wait only takes its row's token.
    named = task_tokens.make(process_id, wait["id"], "z" * 43)
    assert (await engine.apply_one(CallbackReceived(named, "success", {}))).status == "not_found"

    outcome = await engine.apply_one(CallbackReceived(old_token, "success", {"old": True}))

    assert outcome.status == "applied"
    assert (await state(engine, process_id))["output"] == {"old": True}
