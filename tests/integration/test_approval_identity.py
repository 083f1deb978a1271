"""Who decided an approval: the user a trusted reverse proxy names, else the seat's user, else
the name the request gives, marked as unverified. A proxy's header from any other address is
ignored, so nobody names themselves by sending it. On both databases, through the web app in
process (its peer address is 127.0.0.1)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from approvals.app import build_app
from approvals.identity import ProxyIdentity
from bridge.bootstrap import Core, open_core
from bridge.settings import Settings
from bridge.store.database import reading
from tests.integration.approval_requests import path_of, start_and_request

pytestmark = pytest.mark.integration

APPROVAL = {
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
            "End": True,
        }
    },
}


@pytest.fixture
async def core(database_url: str, tmp_path: Path) -> AsyncIterator[Core]:
    (tmp_path / "ship.asl.json").write_text(json.dumps(APPROVAL))
    opened = await open_core(Settings(database_url=database_url, definitions_dir=tmp_path))
    try:
        yield opened
    finally:
        await opened.close()


async def client_for(core: Core, trusted: list[str]) -> TestClient:
    identity = ProxyIdentity.of("X-Forwarded-User", trusted)
    client = TestClient(TestServer(build_app(core.engine, "secret", identity=identity)))
    await client.start_server()
    return client


async def links(core: Core) -> tuple[str, dict[str, dict[str, str]]]:
    """A new approval: its process and each seat's links."""
    request = await start_and_request(core, "ship")
    return request["processId"], {link["seat"]: link for link in request["links"]}


async def decide(client: TestClient, url: str, headers: dict[str, str], **body: Any) -> Any:
    response = await client.post(path_of(url), json=body, headers=headers)
    assert response.status == 200, await response.text()
    return await response.json()


async def test_a_trusted_proxy_names_who_decided(core: Core) -> None:
    client = await client_for(core, ["127.0.0.1/32"])
    try:
        process_id, seats = await links(core)
        proxy = {"X-Forwarded-User": "olga@example.com"}
        await decide(client, seats["group:ops"]["approveUrl"], proxy, decidedBy="someone else")
        await decide(client, seats["user:ann"]["approveUrl"], {})
        # The proxy's word for the group's seat; the seat's user for ann's link.
        assert sorted(await vote_list(core, process_id)) == [
            ("group:ops", "olga@example.com"),
            ("user:ann", "ann"),
        ]
    finally:
        await client.close()


async def test_a_forged_identity_header_from_an_untrusted_address_is_ignored(core: Core) -> None:
    client = await client_for(core, ["10.0.0.0/8"])
    try:
        process_id, seats = await links(core)
        forged = {"X-Forwarded-User": "the-ceo"}
        await decide(client, seats["group:ops"]["approveUrl"], forged, decidedBy="Olga")
        await decide(client, seats["user:ann"]["rejectUrl"], forged, decidedBy="the-ceo")
        assert sorted(await vote_list(core, process_id)) == [
            ("group:ops", "Olga (unverified)"),
            ("user:ann", "ann"),
        ]
        # Views: the header is not believed either.
        await client.get(path_of(seats["group:ops"]["approveUrl"]), headers=forged)
        approval = await the_approval(core, process_id)
        assert {view["viewer"] for view in approval["views"]} == {None}
    finally:
        await client.close()


async def the_approval(core: Core, process_id: str) -> dict[str, Any]:
    from bridge.store import approval_views, waits

    async with reading(core.db) as conn:
        [found] = await waits.approvals_of_process(conn, process_id)
        views = await approval_views.of_approval(conn, found.id)
    return {**found.as_json(), "views": [view.as_json() for view in views]}


async def vote_list(core: Core, process_id: str) -> list[tuple[str, str | None]]:
    approval = await the_approval(core, process_id)
    return [(vote["seat"], vote["by"]) for vote in approval["votes"]]


def test_proxy_identity_settings() -> None:
    assert ProxyIdentity.of(None, ["127.0.0.1"]).header is None
    with pytest.raises(ValueError):
        ProxyIdentity.of("X-User", ["not an address"])
    with pytest.raises(ValueError, match="not an IP address"):
        Settings(trusted_proxies="10.0.0.0/8, nonsense")  # type: ignore[arg-type]
    assert Settings(trusted_proxies="10.0.0.0/8, ::1").trusted_proxies == ["10.0.0.0/8", "::1"]  # type: ignore[arg-type]
