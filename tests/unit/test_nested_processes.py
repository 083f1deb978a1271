"""Nested processes in the pure core: ``bridge:process:start`` and ``.sync``.

What a parent's step asks of the shell (``StartChild``), what the child's start and end make of
the parent's task (output, ``Process.Child*`` errors that Retry and Catch see), when a child tells
its parent (``NotifyParent``), and when a parent stops its children (``StopChild``). Also the
definition checks and the local runner's mocks. No I/O: ``step`` is driven directly.
"""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

import pytest

from bridge.asl import children, errors
from bridge.asl.effects import CancelTimer, NotifyParent, StartChild, StartTimer, StopChild
from bridge.asl.errors import DefinitionError
from bridge.asl.inputs import (
    ChildEnded,
    ChildNotStarted,
    ChildStarted,
    Fault,
    Redrive,
    Start,
    Stop,
    TimerFired,
)
from bridge.asl.loading import parse_definition
from bridge.asl.process import ParentLink, Process, ProcessStatus
from bridge.local import MocksError, run_local
from tests.unit.driver import T0, Driver, of_type, one

SYNC = "bridge:process:start.sync"
PLAIN = "bridge:process:start"


def _task(resource: str, **extra: Any) -> dict[str, Any]:
    parameters = {"Definition": "child:live", "Input": {"n.$": "$.n"}}
    parameters.update(extra.pop("parameters", {}))
    return {"Type": "Task", "Resource": resource, "Parameters": parameters, **extra}


def machine(*states: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    return {"StartAt": states[0][0], "States": dict(states)}


def driver(document: dict[str, Any], name: str = "parent") -> Driver:
    return Driver(parse_definition(document, name))


def started(run: Driver, *, version: int = 3) -> ChildStarted:
    """The shell's answer to the one StartChild of the last step."""
    ask = one(run.log[-1].result.effects, StartChild)
    return ChildStarted(ask.wait_id, ask.child_id, "child", version, run.now)


def ended(wait_id: str, child: str, status: str, **fields: Any) -> ChildEnded:
    return ChildEnded(wait_id, child, status, started_at=T0, ended_at=T0, **fields)


# --------------------------------------------------------------------------------------------
# Definitions


@pytest.mark.parametrize(
    ("task", "problem"),
    [
        ({"Type": "Task", "Resource": SYNC, "End": True}, "needs Definition"),
        (_task(SYNC, parameters={"Definition": ""}), "Parameters.Definition"),
        (
            {"Type": "Task", "Resource": SYNC, "Parameters": {"Input": {}}},
            "Parameters.Definition: the child's definition",
        ),
        (_task(SYNC, parameters={"Version": 2}), "Parameters.Version: not a field"),
        (_task(SYNC, HeartbeatSeconds=5), "HeartbeatSeconds: a child process sends no heartbeats"),
        (_task(PLAIN, TimeoutSeconds=5), "TimeoutSeconds: bridge:process:start answers at once"),
    ],
)
def test_definitions_are_checked_when_loaded(task: dict[str, Any], problem: str) -> None:
    task.setdefault("End", True)
    with pytest.raises(DefinitionError) as raised:
        parse_definition(machine(("Run", task)), "parent")
    assert any(problem in found for found in raised.value.problems), raised.value.problems


def test_valid_starts_load() -> None:
    document = machine(
        ("A", {**_task(SYNC, TimeoutSeconds=60), "Next": "B"}),
        (
            "B",
            {
                **_task(
                    PLAIN,
                    parameters={"Definition.$": "$.which", "Name.$": "$.id", "CorrelationKey": "k"},
                ),
                "End": True,
            },
        ),
    )
    assert set(parse_definition(document, "parent").states) == {"A", "B"}


# --------------------------------------------------------------------------------------------
# .sync


SYNC_PARENT = machine(
    (
        "Run",
        {
            **_task(SYNC, parameters={"CorrelationKey.$": "$.key"}),
            "ResultPath": "$.child",
            "Catch": [
                {"ErrorEquals": ["Process.ChildFailed"], "ResultPath": "$.error", "Next": "Caught"}
            ],
            "Next": "Done",
        },
    ),
    ("Done", {"Type": "Succeed"}),
    ("Caught", {"Type": "Pass", "End": True}),
)


def test_sync_start_asks_for_the_child_and_waits() -> None:
    run = driver(SYNC_PARENT)
    result = run.start({"n": 5, "key": "k-9"})
    ask = one(result.effects, StartChild)
    assert ask == StartChild(
        child_id=ask.child_id,
        wait_id=run.wait.id,
        state="Run",
        definition="child:live",
        input={"n": 5},
        name=None,
        correlation_key="k-9",
        sync=True,
        depth=1,
    )
    assert run.wait.kind == "child" and run.wait.child == ask.child_id and run.wait.sync
    assert run.running.status is ProcessStatus.RUNNING


def test_sync_takes_the_childs_output_wrapped() -> None:
    run = driver(SYNC_PARENT)
    run.start({"n": 5, "key": "k"})
    answer = started(run)
    step = run.apply(answer)
    assert [entry.type for entry in step.history] == ["ChildStarted"]
    assert step.history[0].details["processId"] == answer.process_id
    assert run.wait.id == answer.wait_id, "still waiting for the end"
    done = run.apply(ended(answer.wait_id, answer.process_id, "SUCCEEDED", output={"ok": 1}))
    assert run.running.status is ProcessStatus.SUCCEEDED
    assert run.running.output["child"] == {
        "ProcessId": answer.process_id,
        "Status": "SUCCEEDED",
        "Output": {"ok": 1},
        "StartedAt": "2024-05-01T12:00:00.000Z",
        "EndedAt": "2024-05-01T12:00:00.000Z",
    }
    assert "ChildEnded" in [entry.type for entry in done.history]


@pytest.mark.parametrize(
    ("status", "error"),
    [
        ("FAILED", "Process.ChildFailed"),
        ("TIMED_OUT", "Process.ChildTimedOut"),
        ("ABORTED", "Process.ChildAborted"),
    ],
)
def test_a_child_that_does_not_succeed_is_an_error(status: str, error: str) -> None:
    run = driver(SYNC_PARENT)
    run.start({"n": 1, "key": "k"})
    answer = run.apply(started(run))
    assert answer.rejected is None
    wait = run.wait
    run.apply(ended(wait.id, wait.child or "", status, error="Child.Broke", cause="it broke"))
    cause = {"ProcessId": wait.child, "Status": status, "Error": "Child.Broke", "Cause": "it broke"}
    if status == "FAILED":  # caught
        assert run.running.status is ProcessStatus.SUCCEEDED
        assert run.running.output["error"] == {"Error": error, "Cause": json.dumps(cause)}
    else:  # not caught: the parent fails with the child's end as its cause
        assert (run.running.status, run.running.error) == (ProcessStatus.FAILED, error)
        assert json.loads(run.running.cause or "") == cause


def test_a_start_the_shell_refuses_fails_the_task() -> None:
    run = driver(SYNC_PARENT)
    run.start({"n": 1, "key": "k"})
    refused = run.apply(
        ChildNotStarted(run.wait.id, errors.CHILD_DEFINITION_NOT_FOUND, "no definition 'child'")
    )
    assert [e.type for e in refused.history][:2] == ["ChildNotStarted", "ProcessFailed"]
    assert run.running.error == "Process.DefinitionNotFound"


def test_answers_for_another_wait_are_refused() -> None:
    run = driver(SYNC_PARENT)
    run.start({"n": 1, "key": "k"})
    before = run.running
    result = run.offer(ended("another-wait", "c", "SUCCEEDED"))
    assert result.rejected and result.process == before and result.effects == ()


def test_timeout_seconds_bounds_the_wait_and_stops_the_child() -> None:
    document = machine(("Run", {**_task(SYNC, TimeoutSeconds=30), "End": True}))
    run = driver(document)
    first = run.start({"n": 1})
    timer = one(first.effects, StartTimer)
    assert timer.due_at == T0 + timedelta(seconds=30)
    run.apply(started(run))
    child = run.wait.child
    timed_out = run.apply(TimerFired(timer.timer_id), after=30)
    assert one(timed_out.effects, StopChild) == StopChild(child or "", "Run")
    assert (run.running.status, run.running.error) == (ProcessStatus.FAILED, errors.TIMEOUT)


def test_the_end_cancels_the_timeout() -> None:
    document = machine(("Run", {**_task(SYNC, TimeoutSeconds=30), "End": True}))
    run = driver(document)
    timer = one(run.start({"n": 1}).effects, StartTimer)
    answer = started(run)
    run.apply(answer)
    done = run.apply(ended(answer.wait_id, answer.process_id, "SUCCEEDED", output=1))
    assert CancelTimer(timer.timer_id) in done.effects
    assert of_type(done.effects, StopChild) == []


# --------------------------------------------------------------------------------------------
# The plain form


def test_plain_start_answers_the_id_at_once_and_leaves_the_child_alone() -> None:
    document = machine(
        ("Run", {**_task(PLAIN), "ResultPath": "$.child", "Next": "Hold"}),
        ("Hold", {"Type": "Wait", "Seconds": 60, "End": True}),
    )
    run = driver(document)
    ask = one(run.start({"n": 2}).effects, StartChild)
    assert ask.sync is False
    run.apply(started(run))
    assert run.running.position is not None and run.running.position.state == "Hold"
    assert run.running.position.input["child"] == {
        "ProcessId": ask.child_id,
        "StartedAt": "2024-05-01T12:00:00.000Z",
    }
    stopped = run.apply(Stop())
    assert of_type(stopped.effects, StopChild) == [], "a plain child outlives its parent"


def test_a_name_gives_the_child_a_stable_id() -> None:
    document = machine(("Run", {**_task(PLAIN, parameters={"Name.$": "$.id"}), "End": True}))
    run = driver(document)
    ask = one(run.start({"n": 1, "id": "line-1"}).effects, StartChild)
    assert ask.name == "line-1"
    assert ask.child_id == str(uuid.uuid5(uuid.NAMESPACE_URL, "bridge:child:p-1:line-1"))
    assert ask.child_id == children.child_id("p-1", "line-1")


@pytest.mark.parametrize(
    "parameters",
    [{"Definition.$": "$.n"}, {"Name.$": "$.n"}, {"CorrelationKey": {"a": 1}}],
)
def test_unusable_parameters_fail_the_task(parameters: dict[str, Any]) -> None:
    document = machine(("Run", {**_task(SYNC, parameters=parameters), "End": True}))
    run = driver(document)
    result = run.start({"n": 1})
    assert of_type(result.effects, StartChild) == []
    assert run.running.error == errors.CHILD_INVALID_PARAMETERS


# --------------------------------------------------------------------------------------------
# Children: telling the parent, and stopping


CHILD = machine(
    ("Hold", {"Type": "Wait", "Seconds": 60, "Next": "Done"}), ("Done", {"Type": "Succeed"})
)


def child_driver(wait_id: str | None, depth: int = 1) -> Driver:
    run = driver(CHILD, "child")
    link = ParentLink(id="parent-1", state="Run", wait_id=wait_id, depth=depth)
    run.apply(Start("c-1", {"n": 1}, origin={"via": "process"}, parent=link))
    return run


def test_a_sync_child_tells_its_parent_how_it_ended() -> None:
    run = child_driver("w-1")
    assert run.running.parent == ParentLink(id="parent-1", state="Run", wait_id="w-1")
    timer = run.wait.timer or ""
    done = run.apply(TimerFired(timer), after=60)
    assert one(done.effects, NotifyParent) == NotifyParent(
        parent_id="parent-1",
        wait_id="w-1",
        status="SUCCEEDED",
        output={"n": 1},
        error=None,
        cause=None,
        started_at=T0,
        ended_at=T0 + timedelta(seconds=60),
    )


@pytest.mark.parametrize(
    ("event", "status"),
    [(Stop("Ops.Stop", "no"), "ABORTED"), (Fault("Bridge.InputFailed", "bug"), "FAILED")],
)
def test_every_end_is_told(event: Stop | Fault, status: str) -> None:
    run = child_driver("w-1")
    notice = one(run.apply(event).effects, NotifyParent)
    assert (notice.status, notice.error) == (status, event.error)


def test_a_plain_child_tells_nobody() -> None:
    run = child_driver(None)
    assert of_type(run.apply(Stop()).effects, NotifyParent) == []


def test_the_childs_end_as_the_parents_input() -> None:
    run = child_driver("w-1")
    run.apply(Stop("Ops.Stop", "no"))
    assert children.ended_input(run.running, "w-1") == ChildEnded(
        "w-1", "c-1", "ABORTED", None, "Ops.Stop", "no", T0, T0
    )


def test_nesting_is_bounded() -> None:
    document = machine(("Run", {**_task(SYNC), "End": True}))
    deepest = Driver(parse_definition(document, "parent"))
    link = ParentLink(id="up", state="Run", wait_id="w", depth=children.MAX_DEPTH)
    result = deepest.apply(Start("p-1", {"n": 1}, parent=link))
    assert of_type(result.effects, StartChild) == []
    assert deepest.running.error == errors.NESTING_TOO_DEEP
    one_less = Driver(parse_definition(document, "parent"))
    link = link.model_copy(update={"depth": children.MAX_DEPTH - 1})
    ask = one(one_less.apply(Start("p-1", {"n": 1}, parent=link)).effects, StartChild)
    assert ask.depth == children.MAX_DEPTH


MAP_PARENT = machine(
    (
        "Each",
        {
            "Type": "Map",
            "ItemsPath": "$.items",
            "ItemProcessor": machine(
                ("Run", {**_task(SYNC), "OutputPath": "$.Output", "End": True})
            ),
            "End": True,
        },
    )
)


def test_a_map_starts_a_child_per_item_and_collects_their_outputs() -> None:
    run = driver(MAP_PARENT)
    asks = of_type(run.start({"items": [{"n": 1}, {"n": 2}, {"n": 3}]}).effects, StartChild)
    assert [ask.input for ask in asks] == [{"n": 1}, {"n": 2}, {"n": 3}]
    for ask in asks:
        run.apply(ChildStarted(ask.wait_id, ask.child_id, "child", 1, run.now))
    assert children.children_waited_for(run.running) == [ask.child_id for ask in asks]
    for ask in reversed(asks):
        run.apply(ended(ask.wait_id, ask.child_id, "SUCCEEDED", output=ask.input["n"] * 10))
    assert (run.running.status, run.running.output) == (ProcessStatus.SUCCEEDED, [10, 20, 30])


def test_stopping_a_parent_stops_every_waiting_child() -> None:
    run = driver(MAP_PARENT)
    asks = of_type(run.start({"items": [{"n": 1}, {"n": 2}, {"n": 3}]}).effects, StartChild)
    for ask in asks:
        run.apply(ChildStarted(ask.wait_id, ask.child_id, "child", 1, run.now))
    run.apply(ended(asks[0].wait_id, asks[0].child_id, "SUCCEEDED", output=1))
    stopped = run.apply(Stop())
    assert of_type(stopped.effects, StopChild) == [
        StopChild(asks[1].child_id, "Run"),
        StopChild(asks[2].child_id, "Run"),
    ]
    assert run.running.status is ProcessStatus.ABORTED
    late = run.offer(ended(asks[1].wait_id, asks[1].child_id, "ABORTED", error="x"))
    assert late.rejected, "a stopped child's end does not come back"


def test_a_failed_item_stops_its_siblings() -> None:
    run = driver(MAP_PARENT)
    asks = of_type(run.start({"items": [{"n": 1}, {"n": 2}]}).effects, StartChild)
    for ask in asks:
        run.apply(ChildStarted(ask.wait_id, ask.child_id, "child", 1, run.now))
    failed = run.apply(ended(asks[0].wait_id, asks[0].child_id, "FAILED", error="E", cause="c"))
    assert of_type(failed.effects, StopChild) == [StopChild(asks[1].child_id, "Run")]
    assert run.running.error == errors.CHILD_FAILED


def test_the_shell_knows_whether_a_start_is_still_wanted() -> None:
    run = driver(SYNC_PARENT)
    run.start({"n": 1, "key": "k"})
    wait_id = run.wait.id
    assert children.waits_for(run.running, wait_id)
    run.apply(Stop())
    assert not children.waits_for(run.running, wait_id)


def test_a_redrive_asks_for_a_new_child() -> None:
    document = machine(("Run", {**_task(SYNC), "End": True}))
    run = driver(document)
    first = one(run.start({"n": 1}).effects, StartChild)
    run.apply(started(run))
    run.apply(ended(first.wait_id, first.child_id, "FAILED", error="E", cause="c"))
    assert run.running.status is ProcessStatus.FAILED
    second = one(run.apply(Redrive()).effects, StartChild)
    assert second.child_id != first.child_id and second.wait_id != first.wait_id
    assert run.running.status is ProcessStatus.RUNNING


# --------------------------------------------------------------------------------------------
# The local runner


LOCAL = machine(
    (
        "Run",
        {
            **_task(SYNC, parameters={"Name": "only"}),
            "Catch": [{"ErrorEquals": ["States.TaskFailed"], "Next": "Caught"}],
            "End": True,
        },
    ),
    ("Caught", {"Type": "Pass", "End": True}),
)


def test_local_runs_answer_sync_tasks_from_mocks() -> None:
    result = run_local(LOCAL, {"n": 1}, mocks={"Run": {"Return": {"ok": True}}}, seed=1)
    assert result.succeeded and result.output["Output"] == {"ok": True}
    assert result.children == [
        {
            "state": "Run",
            "definition": "child:live",
            "input": {"n": 1},
            "name": "only",
            "correlationKey": None,
            "sync": True,
            "processId": result.output["ProcessId"],
        }
    ]
    thrown = run_local(LOCAL, {"n": 1}, mocks={"Run": {"Throw": {"Error": "E", "Cause": "c"}}})
    assert thrown.succeeded and thrown.output["Error"] == "Process.ChildFailed"
    assert json.loads(thrown.output["Cause"])["Error"] == "E"
    missing = run_local(LOCAL, {"n": 1})
    assert missing.error == "Local.NoMock"


def test_local_plain_starts_need_no_mock() -> None:
    document = machine(("Run", {**_task(PLAIN), "End": True}))
    result = run_local(document, {"n": 1}, seed=2)
    assert result.succeeded and set(result.output) == {"ProcessId", "StartedAt"}
    with pytest.raises(MocksError):
        run_local(document, {"n": 1}, mocks={"Run": {"Return": 1}})


def test_child_request_reads_parameters() -> None:
    assert children.request({"Definition": "a:2", "CorrelationKey": 7}, SYNC) == (
        children.ChildRequest("a:2", {}, None, "7")
    )
    parent = Process(id="p", definition="d", version=1, started_at=T0)
    assert children.children_waited_for(parent) == []


def test_an_express_parent_keeps_its_links_to_children() -> None:
    document = {"ProcessType": "EXPRESS", **machine(("Run", {**_task(SYNC), "End": True}))}
    run = driver(document)
    run.start({"n": 1})
    answer = started(run)
    run.apply(answer)
    run.apply(ended(answer.wait_id, answer.process_id, "SUCCEEDED", output=1))
    kinds = [entry.type for applied in run.log for entry in applied.result.history]
    assert kinds == ["ProcessStarted", "ChildStarted", "ProcessSucceeded"]
