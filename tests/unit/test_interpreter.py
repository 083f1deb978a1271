"""Unit and property tests for bridge.asl.interpreter: one pure step of a process.

Every test drives ``step`` directly with a fixed clock and a counting ``Entropy`` (see
tests/unit/driver.py), and asserts on what comes back (process state, effects, history), never on
calls. The order saga example is the main fixture here: its runs, stale and misdirected inputs,
the process status table, and properties over random saga runs. Timeouts, retries and catches
are in test_interpreter_failures.py; single state types and whole-process endings in
test_interpreter_states.py.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.asl import errors, task_tokens
from bridge.asl.effects import (
    CancelTimer,
    CloseWait,
    ExpectCallback,
    RequestApproval,
    SendMessage,
    StartTimer,
)
from bridge.asl.inputs import (
    ApprovalDecided,
    Start,
    Stop,
    TaskFailed,
    TaskHeartbeat,
    TaskSucceeded,
    TimerFired,
)
from bridge.asl.interpreter import step
from bridge.asl.process import ProcessStatus, Wait
from tests.unit.driver import (
    ITEMS,
    T0,
    CountingEntropy,
    Driver,
    assert_rejected,
    drive_saga,
    finished_saga,
    of_type,
    one,
    order,
    round_trip,
    saga,
    start_saga,
)

# --------------------------------------------------------------------------------------------
# The order saga


def test_saga_below_the_threshold_reserves_charges_and_completes() -> None:
    run, started = start_saga(120)

    reserve = one(started.effects, SendMessage)
    expect = one(started.effects, ExpectCallback)
    timeout = one(started.effects, StartTimer)
    assert reserve.topic == "inventory.commands"
    assert reserve.key == "o-1"
    assert reserve.value == {
        "type": "ReserveInventory",
        "orderId": "o-1",
        "items": ITEMS,
        "taskToken": expect.token,
    }
    assert expect.state == "ReserveInventory"
    assert run.running.status is ProcessStatus.RUNNING
    assert run.running.correlation_key == "o-1"
    assert run.running.current_state == "ReserveInventory"
    assert run.wait == Wait(
        id=expect.wait_id,
        kind="callback",
        timeout_timer=timeout.timer_id,
        timeout_at=T0 + timedelta(seconds=86400),
        token_hash=task_tokens.token_hash(expect.token),
    )
    assert task_tokens.named(expect.token) == ("p-1", expect.wait_id)
    assert timeout.due_at == T0 + timedelta(seconds=86400)

    reserved = run.apply(TaskSucceeded(expect.wait_id, {"reservationId": "r-9"}), after=5)
    assert CloseWait(expect.wait_id, "callback") in reserved.effects
    assert CancelTimer(timeout.timer_id) in reserved.effects
    charge = one(reserved.effects, SendMessage)
    expect_payment = one(reserved.effects, ExpectCallback)
    assert charge.topic == "payments.commands"
    assert charge.key == "o-1"
    assert charge.value == {
        "type": "ChargePayment",
        "orderId": "o-1",
        "amount": 120,
        "customerId": "c-7",
        "taskToken": expect_payment.token,
    }
    assert expect_payment.token != expect.token
    assert run.running.current_state == "ChargePayment"

    charged = run.apply(TaskSucceeded(expect_payment.wait_id, {"paymentId": "pay-3"}), after=5)
    done = one(charged.effects, SendMessage)
    assert done.topic == "orders.done"
    assert done.key == "o-1"
    assert done.value == {"type": "OrderCompleted", "orderId": "o-1", "amount": 120}
    assert of_type(charged.effects, ExpectCallback) == []
    assert of_type(charged.effects, RequestApproval) == []

    process = run.running
    assert process.status is ProcessStatus.SUCCEEDED
    assert process.ended_at == T0 + timedelta(seconds=10)
    assert process.error is None
    assert process.output == {
        **order(120),
        "inventory": {"reservationId": "r-9"},
        "payment": {"paymentId": "pay-3"},
        "completed": {"MessageId": done.message_id, "Topic": "orders.done"},
    }
    assert run.history_types("StateEntered") == [
        "ReserveInventory",
        "ChargePayment",
        "CheckAmount",
        "CompleteOrder",
    ]
    assert charged.history[-1].type == "ProcessSucceeded"


@pytest.mark.parametrize("amount", [900, 900.0, 1500])
def test_saga_at_or_above_900_asks_for_approval_after_payment(amount: float) -> None:
    run, _ = start_saga(amount)
    run.apply(TaskSucceeded(run.wait.id, {"reserved": True}))
    charged = run.apply(TaskSucceeded(run.wait.id, {"charged": True}))

    request = one(charged.effects, RequestApproval)
    assert of_type(charged.effects, SendMessage) == []
    assert request.state == "ApproveOrder"
    assert request.title == f"Approve order o-1 over {amount}"
    assert request.description == "Orders of 900 or more need a human approval before they ship."
    assert request.data == {
        "orderId": "o-1",
        "customerId": "c-7",
        "amount": amount,
        "items": ITEMS,
    }
    assert run.wait.id == request.wait_id
    assert run.wait.kind == "approval"
    assert StartTimer(run.wait.timeout_timer or "", run.now + timedelta(seconds=604800)) in (
        charged.effects
    )


def test_an_approved_order_completes_with_the_decision_in_its_output() -> None:
    run, _ = start_saga(1500)
    run.apply(TaskSucceeded(run.wait.id, {"reserved": True}))
    run.apply(TaskSucceeded(run.wait.id, {"charged": True}))
    approval = run.wait

    decided = run.apply(
        ApprovalDecided(approval.id, approved=True, decided_by="alice", comment="fine"), after=60
    )

    assert CloseWait(approval.id, "approval") in decided.effects
    assert CancelTimer(approval.timeout_timer or "") in decided.effects
    assert one(decided.effects, SendMessage).topic == "orders.done"
    assert run.running.status is ProcessStatus.SUCCEEDED
    decision = run.running.output["approval"]
    assert decision["outcome"] == "APPROVED"
    assert decision["decidedBy"] == "alice"
    assert decision["decidedAt"] == "2024-05-01T12:01:00.000Z"
    assert decision["comment"] == "fine"
    assert decision["votes"] == [
        {
            "seat": "anyone",
            "decision": "approve",
            "by": "alice",
            "at": "2024-05-01T12:01:00.000Z",
            "comment": "fine",
        }
    ]


def test_a_rejected_order_fails_with_approval_rejected_naming_the_decider() -> None:
    run, _ = start_saga(1500)
    run.apply(TaskSucceeded(run.wait.id, {"reserved": True}))
    run.apply(TaskSucceeded(run.wait.id, {"charged": True}))
    approval = run.wait

    decided = run.apply(
        ApprovalDecided(approval.id, approved=False, decided_by="bob", comment="too large")
    )

    assert of_type(decided.effects, SendMessage) == []
    assert CloseWait(approval.id, "approval") in decided.effects
    process = run.running
    assert process.status is ProcessStatus.FAILED
    assert process.error == errors.APPROVAL_REJECTED == "Approval.Rejected"
    assert process.cause is not None
    assert "bob" in process.cause
    assert "too large" in process.cause
    assert process.output is None
    assert process.position is not None and process.position.wait is None


def test_a_task_failure_without_catch_fails_the_process_and_closes_the_wait() -> None:
    run, started = start_saga()
    wait = run.wait
    assert wait.timeout_timer == one(started.effects, StartTimer).timer_id

    failed = run.apply(TaskFailed(wait.id, "Inventory.OutOfStock", "sku-1 is sold out"), after=3)

    assert CloseWait(wait.id, wait.kind) in failed.effects
    assert CancelTimer(wait.timeout_timer) in failed.effects
    assert of_type(failed.effects, SendMessage) == []
    assert of_type(failed.effects, StartTimer) == []
    process = run.running
    assert process.status is ProcessStatus.FAILED
    assert process.error == "Inventory.OutOfStock"
    assert process.cause == "sku-1 is sold out"
    assert process.ended_at == T0 + timedelta(seconds=3)
    assert process.current_state == "ReserveInventory"
    assert failed.history[-1].type == "ProcessFailed"


def test_the_same_inputs_give_the_same_steps() -> None:
    """Determinism: replaying a history with the same clock and entropy repeats every step."""
    first = drive_saga(1500, approved=True)
    second = drive_saga(1500, approved=True)
    assert [applied.result for applied in first.log] == [applied.result for applied in second.log]


# --------------------------------------------------------------------------------------------
# Stale and misdirected inputs


def test_a_callback_with_the_wrong_wait_id_is_rejected_and_the_wait_still_works() -> None:
    run, _ = start_saga()
    waiting = run.running

    for event in (
        TaskSucceeded("id-999", {"reserved": True}),
        TaskFailed("id-999", "Boom"),
        TaskHeartbeat("id-999"),
        TimerFired("id-999"),
        ApprovalDecided(run.wait.id, approved=True),  # right id, but not an approval
    ):
        assert_rejected(run.offer(event), waiting)

    assert run.running is waiting
    run.apply(TaskSucceeded(run.wait.id, {"reserved": True}))
    assert run.running.current_state == "ChargePayment"


def test_inputs_for_a_wait_that_moved_on_are_rejected() -> None:
    run, _ = start_saga()
    first = run.wait
    run.apply(TaskSucceeded(first.id, {"reserved": True}))
    moved_on = run.running

    for event in (
        TaskSucceeded(first.id, {"reserved": "again"}),
        TaskFailed(first.id, "Late.Failure"),
        TaskHeartbeat(first.id),
        TimerFired(first.timeout_timer or ""),
    ):
        assert_rejected(run.offer(event), moved_on)
    assert run.running.current_state == "ChargePayment"


@pytest.mark.parametrize(
    "make_event",
    [
        lambda wait_id, timer_id: TaskSucceeded(wait_id, {}),
        lambda wait_id, timer_id: TaskFailed(wait_id, "Boom"),
        lambda wait_id, timer_id: TaskHeartbeat(wait_id),
        lambda wait_id, timer_id: ApprovalDecided(wait_id, approved=True),
        lambda wait_id, timer_id: TimerFired(timer_id),
        lambda wait_id, timer_id: Stop(),
        lambda wait_id, timer_id: Start("p-1", order()),
    ],
    ids=["succeeded", "failed", "heartbeat", "decided", "timer", "stop", "start"],
)
def test_inputs_to_an_ended_process_are_rejected(make_event: Any) -> None:
    run, _ = start_saga()
    wait = run.wait
    run.apply(TaskFailed(wait.id, "Boom"))
    ended = run.running
    assert ended.status is ProcessStatus.FAILED

    assert_rejected(run.offer(make_event(wait.id, wait.timeout_timer)), ended)


def test_start_for_an_existing_process_is_rejected() -> None:
    run, _ = start_saga()
    running = run.running
    assert_rejected(run.offer(Start("p-1", order(5))), running)

    done = finished_saga()
    assert_rejected(done.offer(Start("p-1", order(5))), done.running)


def test_inputs_without_a_process_are_rejected() -> None:
    result = step(saga(), None, TaskSucceeded("id-1", {}), T0, CountingEntropy())
    assert_rejected(result, None)


# --------------------------------------------------------------------------------------------
# Process status


@pytest.mark.parametrize("target", list(ProcessStatus))
@pytest.mark.parametrize("source", list(ProcessStatus))
def test_status_transition_table(source: ProcessStatus, target: ProcessStatus) -> None:
    redrivable = {ProcessStatus.FAILED, ProcessStatus.TIMED_OUT, ProcessStatus.ABORTED}
    allowed = (source is ProcessStatus.RUNNING and target is not ProcessStatus.RUNNING) or (
        source in redrivable and target is ProcessStatus.RUNNING
    )
    assert source.can_become(target) is allowed
    assert source.ended is (source is not ProcessStatus.RUNNING)


def test_every_point_of_the_saga_round_trips_through_json() -> None:
    for run in (drive_saga(120), drive_saga(1500, approved=True), drive_saga(1500, approved=False)):
        processes = [applied.result.process for applied in run.log]
        assert len(processes) >= 3
        for process in processes:
            assert process is not None
            assert round_trip(process) == process


# --------------------------------------------------------------------------------------------
# Properties

amounts = st.integers(min_value=0, max_value=2000) | st.floats(
    min_value=0, max_value=2000, allow_nan=False
)
#: Text as the edges let it in: no NUL characters (a value holding one is refused before it
#: reaches a process; a step that makes one fails, see test_an_output_with_a_nul_character...).
stored_text = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53), max_value=2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(stored_text, max_size=8),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.text(stored_text, max_size=6), children, max_size=3)
    ),
    max_leaves=10,
)


@st.composite
def saga_runs(draw: st.DrawFn) -> tuple[Driver, float, bool]:
    amount = draw(amounts)
    approved = draw(st.booleans())
    run = drive_saga(
        amount,
        approved=approved,
        inventory=draw(json_values),
        payment=draw(json_values),
        pause=draw(st.integers(min_value=0, max_value=86_399)),
    )
    return run, amount, approved


@settings(deadline=None)
@given(saga_runs())
def test_the_saga_succeeds_iff_approved_or_below_900(case: tuple[Driver, float, bool]) -> None:
    run, amount, approved = case
    asked = any(of_type(applied.result.effects, RequestApproval) for applied in run.log)
    assert asked is (amount >= 900)
    expected = ProcessStatus.SUCCEEDED if amount < 900 or approved else ProcessStatus.FAILED
    assert run.running.status is expected


@settings(deadline=None)
@given(saga_runs())
def test_step_never_mutates_the_process_it_is_given(case: tuple[Driver, float, bool]) -> None:
    run, _, _ = case
    for applied in run.log:
        if applied.before is not None:
            assert applied.before.model_dump() == applied.before_dump


@settings(deadline=None)
@given(saga_runs())
def test_every_token_is_in_exactly_one_message(case: tuple[Driver, float, bool]) -> None:
    run, _, _ = case
    effects = [effect for applied in run.log for effect in applied.result.effects]
    messages = [set(strings_in(message.value)) for message in of_type(effects, SendMessage)]
    expected = of_type(effects, ExpectCallback)
    assert expected
    for callback in expected:
        assert sum(callback.token in strings for strings in messages) == 1


def strings_in(value: Any) -> Iterable[str]:
    """Every string anywhere in a JSON value, keys included."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from strings_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings_in(item)


@settings(deadline=None)
@given(saga_runs())
def test_history_is_stamped_with_the_step_time(case: tuple[Driver, float, bool]) -> None:
    run, _, _ = case
    for applied in run.log:
        assert applied.result.history
        assert {entry.at for entry in applied.result.history} == {applied.now}


@settings(deadline=None)
@given(saga_runs())
def test_every_process_round_trips_through_json(case: tuple[Driver, float, bool]) -> None:
    run, _, _ = case
    for applied in run.log:
        assert applied.result.process is not None
        assert round_trip(applied.result.process) == applied.result.process
