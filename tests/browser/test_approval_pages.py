"""Approval pages in a real browser: Debian's Chromium driven by Playwright."""

from __future__ import annotations

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

        process = await bridge.process_for("o-browser", "SUCCEEDED")
        assert process["output"]["approval"]["comment"] == "looks right"
        assert process["output"]["approval"]["outcome"] == "APPROVED"

        # Opened again: the decision is shown, there is nothing left to press.
        await page.goto(request["approveUrl"])
        assert "nothing more to do" in await page.inner_text("main")
        assert await page.query_selector("form") is None

        _, history = await bridge.get(f"/processes/{process['id']}/history")
        kinds = [entry["type"] for entry in history["items"]]
        assert kinds.count("ApprovalViewed") >= 2 and "ApprovalVoted" in kinds
        await page.close()


async def test_a_form_from_another_origin_is_refused(
    browser: Browser, tmp_path: Path, kafka: str
) -> None:
    async with running_bridge(f"sqlite+aiosqlite:///{tmp_path}/b.db", kafka, tmp_path) as bridge:
        request = await large_order(bridge, "o-csrf")
        # Another site, on another origin, that posts a decision to the link behind your back.
        evil = web.Application()

        async def attack(_: web.Request) -> web.Response:
            form = (
                f'<form id="f" method="post" action="{request["approveUrl"]}">'
                '<input name="comment" value="pwned"><input name="decision" value="approve">'
                "</form><script>document.getElementById('f').submit()</script>"
            )
            return web.Response(text=form, content_type="text/html")

        evil.router.add_get("/", attack)
        runner = web.AppRunner(evil)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        try:
            page = await browser.new_page()
            await page.goto(f"http://127.0.0.1:{port}/")
            await page.wait_for_selector("text=Not accepted")
            await page.close()
        finally:
            await runner.cleanup()
        process = await bridge.process_for("o-csrf", "RUNNING")
        assert process["currentState"] == "ApproveOrder"
        _, history = await bridge.get(f"/processes/{process['id']}/history")
        assert "ApprovalAttemptRefused" in [entry["type"] for entry in history["items"]]


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
        await page.close()
