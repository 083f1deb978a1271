"""The definitions pages in a browser: the list, then one definition with its versions,
aliases, diagram and source; at phone and desktop width."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from playwright.async_api import Browser

from approvals import diagrams
from tests.integration.harness import running_bridge


async def test_definitions_list_and_page(browser: Browser, tmp_path: Path, kafka: str) -> None:
    async with running_bridge(f"sqlite+aiosqlite:///{tmp_path}/b.db", kafka, tmp_path) as bridge:
        # A second version and an alias, so that the page has something to show for both.
        _, document = await bridge.get("/definitions/order-saga")
        changed = dict(document["document"], Comment="second version")
        assert (await bridge.http_put("/definitions/order-saga", changed))[0] == 201
        routes = {"routes": [{"version": 1, "weight": 90}, {"version": 2, "weight": 10}]}
        assert (await bridge.http_put("/definitions/order-saga/aliases/live", routes))[0] == 200

        page = await browser.new_page()
        await page.goto(bridge.url + "/processes")
        await page.click("nav >> text=Definitions")
        assert page.url == bridge.url + "/definitions"
        row = page.locator("table.definitions tr", has_text="order-saga")
        assert "OrderPlaced on" in await row.inner_text()
        await row.locator("a").click()

        assert "order-saga v2" in await page.inner_text("h1")
        assert "v1: 90 %, v2: 10 %" in await page.inner_text("table.aliases")
        assert await page.locator("figure.diagram svg").count() == 1
        source = page.locator("pre.source")
        assert not await source.is_visible()
        await page.click("text=The definition as deployed")
        assert json.loads(await source.inner_text())["Comment"] == "second version"
        await page.click("a[href='?version=1']")
        assert "order-saga v1" in await page.inner_text("h1")

        for width, name in ((390, "phone"), (1280, "desktop")):
            await page.set_viewport_size({"width": width, "height": 900})
            await page.screenshot(path=str(tmp_path / f"definition-{name}.png"), full_page=True)
            assert await page.evaluate("document.documentElement.scrollWidth") <= width + 1

        # API clients still get JSON at the same addresses.
        status, listed = await bridge.get("/definitions")
        assert status == 200 and any(d["name"] == "order-saga" for d in listed["items"])
        await page.close()


async def test_without_graphviz_the_pages_still_draw_the_diagram(
    browser: Browser, tmp_path: Path, kafka: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A fresh machine: no `dot` on the PATH.
    monkeypatch.setattr(diagrams.shutil, "which", lambda name: None)
    async with running_bridge(f"sqlite+aiosqlite:///{tmp_path}/b.db", kafka, tmp_path) as bridge:
        await bridge.place_order("o-nodot", 10)
        process = await bridge.process_for("o-nodot", "RUNNING")
        page = await browser.new_page()
        for address in (f"/processes/{process['id']}", "/definitions/order-saga"):
            await page.goto(bridge.url + address)
            figure = page.locator("figure.diagram svg")
            assert await figure.count() == 1, address
            assert "ReserveInventory" in (await figure.text_content() or "")
            assert await page.locator("pre.mermaid-text").count() == 0
        # The process page marks where the process is.
        await page.goto(bridge.url + f"/processes/{process['id']}")
        assert await page.locator("figure.diagram g.state.current").count() == 1
        for width, name in ((390, "phone"), (1280, "desktop")):
            await page.set_viewport_size({"width": width, "height": 900})
            await page.screenshot(path=str(tmp_path / f"no-dot-{name}.png"), full_page=True)
        status, _ = await bridge.get("/definitions/order-saga/diagram?format=svg")
        assert status == 200
        await page.close()


async def test_every_page_fits_a_phone(browser: Browser, tmp_path: Path, kafka: str) -> None:
    from tests.browser.test_approval_pages import large_order

    async with running_bridge(f"sqlite+aiosqlite:///{tmp_path}/b.db", kafka, tmp_path) as bridge:
        request = await large_order(bridge, "o-phone")
        stopping = {
            "action": "stop",
            "filter": {"definition": "order-saga", "correlationKey": "nobody"},
            "reason": "a bulk operation's pages fit a phone too",
        }
        status, operation = await bridge.post("/bulk-operations", stopping)
        assert status == 202, operation
        page = await browser.new_page()
        addresses = [
            "/processes",
            "/processes?definition=order-saga",
            "/bulk-operations",
            f"/bulk-operations/{operation['id']}",
            f"/processes/{request['processId']}",
            "/approvals",
            f"/approvals/{request['approvalId']}",
            "/definitions",
            "/definitions/order-saga",
            "/ui/signin",
        ]
        for width, name in ((390, "phone"), (1280, "desktop")):
            await page.set_viewport_size({"width": width, "height": 900})
            for address in [*addresses, request["approveUrl"]]:
                await page.goto(address if "://" in address else bridge.url + address)
                shot = address.strip("/").replace("/", "-")[:40] or "home"
                await page.screenshot(path=str(tmp_path / f"{shot}-{name}.png"), full_page=True)
                wide = await page.evaluate("document.documentElement.scrollWidth")
                assert wide <= width + 1, f"{address} is {wide} px wide at {width} px"
        await page.close()
