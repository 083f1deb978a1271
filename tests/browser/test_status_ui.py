"""The status UI in a real browser (Debian's Chromium via Playwright): sign in with an API token,
filter the process list, open a failed process, see the failed state in the diagram, redrive it,
stop a running one; a read-only token sees no actions, and forged posts are refused."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from aiohttp import web
from playwright.async_api import Browser, BrowserContext, ConsoleMessage, Page

from bridge.broker import free_port
from tests.integration.test_status_ui import (
    ADMIN,
    HOSTILE,
    READER,
    bearer,
    fail,
    ops_bridge,
    process,
    start,
    until_status,
)

pytestmark = pytest.mark.integration


async def signed_in(browser: Browser, url: str, token: str) -> tuple[BrowserContext, Page]:
    """A fresh browser profile that signed in with ``token`` and sees the process list."""
    context = await browser.new_context()
    page = await context.new_page()
    await page.goto(f"{url}/processes")
    assert "/ui/signin" in page.url, "pages send people who are not signed in to sign in"
    await page.fill("#token", token)
    await page.click("button[type=submit]")
    await page.wait_for_selector("h1:text('Processes')")
    return context, page


def csp_watch(page: Page) -> list[str]:
    """Console errors about the Content-Security-Policy (e.g. a blocked inline style)."""
    seen: list[str] = []

    def note(message: ConsoleMessage) -> None:
        if message.type == "error" and "Content Security Policy" in message.text:
            seen.append(message.text)

    page.on("console", note)
    return seen


@asynccontextmanager
async def evil_site(target: str, fields: dict[str, str]) -> AsyncIterator[str]:
    """Another origin whose page posts a form to ``target`` as soon as it is opened."""
    evil = web.Application()
    inputs = "".join(f'<input name="{k}" value="{v}">' for k, v in fields.items())

    async def attack(_: web.Request) -> web.Response:
        form = (
            f'<form id="f" method="post" action="{target}">{inputs}</form>'
            "<script>document.getElementById('f').submit()</script>"
        )
        return web.Response(text=form, content_type="text/html")

    evil.router.add_get("/", attack)
    runner = web.AppRunner(evil)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        await runner.cleanup()


async def test_status_ui_as_admin_and_reader(browser: Browser, kafka: str, tmp_path: Path) -> None:
    async with ops_bridge(
        kafka, tmp_path, api_admin_tokens=ADMIN, api_read_tokens=READER
    ) as bridge:
        url, admin = bridge.url, bearer(ADMIN)
        to_stop = await start(bridge, "k-stop", admin)
        failed = await start(bridge, "k-failed", admin)
        await start(bridge, "k-other", admin)
        await fail(bridge, "k-failed")
        await until_status(bridge, failed, "FAILED", admin)

        context, page = await signed_in(browser, url, ADMIN)
        blocked = csp_watch(page)
        assert "signed in (admin)" in await page.inner_text("nav")
        assert await page.locator("table.processes tbody tr").count() == 3

        # Filters: status, then correlation key.
        await page.select_option("select[name=status]", "FAILED")
        await page.click("form.filters button")
        await page.wait_for_url("**status=FAILED**")
        rows = page.locator("table.processes tbody tr")
        assert await rows.count() == 1 and "k-failed" in await rows.first.inner_text()
        await page.select_option("select[name=status]", "")
        await page.fill("input[name=correlationKey]", "k-stop")
        await page.click("form.filters button")
        await page.wait_for_url("**correlationKey=k-stop**")
        assert await rows.count() == 1 and "k-stop" in await rows.first.inner_text()
        await page.fill("input[name=correlationKey]", "")
        await page.fill("input[name=definition]", "echo")
        await page.click("form.filters button")
        await page.wait_for_selector("text=No processes match.")

        # The failed process: its failed states are marked in the diagram.
        await page.goto(f"{url}/processes?status=FAILED")
        await page.click(f"a[href='/processes/{failed}']")
        await page.wait_for_selector("figure.diagram svg")
        assert await page.inner_text("#status") == "FAILED"
        failed_states = await page.locator("g.node.failed text").all_text_contents()
        assert "Verify" in failed_states and "Check" in failed_states
        visited = await page.locator("g.node.visited text").all_text_contents()
        assert HOSTILE in visited  # the hostile name is text, drawn as such
        assert await page.evaluate("window.pwned") is None
        assert await page.locator("figure.diagram img, figure.diagram script").count() == 0

        # Redrive it: running again, the branch's step current once more.
        await page.click("form.redrive button")
        await page.wait_for_selector("#status:text('RUNNING')")
        current = await page.locator("g.node.current text").all_text_contents()
        assert "Verify" in current and "Check" in current
        assert await page.locator("g.node.failed").count() == 0
        assert "ProcessRedriven" in await page.inner_text("table.history")

        # Stop a running one, with a reason.
        await page.goto(f"{url}/processes?correlationKey=k-stop")
        await page.click(f"a[href='/processes/{to_stop}']")
        await page.fill("#cause", "stopped in the browser test")
        await page.click("form.stop button")
        await page.wait_for_selector("#status:text('ABORTED')")
        stopped = await process(bridge, to_stop, admin)
        assert stopped["cause"] == "stopped in the browser test"
        assert blocked == [], blocked

        # Another site posting a stop behind the admin's back: refused for its Origin (and the
        # session cookie stays home, SameSite=Strict, and the nonce is missing), so nothing
        # happens.
        other = await start(bridge, "k-forged", admin)
        async with evil_site(f"{url}/ui/processes/{other}/stop", {"cause": "pwned"}) as evil:
            forged = await context.new_page()
            await forged.goto(evil)
            await forged.wait_for_selector("text=Cross-site request refused")
            await forged.close()
        assert (await process(bridge, other, admin))["status"] == "RUNNING"
        await context.close()

        # A read-only token sees the pages but no actions; a post from its session is refused.
        context, page = await signed_in(browser, url, READER)
        assert "signed in (read-only)" in await page.inner_text("nav")
        await page.goto(f"{url}/processes/{other}")
        await page.wait_for_selector("figure.diagram svg")
        assert await page.locator("section.actions, form.stop, form.redrive").count() == 0
        # A form made up in the page (the CSP forbids fetch): the session may only read.
        await page.evaluate(
            """(path) => { const form = document.createElement("form");
                 form.method = "post"; form.action = path;
                 form.innerHTML = '<input name="csrf" value="forged">';
                 document.body.append(form); form.submit(); }""",
            f"/ui/processes/{other}/stop",
        )
        await page.wait_for_selector("h1:text('Not allowed')")
        assert (await process(bridge, other, admin))["status"] == "RUNNING"
        await context.close()
