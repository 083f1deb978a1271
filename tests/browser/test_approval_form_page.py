"""An approval form in a real browser: the fields render with their labels and help, invalid
values come back marked with their errors and what was typed kept, valid ones decide, and the
values are the step's result. Screenshots at phone and desktop width land in the test folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from playwright.async_api import Browser

from tests.integration.harness import running_bridge
from tests.integration.test_approval_forms import REVIEW

pytestmark = pytest.mark.integration


async def test_fill_in_an_approval_form(browser: Browser, tmp_path: Path, kafka: str) -> None:
    folder = tmp_path / "definitions"
    folder.mkdir()
    (folder / "review.asl.json").write_text(json.dumps(REVIEW))
    database = f"sqlite+aiosqlite:///{tmp_path}/b.db"
    async with running_bridge(database, kafka, tmp_path, definitions=folder) as bridge:
        status, started = await bridge.post(
            "/processes", {"definition": "review", "input": {}, "correlationKey": "budget-1"}
        )
        assert status == 201, started
        request, _ = await bridge.next_message(
            "bridge.approvals", lambda value: value["processId"] == started["id"]
        )
        page = await browser.new_page()
        await page.set_viewport_size({"width": 390, "height": 844})
        await page.goto(request["approveUrl"])
        assert await page.inner_text("label[for=field-amount]") == "Approved amount (required)"
        await page.screenshot(path=str(tmp_path / "form-phone.png"), full_page=True)

        await page.fill("#field-amount", "20000")
        await page.fill("#field-ship_on", "2026-12-24")
        await page.fill("#comment", "first try")
        await page.click("button[value=approve]")
        await page.wait_for_selector("#form-errors")
        assert "Approved amount: at most 10000" in await page.inner_text("#field-amount-error")
        assert "Region: required" in await page.inner_text("#field-region-error")
        assert await page.get_attribute("#field-amount", "aria-invalid") == "true"
        assert await page.input_value("#field-amount") == "20000"
        assert await page.input_value("#comment") == "first try"
        await page.set_viewport_size({"width": 1280, "height": 800})
        await page.screenshot(path=str(tmp_path / "form-errors-desktop.png"), full_page=True)

        await page.fill("#field-amount", "950")
        await page.select_option("#field-region", "eu")
        await page.check("#field-urgent")
        await page.click("button[value=approve]")
        await page.wait_for_selector("text=Thank you: approved")
        await bridge.process_for("budget-1", "SUCCEEDED")
        _, process = await bridge.get(f"/processes/{started['id']}")
        assert process["output"]["review"]["values"] == {
            "amount": 950,
            "region": "eu",
            "ship_on": "2026-12-24",
            "urgent": True,
            "notes": None,
        }
        await page.close()
