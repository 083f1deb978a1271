"""Parallel and Map states in the pure interpreter: branches, waits inside them, failures."""

from __future__ import annotations

from typing import Any

from bridge.asl.effects import CloseWait, ExpectCallback, SendMessage
from bridge.asl.inputs import TaskFailed, TaskSucceeded, TimerFired
from bridge.asl.loading import parse_definition
from bridge.asl.process import ProcessStatus
from tests.unit.driver import Driver, of_type


def machine(states: dict[str, Any], start: str) -> dict[str, Any]:
    return {"StartAt": start, "States": states}


def send_wait(topic: str, end: bool = True, **extra: Any) -> dict[str, Any]:
    return {
        "Type": "Task",
        "Resource": "bridge:kafka:send.waitForTaskToken",
        "Parameters": {"Topic": topic, "Message": {"token.$": "$$.Task.Token", "in.$": "$"}},
        **({"End": True} if end else {}),
        **extra,
    }


def definition(document: dict[str, Any]) -> Driver:
    return Driver(parse_definition(document, "test"))


def tokens(effects: Any) -> dict[str, str]:
    """topic -> wait id of every callback the step asked for."""
    sent = {m.value["token"]: m.topic for m in of_type(effects, SendMessage) if "token" in m.value}
    return {sent[e.token]: e.wait_id for e in of_type(effects, ExpectCallback)}


def test_parallel_of_passes_returns_the_branch_outputs_in_order() -> None:
    run = definition(
        machine(
            {
                "P": {
                    "Type": "Parallel",
                    "Branches": [
                        machine({"A": {"Type": "Pass", "Result": "a", "End": True}}, "A"),
                        machine(
                            {"B": {"Type": "Pass", "Parameters": {"x.$": "$.x"}, "End": True}}, "B"
                        ),
                    ],
                    "ResultPath": "$.both",
                    "End": True,
                }
            },
            "P",
        )
    )
    result = run.start({"x": 1})
    assert run.running.status is ProcessStatus.SUCCEEDED
    assert run.running.output == {"x": 1, "both": ["a", {"x": 1}]}
    assert [e.type for e in result.history].count("BranchSucceeded") == 2


def test_parallel_waits_for_every_branch_in_any_order() -> None:
    run = definition(
        machine(
            {
                "P": {
                    "Type": "Parallel",
                    "Branches": [
                        machine({"Left": send_wait("left")}, "Left"),
                        machine({"Right": send_wait("right")}, "Right"),
                    ],
                    "Next": "Done",
                },
                "Done": {"Type": "Succeed"},
            },
            "P",
        )
    )
    waits = tokens(run.start({"n": 1}).effects)
    assert set(waits) == {"left", "right"}
    run.apply(TaskSucceeded(waits["right"], "R"))
    assert run.running.status is ProcessStatus.RUNNING
    assert run.offer(TaskSucceeded(waits["right"], "again")).rejected
    run.apply(TaskSucceeded(waits["left"], "L"))
    assert run.running.status is ProcessStatus.SUCCEEDED
    assert run.running.output == ["L", "R"]


def test_a_failed_branch_stops_the_others_and_can_be_caught() -> None:
    run = definition(
        machine(
            {
                "P": {
                    "Type": "Parallel",
                    "Branches": [
                        machine({"Left": send_wait("left")}, "Left"),
                        machine({"Right": send_wait("right")}, "Right"),
                    ],
                    "Catch": [
                        {"ErrorEquals": ["Boom"], "ResultPath": "$.error", "Next": "Handled"}
                    ],
                    "End": True,
                },
                "Handled": {"Type": "Pass", "End": True},
            },
            "P",
        )
    )
    waits = tokens(run.start({"n": 1}).effects)
    failed = run.apply(TaskFailed(waits["left"], "Boom", "left broke"))
    closed = {e.wait_id for e in of_type(failed.effects, CloseWait)}
    assert closed == {waits["left"], waits["right"]}
    assert run.running.status is ProcessStatus.SUCCEEDED
    assert run.running.output == {"n": 1, "error": {"Error": "Boom", "Cause": "left broke"}}
    assert run.offer(TaskSucceeded(waits["right"], "late")).rejected


def test_a_fail_state_in_a_branch_fails_the_parallel_state() -> None:
    run = definition(
        machine(
            {
                "P": {
                    "Type": "Parallel",
                    "Branches": [machine({"F": {"Type": "Fail", "Error": "E", "Cause": "c"}}, "F")],
                    "End": True,
                }
            },
            "P",
        )
    )
    run.start({})
    assert (run.running.status, run.running.error, run.running.cause) == (
        ProcessStatus.FAILED,
        "E",
        "c",
    )


def test_map_with_item_selector_and_context() -> None:
    run = definition(
        machine(
            {
                "M": {
                    "Type": "Map",
                    "ItemsPath": "$.items",
                    "ItemSelector": {
                        "index.$": "$$.Map.Item.Index",
                        "value.$": "$$.Map.Item.Value",
                        "shared.$": "$.shared",
                    },
                    "ItemProcessor": machine(
                        {
                            "Double": {
                                "Type": "Pass",
                                "Parameters": {"i.$": "$.index", "v.$": "$.value"},
                                "End": True,
                            }
                        },
                        "Double",
                    ),
                    "ResultPath": "$.results",
                    "End": True,
                }
            },
            "M",
        )
    )
    run.start({"items": ["a", "b", "c"], "shared": 7})
    assert run.running.output["results"] == [
        {"i": 0, "v": "a"},
        {"i": 1, "v": "b"},
        {"i": 2, "v": "c"},
    ]


def test_map_of_nothing_and_map_over_a_non_array() -> None:
    document = machine(
        {
            "M": {
                "Type": "Map",
                "ItemsPath": "$.items",
                "Iterator": machine({"X": {"Type": "Pass", "End": True}}, "X"),
                "End": True,
            }
        },
        "M",
    )
    run = definition(document)
    run.start({"items": []})
    assert run.running.output == []
    run = definition(document)
    run.start({"items": "nope"})
    assert run.running.status is ProcessStatus.FAILED and run.running.error == "States.Runtime"


def test_map_max_concurrency_starts_one_item_at_a_time() -> None:
    run = definition(
        machine(
            {
                "M": {
                    "Type": "Map",
                    "MaxConcurrency": 1,
                    "ItemProcessor": machine({"Work": send_wait("work")}, "Work"),
                    "End": True,
                }
            },
            "M",
        )
    )
    result = run.start([10, 20, 30])
    outputs = []
    for expected in (10, 20, 30):
        messages = of_type(result.effects, SendMessage)
        assert [m.value["in"] for m in messages] == [expected]
        wait_id = of_type(result.effects, ExpectCallback)[0].wait_id
        outputs.append(expected * 2)
        result = run.apply(TaskSucceeded(wait_id, expected * 2))
    assert run.running.output == outputs


def test_map_tolerates_failures_up_to_the_threshold() -> None:
    def run_with(count: int) -> Driver:
        run = definition(
            machine(
                {
                    "M": {
                        "Type": "Map",
                        "ToleratedFailureCount": count,
                        "ItemProcessor": machine({"Work": send_wait("work")}, "Work"),
                        "End": True,
                    }
                },
                "M",
            )
        )
        result = run.start([1, 2, 3])
        waits = [e.wait_id for e in of_type(result.effects, ExpectCallback)]
        run.apply(TaskFailed(waits[0], "Bad", "one"))
        if run.running.status is ProcessStatus.RUNNING:
            run.apply(TaskSucceeded(waits[1], "two"))
            run.apply(TaskSucceeded(waits[2], "three"))
        return run

    tolerant = run_with(1)
    assert tolerant.running.status is ProcessStatus.SUCCEEDED
    assert tolerant.running.output == [{"Error": "Bad", "Cause": "one"}, "two", "three"]
    strict = run_with(0)
    assert strict.running.status is ProcessStatus.FAILED
    assert strict.running.error == "States.ExceedToleratedFailureThreshold"


def test_retry_of_a_parallel_state_runs_its_branches_again() -> None:
    run = definition(
        machine(
            {
                "P": {
                    "Type": "Parallel",
                    "Branches": [machine({"Work": send_wait("work")}, "Work")],
                    "Retry": [{"ErrorEquals": ["Busy"], "IntervalSeconds": 5, "MaxAttempts": 1}],
                    "End": True,
                }
            },
            "P",
        )
    )
    first = tokens(run.start({}).effects)["work"]
    run.apply(TaskFailed(first, "Busy", ""))
    timer = run.wait.timer
    assert timer is not None
    second = tokens(run.apply(TimerFired(timer), after=5).effects)["work"]
    assert second != first
    run.apply(TaskSucceeded(second, "ok"))
    assert run.running.output == ["ok"]


def test_map_inside_parallel_inside_map() -> None:
    inner_map = {
        "Type": "Map",
        "ItemsPath": "$.inner",
        "ItemProcessor": machine({"Leaf": send_wait("leaf")}, "Leaf"),
        "End": True,
    }
    run = definition(
        machine(
            {
                "Outer": {
                    "Type": "Map",
                    "ItemProcessor": machine(
                        {
                            "Par": {
                                "Type": "Parallel",
                                "Branches": [machine({"Inner": inner_map}, "Inner")],
                                "End": True,
                            }
                        },
                        "Par",
                    ),
                    "End": True,
                }
            },
            "Outer",
        )
    )
    result = run.start([{"inner": [1, 2]}, {"inner": [3]}])
    waits = [
        (m.value["in"], e.wait_id)
        for m, e in zip(
            of_type(result.effects, SendMessage),
            of_type(result.effects, ExpectCallback),
            strict=True,
        )
    ]
    assert [value for value, _ in waits] == [1, 2, 3]
    for value, wait_id in reversed(waits):
        run.apply(TaskSucceeded(wait_id, value * 10))
    assert run.running.output == [[[10, 20]], [[30]]]


def test_validation_reaches_into_branches() -> None:
    from bridge.asl.errors import DefinitionError

    document = machine(
        {
            "P": {
                "Type": "Parallel",
                "Branches": [machine({"A": {"Type": "Pass", "Next": "Missing"}}, "A")],
                "End": True,
            }
        },
        "P",
    )
    try:
        parse_definition(document, "bad")
    except DefinitionError as exc:
        assert "States.P.Branches[0].States.A.Next: state 'Missing' does not exist" in exc.problems
    else:
        raise AssertionError("the definition should be invalid")
