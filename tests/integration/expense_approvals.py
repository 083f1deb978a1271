"""The expense approvals the approval tests drive: three definitions (a ``bridge:approval`` step
whose seats, rule, expiry policy and reminders come from the starting event), a client that starts
them and decides, views and inspects their approvals, and a bridge per database running them.

A bridge takes seconds to join its consumer group: each test file starts one per database
(``running_approvals`` in a module-scoped fixture) and its tests use their own correlation keys
and seat names.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import yaml
from sqlalchemy import select

from bridge.store.database import reading
from bridge.store.schema import processes
from tests.integration.harness import Bridge, eventually, running_bridge, scratch_database

JSON = Any
LONG = 3600
SHORT = 2
#: Long enough for a reminder 3 s before the expiry to be sent, and seen, before it on a busy
#: machine.
REMINDED = 6


def approval_definition(suffix: str, event_type: str, timeout: int) -> dict[str, JSON]:
    """Started by ``event_type`` on ``requests.<suffix>``; the approval's parameters come from
    the event; the outcome is announced on ``done.<suffix>``."""
    done = f"done.{suffix}"
    return {
        "Comment": "An approval with seats, a rule, an expiry policy and reminders.",
        "Triggers": [
            {
                "Topic": f"requests.{suffix}",
                "EventType": event_type,
                "CorrelationKey": "$.id",
                "EventId": "$.eventId",
            }
        ],
        "StartAt": "Approve",
        "States": {
            "Approve": {
                "Type": "Task",
                "Resource": "bridge:approval",
                "Parameters": {
                    "Title.$": "States.Format('Expense {} of {}', $.id, $.amount)",
                    "Description": "An expense that needs a human decision.",
                    "Data": {"id.$": "$.id", "amount.$": "$.amount"},
                    "Assignees.$": "$.assignees",
                    "Groups.$": "$.groups",
                    "Rule.$": "$.rule",
                    "OnExpiry.$": "$.onExpiry",
                    "RemindBeforeSeconds.$": "$.remind",
                },
                "TimeoutSeconds": timeout,
                "ResultPath": "$.approval",
                "Catch": [
                    {
                        "ErrorEquals": ["Approval.Rejected"],
                        "ResultPath": "$.rejection",
                        "Next": "AnnounceRejected",
                    }
                ],
                "Next": "AnnounceApproved",
            },
            "AnnounceApproved": {
                "Type": "Task",
                "Resource": "bridge:kafka:send",
                "Parameters": {
                    "Topic": done,
                    "Key.$": "$.id",
                    "Message": {
                        "type": "ExpenseApproved",
                        "id.$": "$.id",
                        "outcome.$": "$.approval.outcome",
                        "expired.$": "$.approval.expired",
                    },
                },
                "ResultPath": "$.announced",
                "End": True,
            },
            "AnnounceRejected": {
                "Type": "Task",
                "Resource": "bridge:kafka:send",
                "Parameters": {
                    "Topic": done,
                    "Key.$": "$.id",
                    "Message": {
                        "type": "ExpenseRejected",
                        "id.$": "$.id",
                        "error.$": "$.rejection.Error",
                        "cause.$": "$.rejection.Cause",
                    },
                },
                "ResultPath": "$.announced",
                "End": True,
            },
        },
    }


#: Definition name -> (event type, TimeoutSeconds).
DEFINITIONS = {
    "expense-approval": ("ExpenseSubmitted", LONG),
    "quick-approval": ("QuickExpenseSubmitted", SHORT),
    "reminded-approval": ("RemindedExpenseSubmitted", REMINDED),
    "purchase-approval": ("PurchaseSubmitted", LONG),
}
EVENT_TYPE = {name: event_type for name, (event_type, _) in DEFINITIONS.items()}


def write_definitions(folder: Path, suffix: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, (event_type, timeout) in DEFINITIONS.items():
        document = approval_definition(suffix, event_type, timeout)
        (folder / f"{name}.asl.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    return folder


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


class Approvals:
    """Starting approval processes on one bridge and deciding, viewing and inspecting them."""

    def __init__(self, bridge: Bridge, suffix: str) -> None:
        self.bridge = bridge
        self.suffix = suffix

    async def request(self, definition: str = "expense-approval", **spec: JSON) -> dict[str, JSON]:
        """Start a process by its event; the ApprovalRequested message it publishes."""
        (request,) = await self.requests((definition, spec))
        return request

    async def requests(self, *specs: tuple[str, dict[str, JSON]]) -> list[dict[str, JSON]]:
        """Start one process per (definition, parameters) at once; their approval requests.

        The events go out together; the requests are read one after the other, as the harness's
        consumers are not meant for concurrent readers."""
        keys = [await self.start(definition, **spec) for definition, spec in specs]
        found = []
        for key, (definition, _) in zip(keys, specs, strict=True):
            request, record = await self.bridge.next_message(
                "bridge.approvals",
                lambda v, key=key: (
                    v.get("type") == "ApprovalRequested" and v.get("correlationKey") == key
                ),
            )
            assert dict(record.headers)["ce_type"] == b"bridge.ApprovalRequested"
            assert request["definition"] == definition
            found.append(request)
        return found

    async def start(
        self,
        definition: str,
        *,
        assignees: list[str] | None = None,
        groups: list[str] | None = None,
        rule: str | int = "Any",
        on_expiry: str = "Fail",
        remind: list[int] | None = None,
        amount: int = 120,
    ) -> str:
        key = unique("x")
        await self.bridge.publish(
            f"requests.{self.suffix}",
            {
                "type": EVENT_TYPE[definition],
                "eventId": unique("e"),
                "id": key,
                "amount": amount,
                "assignees": assignees or [],
                "groups": groups or [],
                "rule": rule,
                "onExpiry": on_expiry,
                "remind": remind or [],
            },
            key=key,
        )
        return key

    @staticmethod
    def links(request: dict[str, JSON]) -> dict[str, dict[str, JSON]]:
        return {link["seat"]: link for link in request["links"]}

    async def decide(self, url: str, decision: str | None = None, **extra: str) -> tuple[int, JSON]:
        body: dict[str, str] = dict(extra)
        if decision is not None:
            body["decision"] = decision
        return await self.bridge.post(url, body)

    async def approval(self, approval_id: str) -> dict[str, JSON]:
        status, body = await self.bridge.get(f"/approvals/{approval_id}")
        assert status == 200, body
        return dict(body)

    async def process(self, process_id: str) -> dict[str, JSON]:
        status, body = await self.bridge.get(f"/processes/{process_id}")
        assert status == 200, body
        return dict(body)

    async def ended(self, process_id: str, status: str, timeout: float = 20.0) -> dict[str, JSON]:
        found: dict[str, JSON] = {}

        async def ready() -> bool:
            found.update(await self.process(process_id))
            return found["status"] == status

        await eventually(ready, timeout, lambda: f"process {process_id} not {status}: {found}")
        return found

    async def row_version(self, process_id: str) -> int:
        """The process row's version: bumped by every write of the process."""
        async with reading(self.bridge.core.db) as conn:
            found = await conn.scalar(
                select(processes.c.row_version).where(processes.c.id == process_id)
            )
        assert found is not None
        return int(found)

    async def history(self, process_id: str) -> list[dict[str, JSON]]:
        status, body = await self.bridge.get(f"/processes/{process_id}/history")
        assert status == 200, body
        return list(body["items"])

    async def kinds(self, process_id: str) -> list[str]:
        return [entry["type"] for entry in await self.history(process_id)]

    async def announced(self, key: str, timeout: float = 20.0) -> dict[str, JSON]:
        value, _ = await self.bridge.next_message(
            f"done.{self.suffix}", lambda v: v.get("id") == key, timeout
        )
        return value

    async def no_more_announcements(self, key: str, wait: float = 0.5) -> None:
        """No further announcement for ``key``: looked for once the outbox is empty."""
        await self.bridge.until_published()
        with pytest.raises(AssertionError, match="no matching message"):
            await self.announced(key, timeout=wait)

    async def inbox(self, **query: str | int) -> list[dict[str, JSON]]:
        path = "/approvals?" + "&".join(f"{k}={quote(str(v))}" for k, v in query.items())
        status, body = await self.bridge.get(path)
        assert status == 200, body
        return list(body["items"])


@asynccontextmanager
async def running_approvals(
    database: str, kafka: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Approvals]:
    """One bridge (worker and web) on ``database`` (sqlite or postgres) running the definitions
    above."""
    tmp_path = tmp_path_factory.mktemp("approvals")
    suffix = uuid.uuid4().hex[:8]
    folder = write_definitions(tmp_path / "definitions", suffix)
    async with (
        scratch_database(database, tmp_path) as database_url,
        running_bridge(
            database_url,
            kafka,
            tmp_path,
            definitions=folder,
            kafka_dlq_topic=f"dlq.{suffix}",
            kafka_lifecycle_topic=f"life.{suffix}",
        ) as bridge,
    ):
        assert bridge.core.problems == []
        yield Approvals(bridge, suffix)
