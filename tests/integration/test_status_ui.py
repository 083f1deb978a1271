"""The status UI over HTTP: the diagram endpoint, the process list page, signing in with an API
token, and the admins' stop and redrive forms (nonce, origin, role)."""

from __future__ import annotations

import json
import re
import uuid
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest

from tests.integration.harness import Bridge, running_bridge

pytestmark = pytest.mark.integration

HOSTILE = '<img src=x onerror="window.pwned=1">"]}%%'
ADMIN, READER = "admin-secret-token", "reader-secret-token"
SVG = "{http://www.w3.org/2000/svg}"


def ops_definition(topic: str) -> dict[str, Any]:
    """A check in two branches: a command that waits for its callback, and a Pass with a
    hostile name. A failed callback fails the branch, the Parallel and the process."""
    return {
        "Comment": "Status UI tests",
        "StartAt": "Check",
        "States": {
            "Check": {
                "Type": "Parallel",
                "Next": "Done",
                "Branches": [
                    {
                        "StartAt": "Verify",
                        "States": {
                            "Verify": {
                                "Type": "Task",
                                "Resource": "bridge:kafka:send.waitForTaskToken",
                                "Parameters": {
                                    "Topic": topic,
                                    "Key.$": "$.key",
                                    "Message": {"key.$": "$.key", "taskToken.$": "$$.Task.Token"},
                                },
                                "End": True,
                            }
                        },
                    },
                    {"StartAt": HOSTILE, "States": {HOSTILE: {"Type": "Pass", "End": True}}},
                ],
            },
            "Done": {"Type": "Succeed"},
        },
    }


ECHO = {"StartAt": "Echo", "States": {"Echo": {"Type": "Pass", "End": True}}}


@asynccontextmanager
async def ops_bridge(
    kafka: str, tmp_path: Path, database_url: str | None = None, **overrides: Any
) -> AsyncIterator[Bridge]:
    folder = tmp_path / "definitions"
    folder.mkdir(parents=True)
    topic = f"ops.commands.{uuid.uuid4().hex[:8]}"
    (folder / "ops-check.asl.json").write_text(json.dumps(ops_definition(topic)))
    (folder / "echo.asl.json").write_text(json.dumps(ECHO))
    database = database_url or f"sqlite+aiosqlite:///{tmp_path}/b.db"
    async with running_bridge(database, kafka, tmp_path, definitions=folder, **overrides) as bridge:
        bridge.topics["ops.commands"] = topic
        yield bridge


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def start(bridge: Bridge, key: str, headers: dict[str, str] | None = None) -> str:
    body = {"definition": "ops-check", "input": {"key": key}, "correlationKey": key}
    async with bridge.http.post(f"{bridge.url}/processes", json=body, headers=headers) as response:
        assert response.status == 201, await response.text()
        return str((await response.json())["id"])


async def fail(bridge: Bridge, key: str) -> None:
    """Fail the waiting Verify step of the process for ``key`` through its callback."""
    command, _ = await bridge.next_message("ops.commands", lambda value: value["key"] == key)
    async with bridge.http.post(
        f"{bridge.url}/tasks/{command['taskToken']}/failure",
        json={"error": "Check.Failed", "cause": "the check said no"},
    ) as response:
        assert response.status == 200, await response.text()


async def process(bridge: Bridge, process_id: str, headers: dict[str, str] | None = None) -> Any:
    async with bridge.http.get(f"{bridge.url}/processes/{process_id}", headers=headers) as response:
        assert response.status == 200
        return await response.json()


async def until_status(
    bridge: Bridge, process_id: str, status: str, headers: dict[str, str] | None = None
) -> Any:
    import asyncio

    for _ in range(400):
        found = await process(bridge, process_id, headers)
        if found["status"] == status:
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"{process_id} never became {status}: {found}")


HTML = {"Accept": "text/html"}


def svg_root(text: str) -> ET.Element:
    return ET.fromstring(text)


def node_classes(root: ET.Element) -> dict[str, str]:
    """State label (first text line) -> the node's classes, from a Graphviz SVG."""
    found = {}
    for group in root.iter(f"{SVG}g"):
        classes = group.get("class", "")
        if "state" not in classes.split():
            continue
        texts = [t.text or "" for t in group.iter(f"{SVG}text")]
        found[texts[0]] = classes
    return found


# --------------------------------------------------------------------------- diagrams


async def test_diagram_endpoint_formats_versions_and_marks(
    database_url: str, kafka: str, tmp_path: Path
) -> None:
    async with ops_bridge(kafka, tmp_path, database_url) as bridge:
        process_id = await start(bridge, "k-diagram")
        await fail(bridge, "k-diagram")
        await until_status(bridge, process_id, "FAILED")

        base = f"{bridge.url}/definitions/ops-check/diagram"
        async with bridge.http.get(f"{base}?format=mermaid") as response:
            assert response.status == 200
            assert response.content_type == "text/vnd.mermaid"
            mermaid = await response.text()
        assert mermaid.startswith("stateDiagram-v2\n") and "class " not in mermaid
        assert "#60;img src=x onerror=#34;window.pwned=1#34;#62;" in mermaid

        async with bridge.http.get(f"{base}?format=dot&version=1") as response:
            assert response.status == 200 and response.content_type == "text/vnd.graphviz"
            assert (await response.text()).startswith("digraph definition {")

        async with bridge.http.get(base) as response:  # svg by default
            assert response.status == 200 and response.content_type == "image/svg+xml"
            assert "sandbox" in response.headers["Content-Security-Policy"]
            root = svg_root(await response.text())
        classes = node_classes(root)
        assert set(classes) == {"Check", "Verify", HOSTILE, "Done"}
        assert all(value == "node state" for value in classes.values())
        # The hostile name is text in the SVG, never markup.
        assert not [e for e in root.iter() if e.tag.split("}")[-1] in ("script", "img", "image")]
        assert not [e for e in root.iter() if any(a.startswith("on") for a in e.attrib)]

        # With a process: its version and its marks.
        async with bridge.http.get(f"{base}?process={process_id}&format=svg") as response:
            assert response.status == 200
            classes = node_classes(svg_root(await response.text()))
        assert classes["Check"] == "node state failed"
        assert classes["Verify"] == "node state failed"
        assert classes[HOSTILE] == "node state visited"
        assert classes["Done"] == "node state"
        async with bridge.http.get(f"{base}?process={process_id}&format=mermaid") as response:
            text = await response.text()
        assert re.search(r"^    class n\d+,n\d+ failed$", text, re.M), text

        for query, status in (
            ("?format=png", 400),
            ("?version=0", 400),
            ("?version=x", 400),
            ("?version=9", 404),
            ("?process=missing", 404),
            (f"?process={process_id}&version=2", 400),
        ):
            async with bridge.http.get(base + query) as response:
                assert response.status == status, query
                assert response.content_type == "application/problem+json"
        async with bridge.http.get(f"{bridge.url}/definitions/nope/diagram") as response:
            assert response.status == 404
        # A process of another definition is not found under this one.
        async with bridge.http.get(
            f"{bridge.url}/definitions/echo/diagram?process={process_id}"
        ) as response:
            assert response.status == 404


async def test_without_graphviz_the_page_draws_the_diagram_itself(
    kafka: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "no-dot-here"))
    async with ops_bridge(kafka, tmp_path) as bridge:
        process_id = await start(bridge, "k-nodot")
        async with bridge.http.get(
            f"{bridge.url}/definitions/ops-check/diagram?format=svg"
        ) as response:
            assert response.status == 200 and response.content_type == "image/svg+xml"
            assert (await response.text()).startswith("<svg")
        async with bridge.http.get(
            f"{bridge.url}/processes/{process_id}", headers=HTML
        ) as response:
            assert response.status == 200
            page = await response.text()
        assert '<figure class="diagram"><svg' in page and "mermaid-text" not in page
        # Where the process is, in the Parallel and in its branch, is marked.
        current = re.findall(r'<g class="node state current">.*?>([^<]+)</text>', page)
        assert {"Check", "Verify"} <= set(current), current
        # Escaped, never markup.
        assert HOSTILE not in page and "&lt;img src=x onerror=" in page


# --------------------------------------------------------------------------- list page


async def test_process_list_page_filters_and_pages(kafka: str, tmp_path: Path) -> None:
    async with ops_bridge(kafka, tmp_path) as bridge:
        ids = [await start(bridge, f"k-list-{n}") for n in range(3)]
        await fail(bridge, "k-list-1")
        await until_status(bridge, ids[1], "FAILED")
        async with bridge.http.post(
            f"{bridge.url}/processes?wait=5", json={"definition": "echo", "input": {}}
        ) as response:
            echo_id = (await response.json())["id"]

        async def page(query: str = "") -> tuple[int, str]:
            async with bridge.http.get(f"{bridge.url}/processes{query}", headers=HTML) as r:
                assert r.content_type == "text/html"
                return r.status, await r.text()

        # The same path still answers JSON to API clients.
        async with bridge.http.get(f"{bridge.url}/processes") as response:
            assert response.content_type == "application/json"
            assert len((await response.json())["items"]) == 4

        status, everything = await page()
        assert status == 200 and all(f"/processes/{i}" in everything for i in [*ids, echo_id])
        _, failed = await page("?status=FAILED")
        assert f"/processes/{ids[1]}" in failed and f"/processes/{ids[0]}" not in failed
        _, by_key = await page("?correlationKey=k-list-2&status=")
        assert f"/processes/{ids[2]}" in by_key and f"/processes/{ids[0]}" not in by_key
        _, by_definition = await page("?definition=echo")
        assert f"/processes/{echo_id}" in by_definition and ids[0] not in by_definition
        _, none = await page("?startedBefore=2000-01-01T00:00")
        assert "No processes match." in none
        _, all_after = await page("?startedAfter=2000-01-01T00:00:00")
        assert all(f"/processes/{i}" in all_after for i in ids)
        status, bad = await page("?status=NOPE")
        assert status == 400 and 'class="error"' in bad

        # Paging: two a page, "older" follows the cursor and keeps the filters.
        _, first = await page("?definition=ops-check&limit=2")
        older = re.search(r'<a href="([^"]+)" rel="next" class="older">', first)
        assert older is not None
        link = older.group(1).replace("&amp;", "&")
        assert "definition=ops-check" in link and "limit=2" in link and "cursor=" in link
        _, second = await page(link.removeprefix("/processes"))
        shown = set(re.findall(r'href="/processes/([^"/]+)"', first + second))
        assert shown == set(ids)
        assert 'class="older"' not in second and 'class="newest"' in second


# --------------------------------------------------------------------------- sign-in and actions


def nonce(page: str, action: str) -> str:
    match = re.search(
        rf'action="/ui/processes/[^"]+/{action}"[^>]*>\s*<input type="hidden" name="csrf" '
        r'value="([^"]+)"',
        page,
    )
    assert match is not None, f"no {action} form"
    return match.group(1)


async def sign_in(http: aiohttp.ClientSession, url: str, token: str) -> aiohttp.ClientResponse:
    async with http.get(f"{url}/ui/signin?next=/processes") as response:
        form = await response.text()
    csrf = re.search(r'name="csrf" value="([^"]+)"', form)
    assert csrf is not None
    async with http.post(
        f"{url}/ui/signin",
        data={"csrf": csrf.group(1), "token": token, "next": "/processes"},
        headers={"Origin": url},
        allow_redirects=False,
    ) as response:
        await response.read()
        return response


async def test_signing_in_and_the_admin_actions(kafka: str, tmp_path: Path) -> None:
    async with ops_bridge(
        kafka, tmp_path, api_admin_tokens=ADMIN, api_read_tokens=READER
    ) as bridge:
        url = bridge.url
        running = await start(bridge, "k-run", bearer(ADMIN))
        failed = await start(bridge, "k-fail", bearer(ADMIN))
        await fail(bridge, "k-fail")
        await until_status(bridge, failed, "FAILED", bearer(ADMIN))

        jar = aiohttp.CookieJar(unsafe=True)  # cookies from 127.0.0.1
        async with aiohttp.ClientSession(cookie_jar=jar, headers=HTML) as browser:
            # Not signed in: pages send to the sign-in page, the API still says 401.
            async with browser.get(f"{url}/processes/{running}", allow_redirects=False) as r:
                assert r.status == 303
                location = urlsplit(r.headers["Location"])
                assert location.path == "/ui/signin"
                assert parse_qs(location.query) == {"next": [f"/processes/{running}"]}
            async with bridge.http.get(f"{url}/processes/{running}") as r:
                assert r.status == 401

            # A wrong token: refused, no cookie.
            response = await sign_in(browser, url, "guess")
            assert response.status == 401 and "bridge_session" not in response.cookies

            # A read-only token: pages, no actions; a forged action is refused.
            response = await sign_in(browser, url, READER)
            assert response.status == 303 and response.headers["Location"] == "/processes"
            cookie = response.cookies["bridge_session"]
            assert cookie["httponly"] and cookie["samesite"] == "Strict"
            assert READER not in cookie.value
            async with browser.get(f"{url}/processes/{running}") as r:
                page = await r.text()
            assert r.status == 200 and "<svg" in page and "read-only" in page
            assert "/ui/processes/" not in page
            async with browser.post(
                f"{url}/ui/processes/{running}/stop", data={"csrf": "x"}, headers={"Origin": url}
            ) as r:
                assert r.status == 403
            # A session cookie never writes through the JSON API.
            async with browser.post(f"{url}/processes/{running}/stop", json={}) as r:
                assert r.status == 401

            # An admin token: the running process has Stop, the failed one Redrive.
            response = await sign_in(browser, url, ADMIN)
            assert response.status == 303
            async with browser.get(f"{url}/processes/{running}") as r:
                page = await r.text()
            assert "admin" in page and "redrive" not in page.lower().split("<h2>history")[0]
            stop = nonce(page, "stop")
            async with browser.get(f"{url}/processes/{failed}") as r:
                redrive = nonce(await r.text(), "redrive")

            forged = [
                ({"csrf": "forged"}, {"Origin": url}, running, "stop"),
                ({"csrf": stop}, {"Origin": "http://evil.example"}, running, "stop"),
                ({"csrf": stop}, {"Origin": url}, failed, "stop"),  # another process's nonce
                ({"csrf": redrive}, {"Origin": url}, failed, "stop"),  # another action's nonce
                ({}, {"Origin": url}, running, "stop"),
            ]
            for data, headers, target, action in forged:
                async with browser.post(
                    f"{url}/ui/processes/{target}/{action}",
                    data=data,
                    headers=headers,
                    allow_redirects=False,
                ) as r:
                    assert r.status == 403, (data, headers, target, action)
            assert (await process(bridge, running, bearer(ADMIN)))["status"] == "RUNNING"

            async with browser.post(
                f"{url}/ui/processes/{running}/stop",
                data={"csrf": stop, "cause": "tested"},
                headers={"Origin": url},
                allow_redirects=False,
            ) as r:
                assert r.status == 303 and r.headers["Location"] == f"/processes/{running}"
            stopped = await process(bridge, running, bearer(ADMIN))
            assert (stopped["status"], stopped["cause"]) == ("ABORTED", "tested")
            # Stopping again: the engine refuses, the page says why.
            async with browser.post(
                f"{url}/ui/processes/{running}/stop",
                data={"csrf": stop},
                headers={"Origin": url},
                allow_redirects=False,
            ) as r:
                assert r.status == 409 and "Not stopped" in await r.text()

            async with browser.post(
                f"{url}/ui/processes/{failed}/redrive",
                data={"csrf": redrive},
                headers={"Origin": url},
                allow_redirects=False,
            ) as r:
                assert r.status == 303
            redriven = await process(bridge, failed, bearer(ADMIN))
            assert redriven["status"] == "RUNNING" and redriven["currentState"] == "Check"
            async with bridge.http.get(
                f"{url}/processes/{failed}/history", headers=bearer(ADMIN)
            ) as r:
                kinds = [entry["type"] for entry in (await r.json())["items"]]
            assert "ProcessRedriven" in kinds

            # Signed out: back to the sign-in page; the old nonce is no good any more.
            async with browser.get(f"{url}/ui/signin") as r:
                signout = re.search(
                    r'action="/ui/signout"><input type="hidden" name="csrf" value="([^"]+)"',
                    await r.text(),
                )
            assert signout is not None
            async with browser.post(
                f"{url}/ui/signout",
                data={"csrf": signout.group(1)},
                headers={"Origin": url},
                allow_redirects=False,
            ) as r:
                assert r.status == 303
            async with browser.get(f"{url}/processes/{failed}", allow_redirects=False) as r:
                assert r.status == 303

        # Bearer tokens work as before, with or without pages.
        async with bridge.http.get(
            f"{url}/processes/{failed}", headers={**bearer(READER), **HTML}
        ) as r:
            assert r.status == 200 and "/ui/processes/" not in await r.text()
        async with bridge.http.get(f"{url}/processes/{failed}", headers=bearer(ADMIN)) as r:
            assert r.status == 200


async def test_sign_in_refuses_forgery_and_open_redirects(kafka: str, tmp_path: Path) -> None:
    async with ops_bridge(kafka, tmp_path, api_admin_tokens=ADMIN) as bridge:
        url = bridge.url
        jar = aiohttp.CookieJar(unsafe=True)
        async with aiohttp.ClientSession(cookie_jar=jar, headers=HTML) as browser:
            # Without the page's nonce and cookie, or from another origin: refused.
            async with browser.post(
                f"{url}/ui/signin", data={"token": ADMIN}, headers={"Origin": url}
            ) as r:
                assert r.status == 403
            async with browser.get(f"{url}/ui/signin") as r:
                csrf = re.search(r'name="csrf" value="([^"]+)"', await r.text())
            assert csrf is not None
            async with browser.post(
                f"{url}/ui/signin",
                data={"csrf": csrf.group(1), "token": ADMIN},
                headers={"Origin": "http://evil.example"},
            ) as r:
                assert r.status == 403
            for target in ("//evil.example/x", "https://evil.example/", "/\\evil", "javascript:x"):
                # Each sign-in uses up the page's nonce: open the page again.
                async with browser.get(f"{url}/ui/signin") as r:
                    csrf = re.search(r'name="csrf" value="([^"]+)"', await r.text())
                assert csrf is not None
                async with browser.post(
                    f"{url}/ui/signin",
                    data={"csrf": csrf.group(1), "token": ADMIN, "next": target},
                    headers={"Origin": url},
                    allow_redirects=False,
                ) as r:
                    assert r.status == 303 and r.headers["Location"] == "/processes", target
        # With no tokens configured the sign-in page says so and everyone is admin.
    async with ops_bridge(kafka, tmp_path / "open") as bridge:
        async with bridge.http.get(f"{bridge.url}/ui/signin") as r:
            assert "No API tokens are configured" in await r.text()
        process_id = await start(bridge, "k-open")
        async with bridge.http.get(f"{bridge.url}/processes/{process_id}", headers=HTML) as r:
            page = await r.text()
        assert 'action="/ui/processes/' in page and "open access" in page
