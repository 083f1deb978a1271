"""Approval forms and outcomes of a task's own, on both databases through the web app in process:
the page renders the fields, refuses invalid values (page and JSON alike, nothing recorded) and
keeps what was typed, takes valid ones as the step's result; an outcome of its own concludes the
approval and a Choice branches on it; a rejection needs no form."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from approvals.app import build_app
from approvals.pages import csrf_nonce
from bridge.asl.errors import DefinitionError
from bridge.asl.loading import parse_definition
from bridge.bootstrap import Core, open_core
from bridge.settings import Settings
from bridge.store import processes as store
from bridge.store import waits
from bridge.store.database import reading
from tests.integration.approval_requests import path_of, start_and_request

pytestmark = pytest.mark.integration

REVIEW = {
    "StartAt": "Review",
    "States": {
        "Review": {
            "Type": "Task",
            "Resource": "bridge:approval",
            "Parameters": {
                "Title": "Review the budget",
                "Form": {
                    "type": "object",
                    "required": ["amount", "region"],
                    "properties": {
                        "amount": {
                            "type": "number",
                            "title": "Approved amount",
                            "minimum": 0,
                            "maximum": 10000,
                            "description": "In euros",
                        },
                        "region": {"type": "string", "enum": ["eu", "us"], "title": "Region"},
                        "ship_on": {"type": "string", "format": "date", "title": "Ship on"},
                        "urgent": {"type": "boolean", "title": "Urgent"},
                        "notes": {"type": "string", "format": "multiline", "maxLength": 200},
                    },
                },
                "Outcomes": [{"Name": "REQUEST_CHANGES", "Label": "Request changes"}],
            },
            "ResultPath": "$.review",
            "Next": "Route",
        },
        "Route": {
            "Type": "Choice",
            "Choices": [
                {
                    "Variable": "$.review.outcome",
                    "StringEquals": "REQUEST_CHANGES",
                    "Next": "Changes",
                }
            ],
            "Default": "Done",
        },
        "Changes": {
            "Type": "Pass",
            "Result": "back to the author",
            "ResultPath": "$.next",
            "End": True,
        },
        "Done": {"Type": "Pass", "End": True},
    },
}


@pytest.fixture
async def rig(database_url: str, tmp_path: Path) -> AsyncIterator[tuple[Core, TestClient]]:
    (tmp_path / "review.asl.json").write_text(json.dumps(REVIEW))
    core = await open_core(Settings(database_url=database_url, definitions_dir=tmp_path))
    client = TestClient(TestServer(build_app(core.engine, "secret")))
    await client.start_server()
    try:
        yield core, client
    finally:
        await client.close()
        await core.close()


async def requested(core: Core) -> tuple[str, str, str]:
    """A new review: its process, and the paths of its approve and reject links."""
    request = await start_and_request(core, "review", {"doc": "budget"})
    assert request["form"]["outcomes"] == [["REQUEST_CHANGES", "Request changes"]]
    approve, reject = path_of(request["approveUrl"]), path_of(request["rejectUrl"])
    return request["processId"], approve, reject


async def status_of(core: Core, process_id: str) -> tuple[str, Any]:
    async with reading(core.db) as conn:
        process = await store.get(conn, process_id)
    assert process is not None
    return process.status.value, process.output


async def test_the_page_refuses_invalid_values_then_takes_valid_ones(
    rig: tuple[Core, TestClient],
) -> None:
    core, client = rig
    process_id, approve, _ = await requested(core)
    page = await (await client.get(approve)).text()
    for expected in (
        'name="values.amount" type="number"',
        '<select id="field-region" name="values.region" required',
        'type="date"',
        'type="checkbox"',
        '<textarea id="field-notes"',
        'value="REQUEST_CHANGES"',
        'aria-describedby="field-amount-help"',
    ):
        assert expected in page, expected
    nonce = csrf_nonce(b"secret", approve.rsplit("/", 1)[1])
    bad = {
        "csrf": nonce,
        "decision": "approve",
        "values.amount": "20000",
        "values.region": "",
        "values.ship_on": "2026-13-01",
        "comment": "first try",
    }
    refused = await client.post(approve, data=bad)
    html = await refused.text()
    assert refused.status == 400
    assert "Approved amount: at most 10000" in html and "Region: required" in html
    assert "Ship on: a date (YYYY-MM-DD)" in html
    # What was typed is kept, marked invalid for assistive technology.
    assert 'value="20000"' in html and "first try" in html and 'aria-invalid="true"' in html
    assert (await status_of(core, process_id))[0] == "RUNNING"

    good = {
        **bad,
        "values.amount": "950.5",
        "values.region": "eu",
        "values.ship_on": "2026-12-24",
        "values.urgent": "on",
    }
    accepted = await client.post(approve, data=good)
    assert accepted.status == 200, await accepted.text()
    status, output = await status_of(core, process_id)
    assert status == "SUCCEEDED"
    assert output["review"]["outcome"] == "APPROVED"
    assert output["review"]["values"] == {
        "amount": 950.5,
        "region": "eu",
        "ship_on": "2026-12-24",
        "urgent": True,
        "notes": None,
    }


async def test_json_decisions_are_checked_the_same_and_an_outcome_of_its_own_routes(
    rig: tuple[Core, TestClient],
) -> None:
    core, client = rig
    process_id, approve, _ = await requested(core)
    response = await client.post(approve, json={"decision": "approve", "values": {"amount": -1}})
    problem = await response.json()
    assert response.status == 400
    assert problem["errors"] == {"amount": "at least 0", "region": "required"}
    response = await client.post(approve, json={"decision": "SHIP_IT"})
    assert response.status == 400 and "not a decision" in (await response.json())["detail"]
    assert (await status_of(core, process_id))[0] == "RUNNING"

    response = await client.post(
        approve,
        json={
            "decision": "REQUEST_CHANGES",
            "values": {"amount": 100, "region": "us"},
            "comment": "too vague",
        },
    )
    assert response.status == 200, await response.text()
    status, output = await status_of(core, process_id)
    assert status == "SUCCEEDED"
    assert (
        output["review"]["outcome"] == "REQUEST_CHANGES" and output["next"] == "back to the author"
    )
    assert output["review"]["values"]["region"] == "us"
    async with reading(core.db) as conn:
        [approval] = await waits.approvals_of_process(conn, process_id)
    assert approval.status == "DECIDED"
    assert [(vote["decision"], vote["values"]["amount"]) for vote in approval.votes] == [
        ("REQUEST_CHANGES", 100)
    ]


async def test_a_rejection_needs_no_form(rig: tuple[Core, TestClient]) -> None:
    core, client = rig
    process_id, _, reject = await requested(core)
    response = await client.post(reject, json={})
    assert response.status == 200, await response.text()
    status, _ = await status_of(core, process_id)
    assert status == "FAILED"


def test_a_bad_form_in_a_definition_is_named_when_it_is_deployed() -> None:
    broken = json.loads(json.dumps(REVIEW))
    parameters = broken["States"]["Review"]["Parameters"]
    parameters["Form"]["properties"]["amount"]["minimum"] = "zero"
    parameters["Outcomes"] = [{"Name": "APPROVED"}]
    with pytest.raises(DefinitionError) as refused:
        parse_definition(broken, "review")
    problems = "\n".join(refused.value.problems)
    assert "States.Review.Parameters.Form.properties.amount.minimum" in problems
    assert "States.Review.Parameters.Outcomes[0].Name" in problems
    assert re.search(r"built in", problems)
