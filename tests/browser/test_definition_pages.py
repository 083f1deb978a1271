"""The definitions pages in a browser: the list, then one definition with its versions,
aliases, diagram and source; at phone and desktop width."""

from __future__ import annotations

import json
from pathlib import Path

from playwright.async_api import Browser

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
        assert await page.locator("figure.diagram svg, pre.mermaid-text").count() == 1
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
