"""Nested processes through a running bridge: ``bridge:process:start`` and ``.sync``.

A parent starts children in the same transaction as its step; a ``.sync`` parent takes its
child's output or its failure (which Catch routes); the plain form answers the child's id at
once; stopping a parent stops its waiting children and theirs; the task's TimeoutSeconds stops
the child too; a redrive starts a new child; a Map runs one child per item; and the status API
links parents and children both ways. SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from bridge.definitions import EXAMPLES_DIR
from tests.integration.harness import Bridge, running_bridge, saga_definition

pytestmark = pytest.mark.integration


def _task(resource: str, definition: str, **extra: Any) -> dict[str, Any]:
    parameters = {"Definition": definition, "Input.$": "$"}
    parameters.update(extra.pop("parameters", {}))
    return {"Type": "Task", "Resource": resource, "Parameters": parameters, **extra}


SYNC = "bridge:process:start.sync"
PLAIN = "bridge:process:start"

DEFINITIONS: dict[str, dict[str, Any]] = {
    # Children.
    "child-echo": {
        "StartAt": "Echo",
        "States": {
            "Echo": {"Type": "Pass", "Parameters": {"echo.$": "$.x"}, "End": True},
        },
    },
    "child-fail": {
        "StartAt": "Broke",
        "States": {"Broke": {"Type": "Fail", "Error": "Child.Broke", "Cause": "it broke"}},
    },
    "child-wait": {
        "StartAt": "Sleep",
        "States": {"Sleep": {"Type": "Wait", "Seconds": 3600, "End": True}},
    },
    "child-nest": {
        "StartAt": "Grandchild",
        "States": {"Grandchild": {**_task(SYNC, "child-wait"), "End": True}},
    },
    # Parents.
    "parent-sync": {
        "StartAt": "Run",
        "States": {
            "Run": {
                **_task(SYNC, "child-echo", parameters={"CorrelationKey.$": "$.key"}),
                "ResultPath": "$.child",
                "Next": "Done",
            },
            "Done": {"Type": "Pass", "Parameters": {"got.$": "$.child.Output"}, "End": True},
        },
    },
    "parent-catch": {
        "StartAt": "Run",
        "States": {
            "Run": {
                **_task(SYNC, "child-fail"),
                "Catch": [
                    {
                        "ErrorEquals": ["Process.ChildFailed"],
                        "ResultPath": "$.error",
                        "Next": "Handled",
                    }
                ],
                "End": True,
            },
            "Handled": {
                "Type": "Pass",
                "Parameters": {
                    "error.$": "$.error.Error",
                    "child.$": "States.StringToJson($.error.Cause)",
                },
                "End": True,
            },
        },
    },
    "parent-fail": {
        "StartAt": "Run",
        "States": {"Run": {**_task(SYNC, "child-fail"), "End": True}},
    },
    "parent-plain": {
        "StartAt": "Run",
        "States": {"Run": {**_task(PLAIN, "child-wait"), "End": True}},
    },
    "parent-waits": {
        "StartAt": "Run",
        "States": {"Run": {**_task(SYNC, "child-nest"), "End": True}},
    },
    "parent-timeout": {
        "StartAt": "Run",
        "States": {
            "Run": {
                **_task(SYNC, "child-wait"),
                "TimeoutSeconds": 1,
                "Catch": [{"ErrorEquals": ["States.Timeout"], "Next": "TooSlow"}],
                "End": True,
            },
            "TooSlow": {"Type": "Succeed"},
        },
    },
    "parent-map": {
        "StartAt": "Each",
        "States": {
            "Each": {
                "Type": "Map",
                "ItemsPath": "$.items",
                "ItemProcessor": {
                    "StartAt": "Run",
                    "States": {
                        "Run": {
                            **_task(SYNC, "child-echo", parameters={"Name.$": "$.id"}),
                            "OutputPath": "$.Output",
                            "End": True,
                        }
                    },
                },
                "End": True,
            }
        },
    },
    "parent-missing": {
        "StartAt": "Run",
        "States": {
            "Run": {
                **_task(SYNC, "no-such-definition"),
                "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Missing"}],
                "End": True,
            },
            "Missing": {"Type": "Succeed"},
        },
    },
}


def _folder(tmp_path: Path) -> Path:
    folder = tmp_path / "definitions"
    folder.mkdir()
    for name, document in DEFINITIONS.items():
        (folder / f"{name}.asl.json").write_text(json.dumps(document))
    return folder


async def _start(bridge: Bridge, definition: str, data: Any, wait: float = 5) -> dict[str, Any]:
    status, body = await bridge.post(
        f"/processes?wait={wait}", {"definition": definition, "input": data}
    )
    assert status in (200, 201, 202), body
    return dict(body)


async def _process(bridge: Bridge, process_id: str) -> dict[str, Any]:
    status, body = await bridge.get(f"/processes/{process_id}")
    assert status == 200, body
    return dict(body)


async def _until(
    bridge: Bridge, process_id: str, status: str, timeout: float = 15
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        body = await _process(bridge, process_id)
        if body["status"] == status:
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"{process_id} is {body['status']}, not {status}: {body}")
        await asyncio.sleep(0.05)


async def _history(bridge: Bridge, process_id: str) -> list[dict[str, Any]]:
    status, body = await bridge.get(f"/processes/{process_id}/history")
    assert status == 200, body
    return list(body["items"])


async def test_child_success_failure_and_plain_start(
    database_url: str, kafka: str, tmp_path: Path
) -> None:
    async with running_bridge(database_url, kafka, tmp_path, definitions=_folder(tmp_path)) as b:
        # .sync: the parent takes the child's output, in the same transaction as its step.
        parent = await _start(b, "parent-sync", {"x": 42, "key": "k-1"})
        assert parent["status"] == "SUCCEEDED", parent
        assert parent["output"] == {"got": {"echo": 42}}
        [child_link] = (await _process(b, parent["id"]))["children"]
        child = await _process(b, child_link["id"])
        assert child["status"] == "SUCCEEDED" and child["output"] == {"echo": 42}
        assert child["correlationKey"] == "k-1" and child["definition"] == "child-echo"
        assert child["parentId"] == parent["id"] and child["parentState"] == "Run"
        assert child["links"]["parent"].endswith(f"/processes/{parent['id']}")
        assert child_link == {
            "id": child["id"],
            "state": "Run",
            "definition": "child-echo",
            "version": 1,
            "name": None,
            "sync": True,
            "status": "SUCCEEDED",
            "startedAt": child_link["startedAt"],
            "links": {"self": f"{b.url}/processes/{child['id']}"},
        }
        types = [entry["type"] for entry in await _history(b, parent["id"])]
        assert types.index("ChildStarted") < types.index("ChildEnded")
        [started] = [e for e in await _history(b, parent["id"]) if e["type"] == "ChildStarted"]
        assert started["details"]["processId"] == child["id"]
        [origin] = [e for e in await _history(b, child["id"]) if e["type"] == "ProcessStarted"]
        assert origin["details"]["parentId"] == parent["id"]
        assert origin["details"]["via"] == "process"

        # A failed child is an error the parent catches, carrying the child's error and cause.
        caught = await _start(b, "parent-catch", {})
        assert caught["status"] == "SUCCEEDED", caught
        assert caught["output"]["error"] == "Process.ChildFailed"
        failed_child = caught["output"]["child"]
        assert failed_child["Status"] == "FAILED"
        assert (failed_child["Error"], failed_child["Cause"]) == ("Child.Broke", "it broke")
        assert (await _process(b, failed_child["ProcessId"]))["status"] == "FAILED"

        # Uncaught, it fails the parent.
        failed = await _start(b, "parent-fail", {})
        assert failed["status"] == "FAILED" and failed["error"] == "Process.ChildFailed"

        # A definition that does not exist: a catchable error, and no child.
        missing = await _start(b, "parent-missing", {})
        assert missing["status"] == "SUCCEEDED"
        assert (await _process(b, missing["id"]))["children"] == []
        [refused] = [e for e in await _history(b, missing["id"]) if e["type"] == "ChildNotStarted"]
        assert refused["details"]["error"] == "Process.DefinitionNotFound"

        # The plain form answers the child's id at once; the child runs on.
        plain = await _start(b, "parent-plain", {"x": 1})
        assert plain["status"] == "SUCCEEDED", plain
        assert set(plain["output"]) == {"ProcessId", "StartedAt"}
        running = await _process(b, plain["output"]["ProcessId"])
        assert running["status"] == "RUNNING" and running["currentState"] == "Sleep"
        assert running["parentId"] == plain["id"]
        [link] = (await _process(b, plain["id"]))["children"]
        assert link["id"] == running["id"] and link["sync"] is False

        # The status pages link both ways.
        html = {"Accept": "text/html"}
        async with b.http.get(f"{b.url}/processes/{plain['id']}", headers=html) as page:
            assert page.status == 200
            assert f'href="/processes/{running["id"]}" class="child"' in await page.text()
        async with b.http.get(f"{b.url}/processes/{running['id']}", headers=html) as page:
            assert page.status == 200
            assert f'href="/processes/{plain["id"]}" class="parent"' in await page.text()
        # And so does the command line.
        command = [sys.executable, "-m", "bridge", "processes", "show", plain["id"], "--url", b.url]
        shown = await asyncio.to_thread(
            subprocess.run, command, capture_output=True, text=True, timeout=60
        )
        assert f"child  {running['id']}  RUNNING" in shown.stdout, shown.stderr


async def test_stopping_a_parent_stops_its_waiting_children(
    database_url: str, kafka: str, tmp_path: Path
) -> None:
    async with running_bridge(database_url, kafka, tmp_path, definitions=_folder(tmp_path)) as b:
        parent = await _start(b, "parent-waits", {}, wait=0.2)
        assert parent["status"] == "RUNNING" and parent["currentState"] == "Run"
        [child_link] = (await _process(b, parent["id"]))["children"]
        child = await _process(b, child_link["id"])
        [grandchild_link] = child["children"]
        assert child["status"] == "RUNNING" and child["parentId"] == parent["id"]

        status, stopped = await b.post(
            f"/processes/{parent['id']}/stop", {"error": "Ops.Cancelled", "cause": "no"}
        )
        assert status == 200 and stopped["status"] == "ABORTED"
        # The same transaction stopped the child and the grandchild.
        for link in (child_link, grandchild_link):
            ended = await _process(b, link["id"])
            assert ended["status"] == "ABORTED", ended
            assert ended["error"] == "Process.ParentStopped"
        # The parent's history is not disturbed by its children's ends.
        types = [entry["type"] for entry in await _history(b, parent["id"])]
        assert types[-1] == "ProcessAborted" and "ChildEnded" not in types

        # TimeoutSeconds bounds the wait for a .sync child, which is stopped too.
        timed = await _start(b, "parent-timeout", {}, wait=0.2)
        finished = await _until(b, timed["id"], "SUCCEEDED")
        [slow] = finished["children"]
        slow_child = await _until(b, slow["id"], "ABORTED")
        assert slow_child["error"] == "Process.ParentStopped"


async def test_redrive_map_and_versions(database_url: str, kafka: str, tmp_path: Path) -> None:
    async with running_bridge(database_url, kafka, tmp_path, definitions=_folder(tmp_path)) as b:
        # A Map runs one child per item, each named by the item.
        items = [{"id": "a", "x": 1}, {"id": "b", "x": 2}, {"id": "c", "x": 3}]
        mapped = await _start(b, "parent-map", {"items": items})
        assert mapped["status"] == "SUCCEEDED", mapped
        assert mapped["output"] == [{"echo": 1}, {"echo": 2}, {"echo": 3}]
        links = (await _process(b, mapped["id"]))["children"]
        assert sorted(link["name"] for link in links) == ["a", "b", "c"]
        assert {link["status"] for link in links} == {"SUCCEEDED"}
        assert len({link["id"] for link in links}) == 3

        # Redriving a parent whose child failed runs the failed state again: a new child, here
        # of the newest version of its definition, which now succeeds.
        failed = await _start(b, "parent-fail", {"x": 7})
        assert failed["status"] == "FAILED"
        fixed = DEFINITIONS["child-echo"]
        status, deployed = await b.http_put("/definitions/child-fail", fixed)
        assert status == 201 and deployed["version"] == 2
        status, redriven = await b.post(f"/processes/{failed['id']}/redrive")
        assert status == 200, redriven
        assert redriven["status"] == "SUCCEEDED"
        assert redriven["output"]["Output"] == {"echo": 7}
        first, second = (await _process(b, failed["id"]))["children"]
        assert (first["status"], first["version"]) == ("FAILED", 1)
        assert (second["status"], second["version"]) == ("SUCCEEDED", 2)


async def test_the_order_batch_example(database_url: str, kafka: str, tmp_path: Path) -> None:
    """examples/order-batch.asl.yaml: the order saga as a child per line, one line rejected."""
    folder = tmp_path / "definitions"
    topics = saga_definition(folder, uuid.uuid4().hex[:8])
    batch = yaml.safe_load((EXAMPLES_DIR / "order-batch.asl.yaml").read_text())
    batch["Triggers"][0]["Topic"] = topics["orders.events"]
    (folder / "order-batch.asl.json").write_text(json.dumps(batch))
    async with running_bridge(database_url, kafka, tmp_path, definitions=folder) as b:
        b.topics.update(topics)
        lines = [
            {"lineId": "l-1", "amount": 120, "items": [{"sku": "book", "qty": 1}]},
            {"lineId": "l-2", "amount": 950, "items": [{"sku": "piano", "qty": 1}]},
            {"lineId": "l-3", "amount": 30, "items": []},
        ]
        parent = await _start(
            b, "order-batch", {"batchId": "b-1", "customerId": "c-7", "lines": lines}, wait=0
        )
        assert parent["status"] == "RUNNING"
        for line in lines:
            order_id = f"b-1-{line['lineId']}"
            reserve = await b.command("inventory.commands", order_id)
            assert (await b.post(f"/tasks/{reserve['taskToken']}/success", {}))[0] == 200
            charge = await b.command("payments.commands", order_id)
            paid = {"paymentId": f"p-{line['lineId']}"}
            assert (await b.post(f"/tasks/{charge['taskToken']}/success", paid))[0] == 200
        request, _ = await b.next_message(
            "bridge.approvals", lambda v: v["data"]["orderId"] == "b-1-l-2"
        )
        status, _ = await b.post(request["rejectUrl"], {"decision": "reject", "comment": "no"})
        assert status == 200

        done = await _until(b, parent["id"], "SUCCEEDED")
        first, second, third = done["output"]["lines"]
        assert done["output"]["completed"] == 2
        assert (first["status"], first["payment"]) == ("COMPLETED", {"paymentId": "p-l-1"})
        assert (third["status"], third["payment"]) == ("COMPLETED", {"paymentId": "p-l-3"})
        assert (second["status"], second["error"]) == ("FAILED", "Process.ChildFailed")
        assert second["order"]["Error"] == "Approval.Rejected"
        children = {link["name"]: link for link in done["children"]}
        assert sorted(children) == ["l-1", "l-2", "l-3"]
        assert children["l-2"]["status"] == "FAILED"
        order = await _process(b, children["l-1"]["id"])
        assert order["correlationKey"] == "b-1-l-1" and order["parentId"] == parent["id"]


async def test_aliases_late_definitions_and_the_start_budget(
    database_url: str, kafka: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bridge import child_processes
    from bridge.definitions import deploy

    async with running_bridge(database_url, kafka, tmp_path, definitions=_folder(tmp_path)) as b:
        # NAME:ALIAS is routed as an HTTP start routes it.
        changed = {
            "StartAt": "Echo",
            "States": {"Echo": {"Type": "Pass", "Parameters": {"v2.$": "$.x"}, "End": True}},
        }
        assert (await b.http_put("/definitions/child-echo", changed))[0] == 201
        alias = {"routes": [{"version": 1, "weight": 100}]}
        assert (await b.http_put("/definitions/child-echo/aliases/stable", alias))[0] == 200
        parent = {
            "StartAt": "Run",
            "States": {"Run": {**_task(SYNC, "child-echo:stable"), "End": True}},
        }
        assert (await b.http_put("/definitions/parent-alias", parent))[0] == 201
        routed = await _start(b, "parent-alias", {"x": 3})
        assert routed["output"]["Output"] == {"echo": 3}
        [child] = (await _process(b, routed["id"]))["children"]
        assert child["version"] == 1
        [origin] = [e for e in await _history(b, child["id"]) if e["type"] == "ProcessStarted"]
        assert origin["details"]["alias"] == "stable"

        # A definition deployed behind this process's back (another replica): found, not refused.
        late = {"StartAt": "Run", "States": {"Run": {**_task(SYNC, "late-child"), "End": True}}}
        assert (await b.http_put("/definitions/parent-late", late))[0] == 201
        await deploy(b.core.db, [("late-child", DEFINITIONS["child-echo"])])
        assert b.core.registry.latest("late-child") is None
        found = await _start(b, "parent-late", {"x": 4})
        assert found["status"] == "SUCCEEDED" and found["output"]["Output"] == {"echo": 4}

        # A parent that starts children that end at once, in a loop that never waits, is bounded.
        monkeypatch.setattr(child_processes, "MAX_CHILD_STARTS", 20)
        loop = {
            "StartAt": "Run",
            "States": {
                "Run": {**_task(SYNC, "child-echo"), "ResultPath": None, "Next": "Again"},
                "Again": {"Type": "Pass", "Next": "Run"},
            },
        }
        assert (await b.http_put("/definitions/parent-loop", loop))[0] == 201
        looped = await _start(b, "parent-loop", {"x": 1})
        assert (looped["status"], looped["error"]) == ("FAILED", "States.Runtime")
        assert len((await _process(b, looped["id"]))["children"]) == 20


async def test_a_name_starts_one_child(database_url: str, kafka: str, tmp_path: Path) -> None:
    named = {"parameters": {"Name": "only"}}
    document = {
        "StartAt": "First",
        "States": {
            "First": {
                **_task(SYNC, "child-echo", **named),
                "ResultPath": "$.first",
                "Next": "Again",
            },
            # The same name: nothing new starts, the ended child's end answers at once.
            "Again": {
                **_task(SYNC, "child-echo", **named),
                "ResultPath": "$.again",
                "Next": "Hold",
            },
            "Hold": {
                **_task(PLAIN, "child-wait", parameters={"Name": "held"}),
                "ResultPath": "$.held",
                "Next": "Join",
            },
            # A running child started by another step cannot be waited for here.
            "Join": {
                **_task(SYNC, "child-wait", parameters={"Name": "held"}),
                "Catch": [
                    {
                        "ErrorEquals": ["Process.ChildRunning"],
                        "ResultPath": "$.refused",
                        "Next": "Done",
                    }
                ],
                "End": True,
            },
            "Done": {"Type": "Succeed"},
        },
    }
    async with running_bridge(database_url, kafka, tmp_path, definitions=_folder(tmp_path)) as b:
        assert (await b.http_put("/definitions/parent-names", document))[0] == 201
        done = await _start(b, "parent-names", {"x": 5})
        assert done["status"] == "SUCCEEDED", done
        assert done["output"]["first"] == done["output"]["again"]
        assert done["output"]["refused"]["Error"] == "Process.ChildRunning"
        links = (await _process(b, done["id"]))["children"]
        assert [link["name"] for link in links] == ["only", "held"]
        started = [e for e in await _history(b, done["id"]) if e["type"] == "ChildStarted"]
        assert [e["details"]["existing"] for e in started] == [False, True, False]
        refused = [e for e in await _history(b, done["id"]) if e["type"] == "ChildNotStarted"]
        assert refused[0]["details"]["error"] == "Process.ChildRunning"
