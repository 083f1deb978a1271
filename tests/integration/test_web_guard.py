"""Hostile HTTP input against a running bridge, on SQLite and PostgreSQL: writes from other sites
and of other media types are refused on every route (approvals/guard.py), deep, NUL-holding and
oversized bodies are 4xx problems naming the bound, hostile paths and query strings are 4xx, and
the bridge goes on serving.

One bridge per database serves every test of the module; each test uses its own names.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bridge.asl.limits import MAX_DEFINITION_DEPTH, MAX_DEPTH
from tests.conftest import create_postgres_database, drop_postgres_database
from tests.integration.harness import Bridge, running_bridge

pytestmark = pytest.mark.integration
JSON = Any
EVIL = "http://evil.example"
ECHO = {"StartAt": "Shape", "States": {"Shape": {"Type": "Pass", "End": True}}}
TWO_SEATS = {
    "StartAt": "Approve",
    "States": {
        "Approve": {
            "Type": "Task",
            "Resource": "bridge:approval",
            "Parameters": {"Title": "Guarded", "Assignees": ["ann", "bob"], "Rule": "All"},
            "TimeoutSeconds": 3600,
            "End": True,
        }
    },
}


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
async def bridge(
    request: pytest.FixtureRequest, kafka: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Bridge]:
    tmp_path = tmp_path_factory.mktemp("guard")
    if request.param == "sqlite":
        database_url = f"sqlite+aiosqlite:///{tmp_path}/bridge.db"
    else:
        database_url = await create_postgres_database()
    folder = tmp_path / "definitions"
    folder.mkdir()
    (folder / "echo.asl.json").write_text(json.dumps(ECHO))
    (folder / "two-seats.asl.json").write_text(json.dumps(TWO_SEATS))
    try:
        async with running_bridge(database_url, kafka, tmp_path, definitions=folder) as running:
            assert running.core.problems == []
            yield running
    finally:
        if request.param == "postgres":
            await drop_postgres_database(database_url)


async def send(
    bridge: Bridge,
    method: str,
    path_or_url: str,
    body: bytes | None = None,
    content_type: str | None = "application/json",
    **headers: str,
) -> tuple[int, str, JSON]:
    """Status, media type and body (parsed when JSON) of one raw request."""
    url = path_or_url if path_or_url.startswith("http") else bridge.url + path_or_url
    sent = {key.replace("_", "-"): value for key, value in headers.items()}
    if content_type is not None:
        sent["Content-Type"] = content_type
    async with bridge.http.request(method, url, data=body, headers=sent) as response:
        text = await response.text()
        kind = response.content_type
        return response.status, kind, json.loads(text) if "json" in kind else text


def assert_problem(answer: tuple[int, str, JSON], status: int, *words: str) -> None:
    code, kind, body = answer
    assert (code, kind) == (status, "application/problem+json"), answer
    assert body["status"] == status and body["title"], body
    for word in words:
        assert word in body.get("detail", ""), (word, body)


async def approval_request(bridge: Bridge) -> dict[str, JSON]:
    status, started = await bridge.post("/processes", {"definition": "two-seats"})
    assert status == 201, started
    request, _ = await bridge.next_message(
        "bridge.approvals",
        lambda v: v.get("type") == "ApprovalRequested" and v["processId"] == started["id"],
    )
    return dict(request)


async def kinds(bridge: Bridge, process_id: str) -> list[str]:
    status, history = await bridge.get(f"/processes/{process_id}/history")
    assert status == 200, history
    return [entry["type"] for entry in history["items"]]


def nested(depth: int) -> bytes:
    """Valid JSON: arrays nested ``depth`` deep."""
    return b"[" * depth + b"]" * depth


# ------------------------------------------------------------------------------ cross-site


async def test_a_decision_from_another_site_changes_nothing(bridge: Bridge) -> None:
    request = await approval_request(bridge)
    links = {link["seat"]: link for link in request["links"]}
    ann = links["user:ann"]["approveUrl"]
    decision = json.dumps({"decision": "approve"}).encode()
    attempts = [
        # A form with enctype="text/plain", or fetch(..., {mode: "no-cors"}), from another site.
        (403, decision, "text/plain", {"Origin": EVIL}),
        (
            403,
            decision,
            "text/plain;charset=UTF-8",
            {"Origin": EVIL, "Sec_Fetch_Site": "cross-site"},
        ),
        (403, decision, "application/json", {"Origin": EVIL}),
        (403, decision, "application/json", {"Sec_Fetch_Site": "cross-site"}),
        (403, decision, "application/json", {"Sec_Fetch_Site": "same-site"}),
        # A sandboxed frame, a data: URL or a redirect across sites say "null".
        (403, decision, "application/json", {"Origin": "null"}),
        (403, b"decision=approve&csrf=x", "application/x-www-form-urlencoded", {"Origin": EVIL}),
        (403, b"", None, {"Origin": EVIL}),
        # No Origin at all, but no JSON either.
        (415, decision, "text/plain", {}),
        (415, decision, None, {}),
        (415, decision, "application/octet-stream", {}),
    ]
    for status, body, kind, headers in attempts:
        answer = await send(bridge, "POST", ann, body, kind, **headers)
        assert_problem(answer, status)
    status, approval = await bridge.get(f"/approvals/{request['approvalId']}")
    assert status == 200 and approval["status"] == "PENDING" and approval["votes"] == []
    history = await kinds(bridge, request["processId"])
    assert "ApprovalVoted" not in history and "ApprovalAttemptRefused" not in history

    # From the bridge's own page, with the page's nonce: recorded.
    async with bridge.http.get(ann, headers={"Accept": "text/html"}) as response:
        page = await response.text()
    nonce = re.search(r'name="csrf" value="([^"]+)"', page)
    assert nonce is not None, page
    async with bridge.http.post(
        ann,
        data={"csrf": nonce.group(1), "decision": "approve", "comment": "fine"},
        headers={"Origin": bridge.url, "Sec-Fetch-Site": "same-origin"},
    ) as response:
        assert response.status == 200 and "Thank you: approved" in await response.text()

    # A machine: JSON, no Origin, no Sec-Fetch-Site.
    answer = await send(bridge, "POST", links["user:bob"]["approveUrl"], decision)
    assert answer[0] == 200 and answer[2]["status"] == "approved", answer
    status, approval = await bridge.get(f"/approvals/{request['approvalId']}")
    assert approval["status"] == "APPROVED" and len(approval["votes"]) == 2


async def test_every_write_from_another_site_is_refused(bridge: Bridge) -> None:
    key = f"k-{uuid.uuid4().hex[:8]}"
    start = json.dumps({"definition": "echo", "correlationKey": key}).encode()
    status, running = await bridge.post("/processes", {"definition": "two-seats"})
    assert status == 201
    running_id = running["id"]
    writes: list[tuple[str, str, bytes]] = [
        ("POST", "/processes", start),
        ("POST", f"/processes/{running_id}/stop", b"{}"),
        ("POST", f"/processes/{running_id}/redrive", b""),
        ("PUT", "/definitions/echo", json.dumps(ECHO | {"Comment": "changed"}).encode()),
        ("PUT", "/definitions/echo/aliases/live", b'{"routes":[{"version":1,"weight":100}]}'),
        ("DELETE", "/definitions/echo/aliases/live", b""),
        ("POST", "/tasks/some-token/success", b"{}"),
        ("POST", "/tasks/some-token/failure", b"{}"),
        ("POST", f"/ui/processes/{running_id}/stop", b"csrf=x"),
        ("POST", "/ui/signin", b"csrf=x&token=y"),
        ("POST", "/ui/signout", b"csrf=x"),
        ("PATCH", "/processes", b"{}"),
    ]
    for method, path, body in writes:
        for headers in ({"Origin": EVIL}, {"Sec_Fetch_Site": "cross-site"}, {"Origin": "null"}):
            answer = await send(bridge, method, path, body, **headers)
            assert_problem(answer, 403)
        if body:
            answer = await send(bridge, method, path, body, "text/plain")
            assert_problem(answer, 415, "application/json")
    # Forms only where the bridge's pages post them.
    for path in ("/processes", f"/processes/{running_id}/stop", "/tasks/t/success"):
        answer = await send(bridge, "POST", path, b"a=b", "application/x-www-form-urlencoded")
        assert_problem(answer, 415)

    # Nothing changed.
    status, found = await bridge.get(f"/processes?correlationKey={key}")
    assert status == 200 and found["items"] == []
    assert (await bridge.get(f"/processes/{running_id}"))[1]["status"] == "RUNNING"
    status, definition = await bridge.get("/definitions/echo")
    assert definition["version"] == 1 and "Comment" not in definition["document"]
    assert (await bridge.get("/definitions/echo/aliases/live"))[0] == 404

    # The same writes from the bridge's own origin, or from a machine, go through.
    answer = await send(bridge, "POST", "/processes", start, Origin=bridge.url)
    assert answer[0] == 201, answer
    answer = await send(bridge, "POST", f"/processes/{running_id}/stop", b"", None)
    assert answer[0] == 200 and answer[2]["status"] == "ABORTED", answer


# ------------------------------------------------------------------------------ hostile bodies


async def test_deep_nul_and_oversized_bodies_are_refused(bridge: Bridge) -> None:
    status, running = await bridge.post("/processes", {"definition": "two-seats"})
    assert status == 201
    json_writes = [
        ("POST", "/processes"),
        ("POST", f"/processes/{running['id']}/stop"),
        ("PUT", "/definitions/echo"),
        ("PUT", "/definitions/echo/aliases/live"),
        ("POST", "/tasks/some-token/success"),
        ("POST", "/tasks/some-token/failure"),
        ("POST", f"/approve/{'x' * 43}"),
    ]
    deep_bound = {"/definitions/echo": MAX_DEFINITION_DEPTH}
    for method, path in json_writes:
        bound = deep_bound.get(path, MAX_DEPTH)
        assert_problem(await send(bridge, method, path, b"[" * 5000), 400, "nested deeper")
        assert_problem(await send(bridge, method, path, nested(2000)), 400, f"than {bound} levels")
        assert_problem(await send(bridge, method, path, b'{"a": "x\\u0000y"}'), 400, "NUL")
        assert_problem(await send(bridge, method, path, b'{"a\\u0000": 1}'), 400, "NUL")
        assert_problem(await send(bridge, method, path, b"\xff\xfe{}"), 400, "UTF-8")
        assert_problem(await send(bridge, method, path, b"{broken"), 400, "not JSON")
        assert_problem(await send(bridge, method, path, b" " + b"1" * 300_000), 413)

    # A start whose input nests past the bound (pydantic's serialiser would stop near 255).
    deep_input = b'{"definition": "echo", "input": ' + nested(256) + b"}"
    assert_problem(await send(bridge, "POST", "/processes", deep_input), 400, "nested deeper")
    shallow = b'{"definition": "echo", "input": {"a": ' + nested(MAX_DEPTH - 2) + b"}}"
    answer = await send(bridge, "POST", "/processes?wait=5", shallow)
    assert answer[0] == 200 and answer[2]["status"] == "SUCCEEDED", answer

    # A heartbeat and a decision answer the same when the token is unknown, bodies or not.
    assert (await send(bridge, "POST", "/tasks/some-token/heartbeat", b"", None))[0] == 404
    assert (await send(bridge, "POST", f"/approve/{'x' * 43}", b"{}"))[0] == 404

    status, health = await bridge.get("/healthz")
    assert status == 200 and health["status"] == "ok"
    assert (await bridge.get(f"/processes/{running['id']}"))[1]["status"] == "RUNNING"


def parallels(levels: int) -> dict[str, JSON]:
    """A definition whose Parallel states nest ``levels`` deep (four JSON levels each)."""
    inner: dict[str, JSON] = {
        "StartAt": "Leaf",
        "States": {"Leaf": {"Type": "Pass", "Parameters": {"a": {"b": [1]}}, "End": True}},
    }
    for level in range(levels):
        name = f"L{level}"
        inner = {
            "StartAt": name,
            "States": {name: {"Type": "Parallel", "Branches": [inner], "End": True}},
        }
    return inner


def depth_of(value: JSON) -> int:
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            stack.extend((child, depth + 1) for child in node.values())
        elif isinstance(node, list):
            stack.extend((child, depth + 1) for child in node)
        else:
            continue
        deepest = max(deepest, depth)
    return deepest


async def test_definitions_may_nest_deeper_than_values(bridge: Bridge) -> None:
    name = f"nested-{uuid.uuid4().hex[:8]}"
    # A Map over Parallels within Parallels: deeper than a value may be, and fine.
    nested_map = {
        "StartAt": "Each",
        "States": {"Each": {"Type": "Map", "ItemProcessor": parallels(16), "End": True}},
    }
    assert depth_of(nested_map) > MAX_DEPTH
    status, deployed = await bridge.http_put(f"/definitions/{name}", nested_map)
    assert status == 201, deployed
    status, ended = await bridge.post("/processes?wait=10", {"definition": name, "input": [1]})
    assert status == 200 and ended["status"] == "SUCCEEDED", ended

    # Right under the bound: deployed, and shown again whole.
    levels = 1
    while depth_of(parallels(levels + 1)) <= MAX_DEFINITION_DEPTH:
        levels += 1
    deepest = parallels(levels)
    status, deployed = await bridge.http_put(f"/definitions/{name}", deepest)
    assert status == 201 and deployed["version"] == 2, deployed
    status, shown = await bridge.get(f"/definitions/{name}?version=2")
    assert status == 200 and shown["document"] == deepest
    # One nesting more: refused, naming the bound.
    too_deep = json.dumps(parallels(levels + 1)).encode()
    answer = await send(bridge, "PUT", f"/definitions/{name}", too_deep)
    assert_problem(answer, 400, f"deeper than {MAX_DEFINITION_DEPTH} levels")


# ------------------------------------------------------------------------ paths and queries


async def test_hostile_paths_and_query_strings_are_4xx(bridge: Bridge) -> None:
    long_id = "p" * 5000
    reads = [
        "/processes/{}",
        "/processes/{}/history",
        "/approvals/{}",
        "/events/{}",
        "/definitions/{}",
        "/definitions/{}/aliases",
        "/definitions/echo/aliases/{}",
    ]
    for template in reads:
        for value in ("a%00b", long_id):
            answer = await send(bridge, "GET", template.format(value), None, None)
            assert_problem(answer, 400, "path")
    for template in ("/processes/{}/stop", "/processes/{}/redrive"):
        for value in ("a%00b", long_id):
            answer = await send(bridge, "POST", template.format(value), b"{}")
            assert_problem(answer, 400)
    # A token of any shape is just not one of ours: the answer of every unknown token.
    for value in ("a%00b", long_id):
        assert_problem(await send(bridge, "POST", f"/tasks/{value}/success", b"{}"), 404)
        assert_problem(await send(bridge, "POST", f"/approve/{value}", b"{}"), 404)
        answer = await send(bridge, "GET", f"/approve/{value}", None, None)
        assert answer[0] == 404 and "unknown or no longer valid" in answer[2]
    # Past the server's line limit (8 KiB): refused by the HTTP parser, still a 4xx.
    async with bridge.http.get(f"{bridge.url}/processes/{'p' * 10_000}") as response:
        assert 400 <= response.status < 500

    for query in (
        f"correlationKey={'k' * 501}",
        "correlationKey=a%00b",
        "definition=a%00",
        "cursor=%00",
        "anything=%00",
    ):
        assert_problem(await send(bridge, "GET", f"/processes?{query}", None, None), 400)
    assert_problem(await send(bridge, "GET", "/approvals?assignee=a%00", None, None), 400)
    assert_problem(
        await send(bridge, "GET", "/definitions/echo/diagram?process=%00", None, None), 400
    )
    status, found = await bridge.get(f"/processes?correlationKey={'k' * 500}")
    assert status == 200 and found["items"] == []
    assert (await bridge.get("/healthz"))[0] == 200
