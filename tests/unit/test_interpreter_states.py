"""Unit tests for bridge.asl.interpreter: single state types (Pass, Succeed, Fail, Choice, Wait,
fire-and-forget sends) and whole-process endings (definition timeout, stop, a loop that never
waits), each driven through ``step`` with the driver of tests/unit/driver.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bridge.asl import errors
from bridge.asl.effects import (
    CancelTimer,
    CloseWait,
    ExpectCallback,
    SendMessage,
    StartTimer,
)
from bridge.asl.inputs import (
    Stop,
    TaskSucceeded,
    TimerFired,
)
from bridge.asl.interpreter import MAX_TRANSITIONS_PER_STEP
from bridge.asl.model import SEND, Definition
from bridge.asl.process import Process, ProcessStatus, Wait
from tests.unit.driver import (
    T0,
    Driver,
    assert_rejected,
    callback_task,
    machine,
    of_type,
    one,
    start_saga,
)

# --------------------------------------------------------------------------------------------
# Single state types


def run_to_end(states: dict[str, Any], data: Any) -> Process:
    """Start a definition that never waits; return the process it ended as."""
    run = Driver(machine(states))
    run.start(data)
    assert run.running.status.ended, run.running
    return run.running


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ({"Result": {"a": 1}, "ResultPath": "$.r"}, {"x": 1, "y": {"z": 2}, "r": {"a": 1}}),
        ({"Result": {"a": 1}}, {"a": 1}),
        ({"Parameters": {"copy.$": "$.y.z", "fixed": "f"}}, {"copy": 2, "fixed": "f"}),
        (
            {"Parameters": {"copy.$": "$.x"}, "ResultPath": "$.p"},
            {"x": 1, "y": {"z": 2}, "p": {"copy": 1}},
        ),
        ({"InputPath": "$.y", "ResultPath": "$.got"}, {"x": 1, "y": {"z": 2}, "got": {"z": 2}}),
        ({"InputPath": None, "ResultPath": "$.got"}, {"x": 1, "y": {"z": 2}, "got": {}}),
        ({"InputPath": None}, {}),
        ({"Result": "ignored", "ResultPath": None}, {"x": 1, "y": {"z": 2}}),
        ({"Result": {"a": 1}, "ResultPath": "$.r", "OutputPath": "$.r"}, {"a": 1}),
        ({"OutputPath": "$.y.z"}, 2),
        ({"OutputPath": None}, {}),
    ],
    ids=[
        "result-at-path",
        "result-replaces",
        "parameters",
        "parameters-at-path",
        "input-path",
        "input-path-null",
        "input-path-null-replaces",
        "result-path-null",
        "output-path",
        "output-path-scalar",
        "output-path-null",
    ],
)
def test_pass(state: dict[str, Any], expected: Any) -> None:
    process = run_to_end({"P": {"Type": "Pass", "End": True, **state}}, {"x": 1, "y": {"z": 2}})
    assert process.status is ProcessStatus.SUCCEEDED
    assert process.output == expected


def test_succeed_applies_its_paths() -> None:
    process = run_to_end(
        {"Done": {"Type": "Succeed", "InputPath": "$.a", "OutputPath": "$.b"}}, {"a": {"b": 3}}
    )
    assert process.status is ProcessStatus.SUCCEEDED
    assert process.output == 3


def test_fail_with_error_and_cause() -> None:
    process = run_to_end({"Stop": {"Type": "Fail", "Error": "Order.Bad", "Cause": "no"}}, {})
    assert process.status is ProcessStatus.FAILED
    assert (process.error, process.cause) == ("Order.Bad", "no")
    assert process.current_state == "Stop"


def test_fail_with_error_path_and_cause_path() -> None:
    process = run_to_end(
        {"Stop": {"Type": "Fail", "ErrorPath": "$.e", "CausePath": "$.c"}},
        {"e": "From.Input", "c": "because"},
    )
    assert process.status is ProcessStatus.FAILED
    assert (process.error, process.cause) == ("From.Input", "because")


def choice_states(*, default: bool) -> dict[str, Any]:
    pick: dict[str, Any] = {
        "Type": "Choice",
        "Choices": [{"Variable": "$.n", "NumericGreaterThan": 10, "Next": "Big"}],
    }
    states = {"Pick": pick, "Big": {"Type": "Pass", "Result": "big", "End": True}}
    if default:
        pick["Default"] = "Small"
        states["Small"] = {"Type": "Pass", "Result": "small", "End": True}
    return states


@pytest.mark.parametrize(("n", "expected"), [(11, "big"), (10, "small"), (-3, "small")])
def test_choice_takes_the_matching_rule_or_the_default(n: int, expected: str) -> None:
    assert run_to_end(choice_states(default=True), {"n": n}).output == expected


def test_choice_without_a_match_or_default_fails_with_no_choice_matched() -> None:
    process = run_to_end(choice_states(default=False), {"n": 1})
    assert process.status is ProcessStatus.FAILED
    assert process.error == errors.NO_CHOICE_MATCHED == "States.NoChoiceMatched"
    assert process.current_state == "Pick"


def wait_machine(**wait: Any) -> Definition:
    return machine({"Pause": {"Type": "Wait", "Next": "Done", **wait}, "Done": {"Type": "Succeed"}})


def test_a_wait_with_seconds_sets_a_timer_and_continues_when_it_fires() -> None:
    run = Driver(wait_machine(Seconds=30))
    started = run.start({"x": 1})
    timer = one(started.effects, StartTimer)
    assert timer.due_at == T0 + timedelta(seconds=30)
    assert run.wait == Wait(id=timer.timer_id, kind="wait", timer=timer.timer_id)
    assert run.running.status is ProcessStatus.RUNNING

    assert_rejected(run.offer(TimerFired("id-999")), run.running)
    fired = run.apply(TimerFired(timer.timer_id), after=30)

    assert of_type(fired.effects, CloseWait) == []
    assert run.running.status is ProcessStatus.SUCCEEDED
    assert run.running.output == {"x": 1}
    assert run.running.ended_at == T0 + timedelta(seconds=30)


def test_a_wait_until_a_past_timestamp_continues_at_once() -> None:
    run = Driver(wait_machine(Timestamp="2020-01-01T00:00:00Z"))
    started = run.start({"x": 1})
    assert of_type(started.effects, StartTimer) == []
    assert run.running.status is ProcessStatus.SUCCEEDED
    assert run.running.output == {"x": 1}


def test_a_wait_until_a_future_timestamp_sets_a_timer_for_it() -> None:
    run = Driver(wait_machine(Timestamp="2030-01-01T00:00:00Z"))
    started = run.start({})
    assert one(started.effects, StartTimer).due_at == datetime(2030, 1, 1, tzinfo=UTC)


def test_a_fire_and_forget_send_continues_with_message_id_and_topic() -> None:
    definition = machine(
        {
            "Notify": {
                "Type": "Task",
                "Resource": SEND,
                "Parameters": {
                    "Topic": "notices",
                    "Key.$": "$.id",
                    "Headers": {"kind": "notice"},
                    "Message": {"about.$": "$.id"},
                },
                "ResultPath": "$.sent",
                "End": True,
            }
        }
    )
    run = Driver(definition)
    started = run.start({"id": "n-1"})

    message = one(started.effects, SendMessage)
    assert (message.topic, message.key, message.value) == ("notices", "n-1", {"about": "n-1"})
    assert message.headers == {"kind": "notice"}
    assert of_type(started.effects, ExpectCallback) == []
    assert run.running.status is ProcessStatus.SUCCEEDED
    assert run.running.output == {
        "id": "n-1",
        "sent": {"MessageId": message.message_id, "Topic": "notices"},
    }


# --------------------------------------------------------------------------------------------
# Whole-process endings


def test_the_definition_timeout_times_the_process_out() -> None:
    definition = machine({"Work": callback_task(TimeoutSeconds=60)}, TimeoutSeconds=3600)
    run = Driver(definition)
    started = run.start({})
    process_timer = run.running.timeout_timer
    assert process_timer is not None
    assert StartTimer(process_timer, T0 + timedelta(seconds=3600)) in started.effects
    wait = run.wait

    fired = run.apply(TimerFired(process_timer), after=3600)

    assert CloseWait(wait.id, wait.kind) in fired.effects
    assert CancelTimer(wait.timeout_timer or "") in fired.effects
    process = run.running
    assert process.status is ProcessStatus.TIMED_OUT
    assert process.error == errors.TIMEOUT
    assert process.timeout_timer is None
    assert process.position is not None and process.position.wait is None


def test_a_process_that_ends_in_time_cancels_its_definition_timer() -> None:
    definition = machine({"Work": callback_task(TimeoutSeconds=60)}, TimeoutSeconds=3600)
    run = Driver(definition)
    run.start({})
    process_timer = run.running.timeout_timer

    done = run.apply(TaskSucceeded(run.wait.id, {"ok": True}))

    assert CancelTimer(process_timer or "") in done.effects
    assert run.running.status is ProcessStatus.SUCCEEDED
    assert_rejected(run.offer(TimerFired(process_timer or "")), run.running)


def test_stop_aborts_with_the_given_error_and_closes_the_wait() -> None:
    run, _ = start_saga()
    wait = run.wait

    stopped = run.apply(Stop(error="Ops.Cancelled", cause="the customer called"))

    assert CloseWait(wait.id, wait.kind) in stopped.effects
    assert CancelTimer(wait.timeout_timer or "") in stopped.effects
    process = run.running
    assert process.status is ProcessStatus.ABORTED
    assert (process.error, process.cause) == ("Ops.Cancelled", "the customer called")
    assert stopped.history[-1].type == "ProcessAborted"


def test_a_loop_that_never_waits_fails_with_states_runtime() -> None:
    definition = machine(
        {
            "Spin": {"Type": "Pass", "Next": "Again"},
            "Again": {
                "Type": "Choice",
                "Choices": [{"Variable": "$.go", "BooleanEquals": True, "Next": "Spin"}],
                "Default": "Done",
            },
            "Done": {"Type": "Succeed"},
        }
    )
    run = Driver(definition)
    run.start({"go": True})  # pytest-timeout guards against a hang here

    process = run.running
    assert process.status is ProcessStatus.FAILED
    assert process.error == errors.RUNTIME
    assert str(MAX_TRANSITIONS_PER_STEP) in (process.cause or "")
    assert len(run.history_types("StateEntered")) == MAX_TRANSITIONS_PER_STEP
