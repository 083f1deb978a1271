"""The schedule pages in a real browser: the list shows each schedule's next run, a schedule's
page its next five runs, and an admin pauses it with a reason and resumes it; a reader sees no
button, and another site cannot pause it behind an admin's back. Screenshots at phone and desktop
width land in the test's folder."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.async_api import Browser

from tests.browser.test_status_ui import csp_watch, evil_site, signed_in
from tests.integration.test_status_ui import ADMIN, READER, bearer, ops_bridge

pytestmark = pytest.mark.integration


async def test_schedules_in_the_browser(browser: Browser, kafka: str, tmp_path: Path) -> None:
    async with ops_bridge(
        kafka, tmp_path, api_admin_tokens=ADMIN, api_read_tokens=READER
    ) as bridge:
        body = {
            "definition": "echo",
            "cron": "0 9 * * 1-5",
            "timeZone": "Asia/Tokyo",
            "input": {"from": "the morning schedule"},
            "overlap": "BufferOne",
            "description": "Weekday mornings in Tokyo",
        }
        async with bridge.http.put(
            f"{bridge.url}/schedules/tokyo-mornings", json=body, headers=bearer(ADMIN)
        ) as response:
            assert response.status == 201, await response.text()

        context, page = await signed_in(browser, bridge.url, ADMIN)
        blocked = csp_watch(page)
        await page.click("nav >> text=Schedules")
        await page.wait_for_selector("h1:text('Schedules')")
        row = page.locator("table.schedules tbody tr")
        assert await row.count() == 1
        text = await row.first.inner_text()
        assert "tokyo-mornings" in text and "cron 0 9 * * 1-5 (Asia/Tokyo)" in text
        # 09:00 in Tokyo is midnight UTC.
        assert "00:00:00 UTC" in text
        for width, height, name in ((390, 844, "phone"), (1280, 800, "desktop")):
            await page.set_viewport_size({"width": width, "height": height})
            await page.screenshot(path=str(tmp_path / f"schedules-{name}.png"), full_page=True)

        await page.click("a[href='/schedules/tokyo-mornings']")
        await page.wait_for_selector("#next-runs")
        assert await page.locator("#next-runs li").count() == 5
        assert await page.inner_text("#status") == "active"
        await page.fill("input[name=note]", "public holiday")
        await page.click("form.action button")
        await page.wait_for_selector("#status:text('paused')")
        assert "public holiday" in await page.inner_text("#status")
        assert "None while it is paused." in await page.inner_text("main, body")
        await page.screenshot(path=str(tmp_path / "schedule-paused.png"), full_page=True)
        await page.click("form.action button:text('Resume')")
        await page.wait_for_selector("#status:text('active')")
        assert await page.locator("#next-runs li").count() == 5
        assert blocked == [], blocked

        # Another site posting a pause behind the admin's back: refused, nothing changes.
        target = f"{bridge.url}/ui/schedules/tokyo-mornings/pause"
        async with evil_site(target, {"note": "pwned"}) as evil:
            forged = await context.new_page()
            await forged.goto(evil)
            await forged.wait_for_selector("text=Cross-site request refused")
            await forged.close()
        async with bridge.http.get(
            f"{bridge.url}/schedules/tokyo-mornings", headers=bearer(READER)
        ) as response:
            assert (await response.json())["paused"] is False
        await context.close()

        # A reader sees the schedule and its next runs, without the button.
        context, page = await signed_in(browser, bridge.url, READER)
        await page.goto(f"{bridge.url}/schedules/tokyo-mornings")
        await page.wait_for_selector("#next-runs")
        assert await page.locator("form.action").count() == 0
        await context.close()
