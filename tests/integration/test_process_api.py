"""Operating processes over HTTP: start (idempotent, synchronous with ?wait), stop, redrive."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from tests.integration.harness import running_bridge, saga_definition

pytestmark = pytest.mark.integration

ECHO = {
    "StartAt": "Shape",
    "States": {
        "Shape": {"Type": "Pass", "Parameters": {"hello.$": "$.name"}, "End": True},
    },
}


async def test_start_stop_and_redrive(database_url: str, kafka: str, tmp_path: Path) -> None:
    folder = tmp_path / "definitions"
    suffix = uuid.uuid4().hex[:8]
    topics = saga_definition(folder, suffix)
    (folder / "echo.asl.json").write_text(json.dumps(ECHO))
    async with running_bridge(database_url, kafka, tmp_path, definitions=folder) as bridge:
        bridge.topics.update(topics)

        status, body = await bridge.post(
            "/processes?wait=5", {"definition": "echo", "input": {"name": "ann"}}
        )
        assert status == 200 and body["status"] == "SUCCEEDED"
        assert body["output"] == {"hello": "ann"}

        first = await bridge.post(
            "/processes", {"definition": "echo", "name": "once", "input": {"name": "a"}}
        )
        again = await bridge.post(
            "/processes", {"definition": "echo", "name": "once", "input": {"name": "b"}}
        )
        assert first[0] == 201 and again[0] == 200
        assert first[1]["id"] == again[1]["id"] and again[1]["input"] == {"name": "a"}

        assert (await bridge.post("/processes", {"definition": "nope"}))[0] == 404
        assert (await bridge.post("/processes", {"definition": "echo", "extra": 1}))[0] == 400
        assert (await bridge.post("/processes?wait=-1", {"definition": "echo"}))[0] == 400

        order = {"orderId": "o-api", "amount": 10, "customerId": "c", "items": []}
        status, started = await bridge.post(
            "/processes?wait=0.2",
            {"definition": "order-saga", "input": order, "correlationKey": "o-api"},
        )
        assert status == 202 and started["currentState"] == "ReserveInventory"
        first_command = await bridge.command("inventory.commands", "o-api")

        status, stopped = await bridge.post(
            f"/processes/{started['id']}/stop", {"error": "Ops.Stopped", "cause": "wrong order"}
        )
        assert status == 200 and stopped["status"] == "ABORTED"
        assert stopped["error"] == "Ops.Stopped"
        status, _ = await bridge.post(f"/tasks/{first_command['taskToken']}/success", {})
        assert status == 409, "the stopped step's token no longer works"
        assert (await bridge.post(f"/processes/{started['id']}/stop", {}))[0] == 409

        status, redriven = await bridge.post(f"/processes/{started['id']}/redrive")
        assert status == 200 and redriven["status"] == "RUNNING"
        second_command = await bridge.command("inventory.commands", "o-api")
        assert second_command["taskToken"] != first_command["taskToken"]
        assert (await bridge.post("/processes/missing/redrive"))[0] == 404


async def test_definitions_list_get_and_deploy(kafka: str, tmp_path: Path) -> None:
    folder = tmp_path / "definitions"
    folder.mkdir()
    (folder / "echo.asl.json").write_text(json.dumps(ECHO))
    database = f"sqlite+aiosqlite:///{tmp_path}/b.db"
    async with running_bridge(database, kafka, tmp_path, definitions=folder) as bridge:
        status, listed = await bridge.get("/definitions")
        assert status == 200 and [d["name"] for d in listed["items"]] == ["echo"]
        status, one = await bridge.get("/definitions/echo")
        assert one["version"] == 1 and one["document"] == ECHO

        invalid = {"StartAt": "Missing", "States": {"A": {"Type": "Pass", "End": True}}}
        status, body = await bridge.http_put("/definitions/echo", invalid)
        assert status == 422 and any("StartAt" in p for p in body["problems"])

        changed = json.loads(json.dumps(ECHO))
        changed["States"]["Shape"]["Parameters"] = {"bye.$": "$.name"}
        status, body = await bridge.http_put("/definitions/echo", changed)
        assert status == 201 and body["version"] == 2
        status, body = await bridge.http_put("/definitions/echo", changed)
        assert status == 200 and body["version"] == 2 and body["new"] is False

        # New starts take the newest version; a start may still name an older one.
        _, new = await bridge.post(
            "/processes?wait=5", {"definition": "echo", "input": {"name": "x"}}
        )
        _, old = await bridge.post(
            "/processes?wait=5", {"definition": "echo", "version": 1, "input": {"name": "x"}}
        )
        assert (new["version"], new["output"]) == (2, {"bye": "x"})
        assert (old["version"], old["output"]) == (1, {"hello": "x"})


async def test_api_tokens_guard_the_management_api(kafka: str, tmp_path: Path) -> None:
    folder = tmp_path / "definitions"
    folder.mkdir()
    (folder / "echo.asl.json").write_text(json.dumps(ECHO))
    database = f"sqlite+aiosqlite:///{tmp_path}/b.db"
    async with running_bridge(
        database,
        kafka,
        tmp_path,
        definitions=folder,
        api_admin_tokens="admin-token",
        api_read_tokens="reader-token",
    ) as bridge:
        start = {"definition": "echo", "input": {"name": "x"}}
        assert (await bridge.get("/healthz"))[0] == 200
        status, body = await bridge.get("/processes")
        assert status == 401 and body["title"] == "API token needed"
        reader = {"Authorization": "Bearer reader-token"}
        admin = {"Authorization": "Bearer admin-token"}
        async with bridge.http.get(bridge.url + "/processes", headers=reader) as response:
            assert response.status == 200
        assert (await bridge.post("/processes", start, headers=reader))[0] == 403
        assert (await bridge.post("/processes", start, headers={"Authorization": "Bearer x"}))[
            0
        ] == 403
        assert (await bridge.post("/processes", start, headers=admin))[0] == 201
        # Task callbacks and approval links carry their own secrets: no API token.
        assert (await bridge.post("/tasks/unknown/success", {}))[0] == 404
        assert (await bridge.get("/approve/unknown"))[0] == 404


async def test_cli_mirrors_the_api(kafka: str, tmp_path: Path) -> None:
    import asyncio
    import subprocess
    import sys

    folder = tmp_path / "definitions"
    folder.mkdir()
    (folder / "echo.asl.json").write_text(json.dumps(ECHO))
    database = f"sqlite+aiosqlite:///{tmp_path}/b.db"
    async with running_bridge(database, kafka, tmp_path, definitions=folder) as bridge:

        async def cli(*args: str) -> subprocess.CompletedProcess[str]:
            command = [sys.executable, "-m", "bridge", *args, "--url", bridge.url]
            return await asyncio.to_thread(
                subprocess.run, command, capture_output=True, text=True, timeout=60
            )

        other = tmp_path / "greet.asl.json"
        other.write_text(json.dumps(ECHO))
        deployed = await cli("definitions", "deploy", str(other), "--json")
        assert deployed.returncode == 0, deployed.stderr
        assert json.loads(deployed.stdout)[0]["name"] == "greet"
        listed = await cli("definitions", "list")
        assert "echo v1" in listed.stdout and "greet v1" in listed.stdout

        waiting = {"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 3600, "End": True}}}
        await bridge.http_put("/definitions/sleepy", waiting)
        _, process = await bridge.post("/processes", {"definition": "sleepy"})
        shown = await cli("processes", "show", process["id"], "--history", "--json")
        assert json.loads(shown.stdout)["status"] == "RUNNING"
        assert json.loads(shown.stdout)["history"][0]["type"] == "ProcessStarted"
        stopped = await cli("processes", "stop", process["id"], "--cause", "enough")
        assert stopped.returncode == 0 and "ABORTED" in stopped.stdout
        listed = await cli("processes", "list", "--status", "ABORTED", "--json")
        assert [p["id"] for p in json.loads(listed.stdout)["items"]] == [process["id"]]
        redriven = await cli("processes", "redrive", process["id"])
        assert "RUNNING" in redriven.stdout
        missing = await cli("processes", "show", "nope")
        assert missing.returncode == 1 and "404" in missing.stderr

        other.write_text(json.dumps({**ECHO, "Comment": "second"}))
        await cli("definitions", "deploy", str(other))
        aliased = await cli("definitions", "alias", "greet", "live", "1=90", "2=10")
        assert aliased.returncode == 0, aliased.stderr
        assert "greet:live  v1 90%, v2 10%" in aliased.stdout
        aliases = await cli("definitions", "aliases", "greet", "--json")
        assert json.loads(aliases.stdout)["items"][0]["routes"][1] == {"version": 2, "weight": 10}
        refused = await cli("definitions", "alias", "greet", "live", "1=50")
        assert refused.returncode == 1 and "add up to 100" in refused.stderr
        since = await cli("processes", "list", "--since", "2000-01-01T00:00:00Z", "--version", "1")
        assert process["id"] in since.stdout


async def test_test_state_answers_like_step_functions(kafka: str, tmp_path: Path) -> None:
    database = f"sqlite+aiosqlite:///{tmp_path}/b.db"
    task = {
        "Type": "Task",
        "Resource": "bridge:kafka:send.waitForTaskToken",
        "Parameters": {"Topic": "t", "Message": {"token.$": "$$.Task.Token"}},
        "ResultPath": "$.r",
        "Catch": [{"ErrorEquals": ["Declined"], "Next": "Refund"}],
        "Next": "Ship",
    }
    async with running_bridge(database, kafka, tmp_path, api_admin_tokens="admin") as bridge:
        admin = {"Authorization": "Bearer admin"}
        # AWS's shape: definition, input and mock.result as JSON text.
        status, answer = await bridge.post(
            "/test-state",
            {
                "definition": json.dumps(task),
                "input": '{"a": 1}',
                "mock": {"result": '{"ok": true}'},
                "inspectionLevel": "DEBUG",
            },
            headers=admin,
        )
        assert status == 200, answer
        assert (answer["status"], answer["nextState"]) == ("SUCCEEDED", "Ship")
        assert json.loads(answer["output"]) == {"a": 1, "r": {"ok": True}}
        assert json.loads(answer["inspectionData"]["result"]) == {"ok": True}

        status, caught = await bridge.post(
            "/test-state",
            {
                "definition": {"StartAt": "Charge", "States": {"Charge": task}},
                "stateName": "Charge",
                "input": {"a": 1},
                "mock": {"errorOutput": {"error": "Declined", "cause": "no funds"}},
            },
            headers=admin,
        )
        assert status == 200, caught
        assert (caught["status"], caught["nextState"], caught["error"]) == (
            "CAUGHT_ERROR",
            "Refund",
            "Declined",
        )
        assert "inspectionData" not in caught

        status, retried = await bridge.post(
            "/test-state",
            {
                "definition": {**task, "Retry": [{"ErrorEquals": ["Busy"], "MaxAttempts": 2}]},
                "mock": {"errorOutput": {"error": "Busy"}},
                "stateConfiguration": {"retrierRetryCount": 2},
                "context": '{"Execution": {"Name": "exec-1"}}',
            },
            headers=admin,
        )
        assert status == 200, retried
        assert (retried["status"], retried["error"]) == ("FAILED", "Busy")

        status, refused = await bridge.post(
            "/test-state", {"definition": task, "input": "{not json"}, headers=admin
        )
        assert status == 400 and "input" in refused["detail"]
        status, refused = await bridge.post("/test-state", {"definition": {"Type": "Pass"}})
        assert status == 401
