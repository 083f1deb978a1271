"""Approval pages in a real browser: Debian's Chromium driven by Playwright."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from playwright.async_api import Browser

from bridge.broker import free_port
from tests.integration.harness import Bridge, running_bridge

pytestmark = pytest.mark.integration
HOSTILE = '<script>window.pwned=1</script><img src=x onerror="window.pwned=2">'


async def large_order(bridge: Bridge, order_id: str) -> dict[str, Any]:
    """Place an order over the threshold, answer its commands, return the approval request."""
    await bridge.publish(
        "orders.events",
        {
            "type": "OrderPlaced",
            "eventId": f"e-{order_id}",
            "orderId": order_id,
            "amount": 990,
            "customerId": HOSTILE,
            "items": [{"sku": "book", "qty": 1}],
        },
        key=order_id,
    )
    for topic in ("inventory.commands", "payments.commands"):
        command = await bridge.command(topic, order_id)
        status, _ = await bridge.post(f"/tasks/{command['taskToken']}/success", {"ok": True})
        assert status == 200
    request, _ = await bridge.next_message(
        "bridge.approvals", lambda value: value["data"]["orderId"] == order_id
    )
    return request


async def test_approve_in_the_browser(browser: Browser, tmp_path: Path, kafka: str) -> None:
    async with running_bridge(f"sqlite+aiosqlite:///{tmp_path}/b.db", kafka, tmp_path) as bridge:
        request = await large_order(bridge, "o-browser")
        page = await browser.new_page()
        response = await page.goto(request["approveUrl"])
        assert response is not None and response.status == 200
        assert "Approve order o-browser over 990" in await page.inner_text("h1")
        # Event data is shown as text, never run.
        assert "<script>window.pwned=1</script>" in await page.inner_text("pre")
        assert await page.evaluate("window.pwned") is None
        csp = (await response.all_headers())["content-security-policy"]
        assert "default-src 'none'" in csp

        await page.fill("#comment", "looks right")
        await page.click("button[value=approve]")
        await page.wait_for_selector("text=Thank you: approved")
        # Not a dead end: on to the process and the inbox.
        assert await page.get_attribute("text=Your approvals", "href") == "/approvals"
        to_process = await page.get_attribute("text=The process", "href")
        assert to_process == f"/processes/{request['processId']}"

        process = await bridge.process_for("o-browser", "SUCCEEDED")
        assert process["output"]["approval"]["comment"] == "looks right"
        assert process["output"]["approval"]["outcome"] == "APPROVED"

        # Opened again: the decision is shown, there is nothing left to press.
        await page.goto(request["approveUrl"])
        assert "nothing more to do" in await page.inner_text("main")
        assert await page.query_selector("form") is None
        assert await page.get_attribute(f"a:has-text('{process['id']}')", "href") == to_process

        # The address the banner shows lands on the process list.
        await page.goto(bridge.url + "/")
        assert page.url == bridge.url + "/processes"

        _, history = await bridge.get(f"/processes/{process['id']}/history")
        kinds = [entry["type"] for entry in history["items"]]
        assert "ApprovalVoted" in kinds
        # The views are audited on the approval, apart from the process.
        _, approval = await bridge.get(f"/approvals/{request['approvalId']}")
        assert sum(view["views"] for view in approval["views"]) >= 2
        await page.close()


ATTACKS = {
    # A form as a browser posts it by default: the nonce is missing.
    "form": '<form id="f" method="post" action="{url}">'
    '<input name="comment" value="pwned"><input name="decision" value="approve"></form>'
    "<script>document.getElementById('f').submit()</script>",
    # A text/plain form whose body reads as a decision: {"decision":"approve","comment":"="}.
    "plain": '<form id="f" method="post" enctype="text/plain" action="{url}">'
    '<input name=\'{{"decision":"approve","comment":"\' value=\'"}}\'></form>'
    "<script>document.getElementById('f').submit()</script>",
    # fetch without CORS: the answer is opaque, but the request is sent.
    "fetch": "<script>fetch('{url}', {{method: 'POST', mode: 'no-cors', "
    "body: '{{\"decision\":\"approve\"}}'}}).then(() => document.title = 'sent', "
    "() => document.title = 'failed')</script>",
}


async def test_a_post_from_another_site_decides_nothing(
    browser: Browser, tmp_path: Path, kafka: str
) -> None:
    async with running_bridge(f"sqlite+aiosqlite:///{tmp_path}/b.db", kafka, tmp_path) as bridge:
        assert bridge.url.startswith("http://127.0.0.1:")
        request = await large_order(bridge, "o-csrf")
        approve_url = request["approveUrl"]
        # Another site (another host name and port) whose pages post to the link behind your
        # back, as soon as they are opened.
        evil = web.Application()

        async def attack(request: web.Request) -> web.Response:
            page = ATTACKS[request.match_info["kind"]].format(url=approve_url)
            return web.Response(text=f"<html><body>{page}</body></html>", content_type="text/html")

        evil.router.add_get("/{kind:form|plain|fetch}", attack)
        runner = web.AppRunner(evil)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "localhost", port).start()
        try:
            for kind in ATTACKS:
                page = await browser.new_page()
                async with page.expect_response(lambda r: r.url == approve_url) as answer:
                    await page.goto(f"http://localhost:{port}/{kind}")
                response = await answer.value
                assert response.request.method == "POST", kind
                assert response.status == 403, kind
                if kind == "fetch":
                    await page.wait_for_function("document.title === 'sent'")
                else:
                    sent = await response.request.all_headers()
                    assert sent.get("origin") == f"http://localhost:{port}", (kind, sent)
                    assert "Cross-site request refused" in await page.inner_text("body"), kind
                await page.close()
        finally:
            await runner.cleanup()
        process = await bridge.process_for("o-csrf", "RUNNING")
        assert process["currentState"] == "ApproveOrder"
        _, history = await bridge.get(f"/processes/{process['id']}/history")
        kinds = [entry["type"] for entry in history["items"]]
        assert "ApprovalVoted" not in kinds and "ApprovalAttemptRefused" not in kinds
        status, approvals = await bridge.get("/approvals")
        assert status == 200
        [pending] = [a for a in approvals["items"] if a["processId"] == process["id"]]
        assert pending["status"] == "PENDING" and pending["votes"] == []


async def test_inbox_lists_the_pending_approval(
    browser: Browser, tmp_path: Path, kafka: str
) -> None:
    async with running_bridge(f"sqlite+aiosqlite:///{tmp_path}/b.db", kafka, tmp_path) as bridge:
        await large_order(bridge, "o-inbox")
        page = await browser.new_page()
        await page.goto(f"{bridge.url}/approvals")
        link = page.locator("text=Approve order o-inbox over 990")
        await link.click()
        assert "not decided yet" in await page.inner_text("main")
        await page.click("a[href^='/processes/']")
        assert "ApprovalRequested" in await page.inner_text("table.history")
        # Long payloads are one line each until opened; times read the same on every page.
        opened = page.locator("table.history details").first
        assert not await opened.get_attribute("open")
        assert not await opened.locator("pre").is_visible()
        await opened.locator("summary").click()
        assert '"input"' in await opened.locator("pre").inner_text()
        started = await page.locator("dt:text-is('Started') + dd").inner_text()
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", started.strip()), started
        for width, name in ((390, "phone"), (1280, "desktop")):
            await page.set_viewport_size({"width": width, "height": 900})
            await page.screenshot(path=str(tmp_path / f"process-{name}.png"), full_page=True)
            # Nothing wider than the screen: the payloads no longer stretch the page.
            assert await page.evaluate("document.documentElement.scrollWidth") <= width + 1
        await page.close()
