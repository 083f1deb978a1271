"""Unit tests for bridge.local: definitions run in memory with mocked answers (no broker, no DB).

The runner drives the same pure interpreter as the engine, so these tests assert on what a user of
``run_local`` sees (status, output, error, history, messages sent), not on how the runner works.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

import bridge
from bridge.asl.errors import DefinitionError
from bridge.asl.model import APPROVAL, SEND, SEND_WAIT
from bridge.local import NO_MOCK, STUCK, TOO_MANY_STEPS, LocalResult, MocksError, run_local

SAGA_TEXT = (Path(__file__).resolve().parents[2] / "examples" / "order-saga.asl.yaml").read_text()
SAGA = yaml.safe_load(SAGA_TEXT)
ITEMS = [{"sku": "sku-1", "quantity": 2}]


def order(amount: float) -> dict[str, Any]:
    return {
        "eventId": "e-1",
        "type": "OrderPlaced",
        "orderId": "o-1",
        "customerId": "c-7",
        "amount": amount,
        "items": ITEMS,
    }


ANSWERED = {
    "ReserveInventory": {"Return": {"reservationId": "r-1"}},
    "ChargePayment": {"Return": {"paymentId": "p-1"}},
}


def types(result: LocalResult) -> list[str]:
    return [entry["type"] for entry in result.history]


def at(entry: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(entry["at"].replace("Z", "+00:00"))


def task(resource: str = SEND_WAIT, **fields: Any) -> dict[str, Any]:
    """A Task state; send tasks get the parameters their resource needs."""
    state: dict[str, Any] = {"Type": "Task", "Resource": resource, "End": True, **fields}
    if resource in (SEND, SEND_WAIT):
        message = {"taskToken.$": "$$.Task.Token"} if resource == SEND_WAIT else {"hello": 1}
        state.setdefault("Parameters", {"Topic": "t", "Message": message})
    return state


def machine(**states: dict[str, Any]) -> dict[str, Any]:
    return {"StartAt": next(iter(states)), "States": states}


# --------------------------------------------------------------------------------------------
# The order saga


def test_a_small_order_succeeds_with_each_answer_at_its_result_path() -> None:
    result = run_local(SAGA, order(120), mocks=ANSWERED)

    assert result.status == "SUCCEEDED"
    assert result.error is None and result.cause is None
    assert result.output["inventory"] == {"reservationId": "r-1"}
    assert result.output["payment"] == {"paymentId": "p-1"}
    assert result.output["completed"]["Topic"] == "orders.done"
    assert "approval" not in result.output
    completed = [m for m in result.messages if m["topic"] == "orders.done"]
    assert completed == [
        {
            "topic": "orders.done",
            "key": "o-1",
            "value": {"type": "OrderCompleted", "orderId": "o-1", "amount": 120},
            "headers": {},
            "state": "CompleteOrder",
            "messageId": result.output["completed"]["MessageId"],
        }
    ]
    # The commands carry the task tokens the mocks answered.
    assert [m["state"] for m in result.messages] == [
        "ReserveInventory",
        "ChargePayment",
        "CompleteOrder",
    ]
    assert all(m["value"]["taskToken"] for m in result.messages[:2])
    assert types(result)[0] == "ProcessStarted"
    assert types(result)[-1] == "ProcessSucceeded"
    assert types(result).count("TaskSucceeded") == 2
    assert result.history[-1]["details"] == {"output": result.output}
    assert result.approvals == []


def test_a_large_order_rejected_by_the_approver_fails() -> None:
    mocks = {
        **ANSWERED,
        "ApproveOrder": {"Return": {"outcome": "REJECTED", "decidedBy": "ann", "comment": "no"}},
    }
    result = run_local(SAGA, order(950), mocks=mocks)

    assert result.status == "FAILED"
    assert result.error == "Approval.Rejected"
    assert result.cause == "Rejected by ann: no"
    assert result.output is None
    assert [a["title"] for a in result.approvals] == ["Approve order o-1 over 950"]
    assert result.approvals[0]["data"]["amount"] == 950
    assert not [m for m in result.messages if m["topic"] == "orders.done"]


def test_a_large_order_approved_completes_with_the_decision() -> None:
    mocks = {**ANSWERED, "ApproveOrder": {"Return": {"outcome": "APPROVED", "decidedBy": "bob"}}}
    result = run_local(SAGA, order(950), mocks=mocks)

    assert result.status == "SUCCEEDED"
    assert result.output["approval"]["outcome"] == "APPROVED"
    assert result.output["approval"]["decidedBy"] == "bob"


def test_a_thrown_answer_fails_the_task_like_a_failure_callback() -> None:
    mocks = {**ANSWERED, "ChargePayment": {"Throw": {"Error": "Payment.Declined", "Cause": "nsf"}}}
    result = run_local(SAGA, order(120), mocks=mocks)

    assert (result.status, result.error, result.cause) == ("FAILED", "Payment.Declined", "nsf")
    assert result.history[-1]["type"] == "ProcessFailed"


def test_the_definition_may_be_yaml_text_json_text_or_a_mapping() -> None:
    results = [
        run_local(source, order(120), mocks=ANSWERED, seed=7)
        for source in (SAGA_TEXT, json.dumps(SAGA), SAGA)
    ]
    assert {r.status for r in results} == {"SUCCEEDED"}
    assert results[0].output == results[1].output == results[2].output


def test_mocks_may_be_yaml_text() -> None:
    mocks = "ReserveInventory: {Return: {reservationId: r-1}}\nChargePayment: {Return: 2}\n"
    result = run_local(SAGA, order(120), mocks=mocks)

    assert result.status == "SUCCEEDED"
    assert result.output["payment"] == 2


def test_a_seed_repeats_ids_and_tokens() -> None:
    first, second = (run_local(SAGA, order(120), mocks=ANSWERED, seed=3) for _ in range(2))
    other = run_local(SAGA, order(120), mocks=ANSWERED, seed=4)

    assert first.process_id == second.process_id != other.process_id
    assert first.messages == second.messages != other.messages


def test_the_package_exports_the_runner() -> None:
    assert bridge.run_local is run_local
    assert bridge.LocalResult is LocalResult


# --------------------------------------------------------------------------------------------
# Retry and Catch with successive responses


RETRIED = machine(
    Charge=task(
        Retry=[{"ErrorEquals": ["Payment.Busy"], "IntervalSeconds": 5, "MaxAttempts": 2}],
        Catch=[{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Refund"}],
        ResultPath="$.charge",
        End=None,
        Next="Done",
    ),
    Done={"Type": "Succeed"},
    Refund={"Type": "Pass", "Result": "refunded", "ResultPath": "$.refund", "End": True},
)
BUSY = {"Throw": {"Error": "Payment.Busy", "Cause": "try later"}}


def test_retries_consume_the_responses_in_turn() -> None:
    result = run_local(
        RETRIED, {"id": 1}, mocks={"Charge": [BUSY, BUSY, {"Return": "ok"}]}, skip_waits=True
    )

    assert result.status == "SUCCEEDED"
    assert result.output == {"id": 1, "charge": "ok"}
    assert types(result).count("RetryScheduled") == 2
    assert types(result).count("TaskFailed") == 2
    assert len(result.messages) == 3  # the command went out once per attempt
    # The retry intervals passed on the virtual clock: 5 s, then 10 s.
    assert (at(result.history[-1]) - at(result.history[0])).total_seconds() == pytest.approx(15)


def test_the_last_response_repeats_until_retries_run_out_and_catch_takes_over() -> None:
    result = run_local(RETRIED, {"id": 1}, mocks={"Charge": [BUSY]}, skip_waits=True)

    assert result.status == "SUCCEEDED"
    assert result.output == {
        "id": 1,
        "error": {"Error": "Payment.Busy", "Cause": "try later"},
        "refund": "refunded",
    }
    assert types(result).count("TaskFailed") == 3
    assert "ErrorCaught" in types(result)


# --------------------------------------------------------------------------------------------
# Several waits open at once (Parallel branches)


def test_open_waits_are_answered_in_the_order_they_were_opened() -> None:
    definition = machine(
        Both={
            "Type": "Parallel",
            "End": True,
            "Branches": [machine(A=task()), machine(B=task())],
        }
    )
    result = run_local(definition, {}, mocks={"A": {"Return": "a"}, "B": {"Return": "b"}})

    assert result.status == "SUCCEEDED"
    assert result.output == ["a", "b"]
    answered = [entry["state"] for entry in result.history if entry["type"] == "TaskSucceeded"]
    assert answered == ["A", "B"]


def test_a_failed_branch_ends_the_waits_of_the_others() -> None:
    definition = machine(
        Both={
            "Type": "Parallel",
            "End": True,
            "Branches": [machine(A=task()), machine(B=task())],
        }
    )
    mocks = {"A": {"Throw": {"Error": "Boom", "Cause": "a"}}, "B": {"Timeout": True}}
    result = run_local(definition, {}, mocks=mocks)

    assert (result.status, result.error) == ("FAILED", "Boom")


# --------------------------------------------------------------------------------------------
# Time: Wait states, timeouts


WAITING = machine(
    Pause={"Type": "Wait", "Seconds": 3600, "Next": "Done"},
    Done={"Type": "Pass", "End": True},
)


def test_skip_waits_moves_a_virtual_clock_instead_of_sleeping() -> None:
    started = time.monotonic()
    result = run_local(WAITING, {"a": 1}, skip_waits=True)

    assert time.monotonic() - started < 1
    assert result.status == "SUCCEEDED"
    assert result.output == {"a": 1}
    assert "WaitStarted" in types(result) and "WaitEnded" in types(result)
    assert (at(result.history[-1]) - at(result.history[0])).total_seconds() == pytest.approx(3600)


def test_without_skip_waits_a_wait_takes_real_time() -> None:
    definition = machine(Pause={"Type": "Wait", "Seconds": 1, "End": True})
    started = time.monotonic()
    result = run_local(definition, {})

    assert time.monotonic() - started >= 1
    assert result.status == "SUCCEEDED"


def test_a_task_never_answered_times_out() -> None:
    definition = machine(Call=task(TimeoutSeconds=60))
    result = run_local(definition, {}, mocks={"Call": {"Timeout": True}}, skip_waits=True)

    assert (result.status, result.error) == ("FAILED", "States.Timeout")
    assert "TaskTimedOut" in types(result)


def test_a_task_never_answered_misses_its_heartbeat_first() -> None:
    definition = machine(Call=task(TimeoutSeconds=60, HeartbeatSeconds=10))
    result = run_local(definition, {}, mocks={"Call": {"Timeout": True}}, skip_waits=True)

    assert (result.status, result.error) == ("FAILED", "States.HeartbeatTimeout")


def test_a_timed_out_task_can_be_caught() -> None:
    definition = machine(
        Call=task(
            TimeoutSeconds=60,
            Catch=[{"ErrorEquals": ["States.Timeout"], "Next": "Late"}],
            End=None,
            Next="Never",
        ),
        Never={"Type": "Succeed"},
        Late={"Type": "Fail", "Error": "Too.Late"},
    )
    result = run_local(definition, {}, mocks={"Call": {"Timeout": True}}, skip_waits=True)

    assert (result.status, result.error) == ("FAILED", "Too.Late")


def test_the_definition_timeout_times_the_process_out() -> None:
    definition = {**machine(Call=task()), "TimeoutSeconds": 30}
    result = run_local(definition, {}, mocks={"Call": {"Timeout": True}}, skip_waits=True)

    assert (result.status, result.error) == ("TIMED_OUT", "States.Timeout")
    assert result.history[-1]["type"] == "ProcessTimedOut"


def test_an_approval_never_decided_times_out() -> None:
    definition = machine(Ask=task(APPROVAL, TimeoutSeconds=600))
    result = run_local(definition, {}, mocks={"Ask": {"Timeout": True}}, skip_waits=True)

    assert (result.status, result.error) == ("FAILED", "States.Timeout")


# --------------------------------------------------------------------------------------------
# Runs that cannot go on: Local.* errors, never retried or caught


def test_a_waiting_task_without_a_mock_fails_the_run_with_local_no_mock() -> None:
    result = run_local(SAGA, order(120), mocks={"ReserveInventory": {"Return": {}}})

    assert result.status == "FAILED"
    assert result.error == NO_MOCK == "Local.NoMock"
    assert result.cause is not None and "ChargePayment" in result.cause
    assert result.history[-1]["type"] == "LocalRunFailed"
    assert result.history[-1]["state"] == "ChargePayment"


def test_local_no_mock_is_not_caught_by_the_definition() -> None:
    definition = machine(
        Call=task(Catch=[{"ErrorEquals": ["States.ALL"], "Next": "Handled"}], End=None, Next="X"),
        X={"Type": "Succeed"},
        Handled={"Type": "Succeed"},
    )
    result = run_local(definition, {})

    assert (result.status, result.error) == ("FAILED", NO_MOCK)
    assert "ErrorCaught" not in types(result)


def test_an_approval_without_a_mock_fails_with_local_no_mock() -> None:
    result = run_local(machine(Ask=task(APPROVAL)), {})

    assert (result.status, result.error) == ("FAILED", NO_MOCK)
    assert result.cause is not None and "Ask" in result.cause


def test_a_wait_nothing_will_end_is_reported_as_stuck() -> None:
    result = run_local(machine(Call=task()), {}, mocks={"Call": {"Timeout": True}})

    assert (result.status, result.error) == ("FAILED", STUCK)
    assert result.cause is not None and "Call" in result.cause


def test_a_process_that_never_ends_stops_after_max_steps() -> None:
    definition = machine(
        Poll=task(ResultPath="$.poll", End=None, Next="Pause"),
        Pause={"Type": "Wait", "Seconds": 60, "Next": "Poll"},
    )
    result = run_local(
        definition, {}, mocks={"Poll": {"Return": "pending"}}, skip_waits=True, max_steps=50
    )

    assert (result.status, result.error) == ("FAILED", TOO_MANY_STEPS)


def test_fire_and_forget_sends_need_no_mock() -> None:
    result = run_local(machine(Send=task(SEND, ResultPath="$.sent")), {"x": 1})

    assert result.status == "SUCCEEDED"
    assert result.output["sent"]["Topic"] == "t"
    assert [m["value"] for m in result.messages] == [{"hello": 1}]


# --------------------------------------------------------------------------------------------
# Invalid definitions and mocks fail before anything runs


def test_a_bad_definition_raises_definition_error_naming_the_state() -> None:
    broken = machine(Call={"Type": "Task", "Resource": "arn:aws:lambda:nope", "End": True})
    with pytest.raises(DefinitionError) as caught:
        run_local(broken, {})
    assert any("States.Call.Resource" in problem for problem in caught.value.problems)


@pytest.mark.parametrize("text", ["StartAt: [unclosed", "- just\n- a list\n"])
def test_definition_text_that_is_not_an_object_raises_definition_error(text: str) -> None:
    with pytest.raises(DefinitionError):
        run_local(text, {})


@pytest.mark.parametrize(
    ("mocks", "expected"),
    [
        ({"Nowhere": {"Return": 1}}, "Nowhere: no state of that name"),
        ({"CheckAmount": {"Return": 1}}, "CheckAmount: only tasks that wait"),
        ({"CompleteOrder": {"Return": 1}}, "CompleteOrder: only tasks that wait"),
        ({"ReserveInventory": {"Retrun": 1}}, "ReserveInventory.Retrun: is not a field"),
        ({"ReserveInventory": {}}, "ReserveInventory: a response needs exactly one"),
        (
            {"ReserveInventory": {"Return": 1, "Throw": {"Error": "E"}}},
            "ReserveInventory: a response needs exactly one",
        ),
        ({"ReserveInventory": [{"Throw": {"Cause": "c"}}]}, "ReserveInventory[0].Throw.Error"),
        ({"ReserveInventory": []}, "ReserveInventory: needs at least one response"),
        ({"ReserveInventory": "yes"}, "ReserveInventory: must be a response object or a list"),
        ({"ReserveInventory": {"Timeout": False}}, "ReserveInventory.Timeout: "),
        ({"ApproveOrder": {"Throw": {"Error": "E"}}}, "ApproveOrder.Throw: an approval is decided"),
        ({"ApproveOrder": {"Return": {"outcome": "MAYBE"}}}, "ApproveOrder.Return.outcome"),
        ({"ApproveOrder": {"Return": "APPROVED"}}, "ApproveOrder.Return: must be an object"),
        ("- a list", "the mocks must be a JSON/YAML object"),
    ],
)
def test_invalid_mocks_raise_mocks_error_naming_the_state(mocks: Any, expected: str) -> None:
    with pytest.raises(MocksError) as caught:
        run_local(SAGA, order(120), mocks=mocks)
    assert any(problem.startswith(expected) for problem in caught.value.problems), (
        caught.value.problems
    )
