"""Claim, give back, delegate and reassign approval seats, on both databases through the web app
in process (its peer, 127.0.0.1, is the trusted proxy here): a claimed group seat is decided by
its holder only, a delegated seat by the delegate, an admin reassigns any seat, each change is in
the history with who asked; the inbox lists "mine" (user, groups, held seats) by deadline."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from approvals.app import build_app
from approvals.identity import ProxyIdentity
from approvals.pages import seat_nonce
from bridge.bootstrap import Core, open_core
from bridge.settings import Settings
from tests.integration.approval_requests import path_of, start_and_request

pytestmark = pytest.mark.integration

TASK = {
    "StartAt": "Approve",
    "States": {
        "Approve": {
            "Type": "Task",
            "Resource": "bridge:approval",
            "Parameters": {
                "Title": "Ship it?",
                "Assignees": ["ann"],
                "Groups": ["ops"],
                "Rule": "All",
            },
            "TimeoutSeconds": 86400,
            "End": True,
        }
    },
}


def who(name: str, groups: str | None = None) -> dict[str, str]:
    headers = {"X-Forwarded-User": name}
    if groups is not None:
        headers["X-Forwarded-Groups"] = groups
    return headers


@pytest.fixture
async def rig(database_url: str, tmp_path: Path) -> AsyncIterator[tuple[Core, TestClient]]:
    (tmp_path / "ship.asl.json").write_text(json.dumps(TASK))
    core = await open_core(Settings(database_url=database_url, definitions_dir=tmp_path))
    identity = ProxyIdentity.of("X-Forwarded-User", ["127.0.0.1"], "X-Forwarded-Groups")
    client = TestClient(TestServer(build_app(core.engine, "secret", identity=identity)))
    await client.start_server()
    try:
        yield core, client
    finally:
        await client.close()
        await core.close()


async def requested(core: Core) -> tuple[str, str, dict[str, str]]:
    """A new approval: its id, its process, and each seat's approve link path."""
    request = await start_and_request(core, "ship")
    paths = {link["seat"]: path_of(link["approveUrl"]) for link in request["links"]}
    return request["approvalId"], request["processId"], paths


async def seat(
    client: TestClient, path: str, change: str, headers: dict[str, str], **form: str
) -> int:
    token = path.rsplit("/", 1)[1]
    data = {"seat_nonce": seat_nonce(b"secret", token), "change": change, **form}
    response = await client.post(f"{path}/seat", data=data, headers=headers, allow_redirects=False)
    return response.status


async def decide(client: TestClient, path: str, headers: dict[str, str]) -> tuple[int, Any]:
    response = await client.post(path, json={}, headers=headers)
    return response.status, await response.json()


async def approval(client: TestClient, approval_id: str) -> Any:
    return await (await client.get(f"/approvals/{approval_id}")).json()


async def history(client: TestClient, process_id: str) -> list[dict[str, Any]]:
    found = await (await client.get(f"/processes/{process_id}/history")).json()
    return [entry for entry in found["items"] if entry["type"].startswith("ApprovalSeat")]


async def test_a_claimed_group_seat_is_decided_by_its_holder(rig: tuple[Core, TestClient]) -> None:
    core, client = rig
    approval_id, process_id, links = await requested(core)
    ops = links["group:ops"]
    assert await seat(client, ops, "claim", who("olga")) == 303
    assert (await approval(client, approval_id))["holders"] == {"group:ops": "olga"}
    # Another member: cannot claim it over her, give it back, or decide it.
    assert await seat(client, ops, "claim", who("pete")) == 409
    assert await seat(client, ops, "unclaim", who("pete")) == 409
    status, refused = await decide(client, ops, who("pete"))
    assert status == 409 and "held by olga" in refused["detail"]
    page = await (await client.get(ops, headers=who("pete"))).text()
    assert 'id="holder">olga<' in page and "only they decide it" in page
    status, _ = await decide(client, ops, who("olga"))
    assert status == 200
    votes = (await approval(client, approval_id))["votes"]
    assert [(vote["seat"], vote["by"]) for vote in votes] == [("group:ops", "olga")]
    assert [
        (e["type"], e["details"]["holder"], e["details"]["by"])
        for e in await history(client, process_id)
    ] == [("ApprovalSeatClaimed", "olga", "olga")]


async def test_delegate_give_back_and_reassign(rig: tuple[Core, TestClient]) -> None:
    core, client = rig
    approval_id, process_id, links = await requested(core)
    ann, ops = links["user:ann"], links["group:ops"]
    # Someone who is not ann cannot hand her seat on; she can.
    assert await seat(client, ann, "delegate", who("mallory"), name="mallory") == 409
    assert await seat(client, ann, "delegate", who("ann"), name="carl") == 303
    status, refused = await decide(client, ann, who("ann"))
    assert status == 409 and "held by carl" in refused["detail"]

    # Claimed, then given back by its holder.
    assert await seat(client, ops, "claim", who("olga")) == 303
    assert await seat(client, ops, "unclaim", who("olga")) == 303
    assert (await approval(client, approval_id))["holders"] == {"user:ann": "carl"}

    # An admin reassigns (the app here has no API tokens: everyone is admin).
    response = await client.post(
        f"/approvals/{approval_id}/seats/group:ops/reassign", json={"to": "zoe", "by": "the lead"}
    )
    assert response.status == 200, await response.text()
    assert (await response.json())["holders"] == {"user:ann": "carl", "group:ops": "zoe"}
    response = await client.post(
        f"/approvals/{approval_id}/seats/group:nope/reassign", json={"to": "x"}
    )
    assert response.status == 409
    response = await client.post(f"/approvals/{approval_id}/seats/group:ops/delegate", json={})
    assert response.status == 400

    # The inbox: mine by user, by held seat, by group; nothing for a stranger; by deadline.
    async def mine(headers: dict[str, str]) -> list[str]:
        response = await client.get("/approvals?mine=true", headers=headers)
        assert response.status == 200, await response.text()
        return [item["id"] for item in (await response.json())["items"]]

    assert await mine(who("carl")) == [approval_id]
    assert await mine(who("zoe")) == [approval_id]
    assert await mine(who("ann")) == []  # her seat is carl's now
    assert await mine(who("stranger", groups="ops")) == []  # ops's seat is zoe's
    assert (await client.get("/approvals?mine=true")).status == 400

    for path, name in ((ann, "carl"), (ops, "zoe")):
        status, _ = await decide(client, path, who(name))
        assert status == 200
    votes = (await approval(client, approval_id))["votes"]
    assert sorted((vote["seat"], vote["by"]) for vote in votes) == [
        ("group:ops", "zoe"),
        ("user:ann", "carl"),
    ]
    kinds = [(e["type"], e["details"]["by"]) for e in await history(client, process_id)]
    assert kinds == [
        ("ApprovalSeatDelegated", "ann"),
        ("ApprovalSeatClaimed", "olga"),
        ("ApprovalSeatUnclaimed", "olga"),
        ("ApprovalSeatReassigned", "the lead"),
    ]


async def test_the_inbox_lists_my_groups_by_deadline(rig: tuple[Core, TestClient]) -> None:
    core, client = rig
    first, _, _ = await requested(core)
    second, _, _ = await requested(core)
    response = await client.get("/approvals?mine=true", headers=who("pete", groups="ops,dev"))
    items = (await response.json())["items"]
    assert {item["id"] for item in items} == {first, second}
    deadlines = [item["expiresAt"] for item in items]
    assert deadlines == sorted(deadlines)
    page = await (
        await client.get("/approvals", headers={"Accept": "text/html", **who("pete", "ops")})
    ).text()
    assert "Only mine (pete)" in page and "Decide by" in page
