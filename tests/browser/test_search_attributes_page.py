"""The process list's search attribute filter in a real browser: type a filter, add a second one,
see the URL keep both, a bad filter answered on the page (not a 500, not run as markup), and the
attributes on the process page."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer
from playwright.async_api import Browser

from approvals.app import build_app
from bridge.bootstrap import Core, open_core
from bridge.intake import StartRequested
from bridge.settings import Settings
from tests.integration.test_search_attributes import CUSTOMERS, ORDERS

pytestmark = pytest.mark.integration


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[tuple[str, Core, list[str]]]:
    (tmp_path / "orders.asl.json").write_text(json.dumps(ORDERS))
    core = await open_core(
        Settings(database_url=f"sqlite+aiosqlite:///{tmp_path}/b.db", definitions_dir=tmp_path)
    )
    outcomes = await core.engine.apply([StartRequested("orders", given) for given in CUSTOMERS])
    ids = [outcome.process_ids[0] for outcome in outcomes]
    # No tokens configured: everyone may read, as with `bridge dev`.
    server = TestServer(build_app(core.engine, "secret"))
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/"), core, ids
    finally:
        await server.close()
        await core.close()


async def test_filter_the_list_by_search_attributes(
    browser: Browser, site: tuple[str, Core, list[str]]
) -> None:
    url, _, ids = site
    context = await browser.new_context()
    page = await context.new_page()
    try:
        await page.goto(f"{url}/processes")
        rows = page.locator("table.processes tbody tr")
        assert await rows.count() == len(CUSTOMERS)

        await page.fill("input.where >> nth=-1", "customerId=abc")
        await page.click("form.filters button")
        await page.wait_for_url("**where=customerId%3Dabc**")
        assert await rows.count() == 2
        assert "customerId=abc" in await rows.first.inner_text()

        # The filter stays in its field; a new empty one takes a second filter.
        assert await page.input_value("input.where >> nth=0") == "customerId=abc"
        await page.fill("input.where >> nth=-1", "amount>100")
        await page.click("form.filters button")
        await page.wait_for_url("**where=amount%3E100**")
        assert await rows.count() == 1 and ids[2] in await rows.first.inner_text()
        assert "where=customerId%3Dabc" in page.url

        # A bad filter is said on the page, and hostile text stays text.
        await page.fill("input.where >> nth=-1", "<img src=x onerror=window.pwned=1>")
        await page.click("form.filters button")
        alert = page.locator("p.error[role=alert]")
        await alert.wait_for()
        said = await alert.inner_text()
        assert "where:" in said and "<img src=x onerror=window.pwned=1>" in said
        assert await page.evaluate("window.pwned") is None

        await page.goto(f"{url}/processes?where=customerId%3Dxyz")
        await page.click(f"a[href='/processes/{ids[3]}']")
        attributes = page.locator("dd.search-attributes")
        await attributes.wait_for()
        assert "customerId=xyz" in await attributes.inner_text()
        assert "amount=1000" in await attributes.inner_text()
        # Each one links to the processes that share it.
        await attributes.locator("a", has_text="amount=1000").click()
        await page.wait_for_url("**where=amount%3D1000")
        assert await rows.count() == 1 and ids[3] in await rows.first.inner_text()
    finally:
        await context.close()
