"""An approval mail in a real browser: the mail a test SMTP server received is opened in Debian's
Chromium and the approval decided there, on SQLite and PostgreSQL. The mail is the escalation's:
after a second without a decision the approval adds a seat, and only the new seat is mailed; a
webhook of the settings hears of the request, the escalation and the outcome."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser

from tests.integration.test_approval_delivery import delivering, entries_of

pytestmark = pytest.mark.integration


def escalating(_hook_url: str) -> dict[str, Any]:
    return {
        "StartAt": "Approve",
        "States": {
            "Approve": {
                "Type": "Task",
                "Resource": "bridge:approval",
                "Parameters": {
                    "Title.$": "States.Format('Expense {}', $.id)",
                    "Data": {"note": "<script>window.pwned=1</script>"},
                    "Assignees": ["ann"],
                    "Notify": {"Email": {"To.$": "$.emails"}},
                    "Escalation": {"AfterSeconds": 1, "AddAssignees": ["carol"]},
                },
                "TimeoutSeconds": 600,
                "ResultPath": "$.approval",
                "End": True,
            }
        },
    }


async def test_the_escalation_mail_is_approved_in_the_browser(
    browser: Browser, database_url: str, kafka: str, tmp_path: Path
) -> None:
    async with delivering(database_url, kafka, tmp_path, escalating, global_hook=True) as (
        bridge,
        mailbox,
        hooks,
    ):
        emails = {"ann": "ann@example.com", "carol": "carol@example.com"}
        status, body = await bridge.post(
            "/processes",
            {
                "definition": "expense",
                "correlationKey": "m-1",
                "input": {"id": "m-1", "emails": emails},
            },
        )
        assert status == 201, body
        (requested,) = await mailbox.wait_for(lambda m: m.to == ["ann@example.com"])
        assert requested.message["Subject"] == "Approval requested: Expense m-1"
        (escalated,) = await mailbox.wait_for(lambda m: m.to == ["carol@example.com"])
        assert escalated.message["Subject"] == "Approval escalated to you: Expense m-1"
        assert "For user:carol" in escalated.text

        page = await browser.new_page()
        response = await page.goto(escalated.links("approve")[0])
        assert response is not None and response.status == 200
        assert "Expense m-1" in await page.inner_text("h1")
        assert await page.evaluate("window.pwned") is None
        await page.fill("#comment", "fine by me")
        await page.click("button[value=approve]")
        await page.wait_for_selector("text=Thank you: approved")
        await page.close()

        process = await bridge.process_for("m-1", "SUCCEEDED")
        votes = process["output"]["approval"]["votes"]
        assert [(v["seat"], v["decision"]) for v in votes] == [("user:carol", "approve")]
        escalations = await entries_of(bridge, body["id"], "ApprovalEscalated", 1)
        assert escalations == [{"added": ["user:carol"], "removed": []}]
        # The webhook of the settings heard of it all, though the definition names none.
        kinds = ("bridge.ApprovalRequested", "bridge.ApprovalEscalated", "bridge.ApprovalDecided")
        for kind in kinds:
            ((_, told),) = await hooks.wait_for(lambda body, kind=kind: body["type"] == kind)
            assert told["processId"] == body["id"]
        assert told["outcome"] == "APPROVED" and told["links"] == []
