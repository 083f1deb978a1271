"""Unit tests for bridge.asl.interpreter: task timeouts and heartbeats, Retry and Catch, each
driven through ``step`` with the driver of tests/unit/driver.py."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from bridge.asl import errors
from bridge.asl.effects import (
    CancelTimer,
    CloseWait,
    ExpectCallback,
    SendMessage,
    StartTimer,
)
from bridge.asl.inputs import (
    TaskFailed,
    TaskHeartbeat,
    TaskSucceeded,
    TimerFired,
)
from bridge.asl.interpreter import Step
from bridge.asl.model import Definition
from bridge.asl.process import ProcessStatus, Wait
from tests.unit.driver import (
    T0,
    Driver,
    assert_rejected,
    callback_task,
    machine,
    of_type,
    one,
    round_trip,
    start_saga,
)

# --------------------------------------------------------------------------------------------
# Timeouts and heartbeats


def test_a_task_timeout_fails_with_states_timeout() -> None:
    run, started = start_saga()
    timer = one(started.effects, StartTimer)
    assert timer.due_at == T0 + timedelta(seconds=86400)
    wait = run.wait

    fired = run.apply(TimerFired(timer.timer_id), after=86400)

    assert CloseWait(wait.id, wait.kind) in fired.effects
    assert run.running.status is ProcessStatus.FAILED
    assert run.running.error == errors.TIMEOUT == "States.Timeout"
    assert "ReserveInventory" in (run.running.cause or "")
    # The callback arriving after the timeout finds nothing to answer.
    assert_rejected(run.offer(TaskSucceeded(wait.id, {})), run.running)


def test_a_caught_timeout_goes_to_the_catcher_with_the_error_at_its_result_path() -> None:
    definition = machine(
        {
            "Work": callback_task(
                TimeoutSeconds=60,
                Catch=[
                    {"ErrorEquals": ["States.Timeout"], "Next": "Recover", "ResultPath": "$.error"}
                ],
                Next="Done",
            ),
            "Recover": {"Type": "Pass", "End": True},
            "Done": {"Type": "Succeed"},
        }
    )
    run = Driver(definition)
    started = run.start({"x": 1})
    assert one(started.effects, StartTimer).due_at == T0 + timedelta(seconds=60)

    run.apply(TimerFired(run.wait.timeout_timer or ""), after=60)

    process = run.running
    assert process.status is ProcessStatus.SUCCEEDED
    assert process.output == {
        "x": 1,
        "error": {"Error": "States.Timeout", "Cause": "State Work exceeded its TimeoutSeconds"},
    }
    assert run.history_types("ErrorCaught") == ["Work"]
    assert run.history_types("StateEntered") == ["Work", "Recover"]


def heartbeat_machine() -> Definition:
    return machine({"Work": callback_task(TimeoutSeconds=100, HeartbeatSeconds=10)})


def test_a_heartbeat_restarts_the_heartbeat_timer() -> None:
    run = Driver(heartbeat_machine())
    started = run.start({})
    wait = run.wait
    assert wait.heartbeat_seconds == 10
    assert StartTimer(wait.heartbeat_timer or "", T0 + timedelta(seconds=10)) in started.effects
    assert StartTimer(wait.timeout_timer or "", T0 + timedelta(seconds=100)) in started.effects

    beat = run.apply(TaskHeartbeat(wait.id), after=7)

    new_timer = run.wait.heartbeat_timer
    assert new_timer not in (None, wait.heartbeat_timer)
    assert beat.effects == (
        CancelTimer(wait.heartbeat_timer or ""),
        StartTimer(new_timer or "", T0 + timedelta(seconds=17)),
    )
    assert run.wait.id == wait.id
    assert run.wait.timeout_timer == wait.timeout_timer
    assert run.running.status is ProcessStatus.RUNNING
    # The replaced heartbeat timer no longer counts.
    assert_rejected(run.offer(TimerFired(wait.heartbeat_timer or "")), run.running)


def test_a_missed_heartbeat_fails_with_states_heartbeat_timeout() -> None:
    run = Driver(heartbeat_machine())
    run.start({})
    run.apply(TaskHeartbeat(run.wait.id), after=7)
    wait = run.wait

    missed = run.apply(TimerFired(wait.heartbeat_timer or ""), after=10)

    assert CloseWait(wait.id, wait.kind) in missed.effects
    assert CancelTimer(wait.timeout_timer or "") in missed.effects
    assert run.running.status is ProcessStatus.FAILED
    assert run.running.error == errors.HEARTBEAT_TIMEOUT == "States.HeartbeatTimeout"


# --------------------------------------------------------------------------------------------
# Retry and Catch


def retry_machine(*, catch: bool) -> Definition:
    work = callback_task(
        Retry=[
            {
                "ErrorEquals": ["Work.Busy"],
                "IntervalSeconds": 2,
                "BackoffRate": 3,
                "MaxAttempts": 3,
                "MaxDelaySeconds": 10,
            }
        ],
        Next="Done",
    )
    states: dict[str, Any] = {"Work": work, "Done": {"Type": "Succeed"}}
    if catch:
        work["Catch"] = [{"ErrorEquals": ["States.ALL"], "Next": "Recover", "ResultPath": "$.e"}]
        states["Recover"] = {"Type": "Pass", "End": True}
    return machine(states)


def fail_and_retry(run: Driver, expected_delay: float) -> Step:
    """Fail the current callback with Work.Busy; check the retry timer; fire it."""
    failed = run.apply(TaskFailed(run.wait.id, "Work.Busy", "try later"), after=1)
    timer = one(failed.effects, StartTimer)
    assert timer.due_at == run.now + timedelta(seconds=expected_delay)
    assert of_type(failed.effects, SendMessage) == []
    assert run.wait == Wait(id=timer.timer_id, kind="retry", timer=timer.timer_id)
    assert run.running.status is ProcessStatus.RUNNING
    assert round_trip(run.running) == run.running  # attempts survive the store
    return run.apply(TimerFired(timer.timer_id), after=expected_delay)


def test_retry_backs_off_caps_the_delay_and_sends_a_new_token_each_attempt() -> None:
    run = Driver(retry_machine(catch=False))
    first = run.start({"job": 1})
    tokens = [one(first.effects, ExpectCallback).token]
    assert one(first.effects, SendMessage).value["attempt"] == 0

    # IntervalSeconds * BackoffRate ** n: 2, 6, then 18 capped by MaxDelaySeconds to 10.
    for attempt, delay in enumerate([2, 6, 10], start=1):
        resent = fail_and_retry(run, delay)
        expect = one(resent.effects, ExpectCallback)
        message = one(resent.effects, SendMessage)
        assert message.topic == "work.commands"
        assert message.value == {"taskToken": expect.token, "attempt": attempt}
        assert run.wait.id == expect.wait_id
        tokens.append(expect.token)
    assert len(set(tokens)) == 4

    exhausted = run.apply(TaskFailed(run.wait.id, "Work.Busy", "still busy"))
    assert of_type(exhausted.effects, StartTimer) == []
    assert run.running.status is ProcessStatus.FAILED
    assert run.running.error == "Work.Busy"
    assert run.running.cause == "still busy"


def test_after_max_attempts_the_catch_applies() -> None:
    run = Driver(retry_machine(catch=True))
    run.start({"job": 1})
    for delay in (2, 6, 10):
        fail_and_retry(run, delay)

    run.apply(TaskFailed(run.wait.id, "Work.Busy", "still busy"))

    assert run.running.status is ProcessStatus.SUCCEEDED
    assert run.running.output == {"job": 1, "e": {"Error": "Work.Busy", "Cause": "still busy"}}


def test_a_success_after_a_retry_continues_normally() -> None:
    run = Driver(retry_machine(catch=False))
    run.start({"job": 1})
    fail_and_retry(run, 2)

    run.apply(TaskSucceeded(run.wait.id, {"ok": True}))

    assert run.running.status is ProcessStatus.SUCCEEDED
    assert run.running.output == {"ok": True}


def test_an_error_no_retrier_matches_goes_straight_to_the_catch() -> None:
    run = Driver(retry_machine(catch=True))
    run.start({"job": 1})

    caught = run.apply(TaskFailed(run.wait.id, "Work.Broken", "for good"))

    assert of_type(caught.effects, StartTimer) == []
    assert run.running.output == {"job": 1, "e": {"Error": "Work.Broken", "Cause": "for good"}}


def retry_all_machine() -> Definition:
    return machine(
        {
            "Work": callback_task(
                Retry=[{"ErrorEquals": ["States.ALL"], "IntervalSeconds": 5}],
                OutputPath="$.needed",
            )
        }
    )


def test_states_all_retries_custom_errors() -> None:
    run = Driver(retry_all_machine())
    run.start({})

    failed = run.apply(TaskFailed(run.wait.id, "Custom.Error", "custom"))

    assert one(failed.effects, StartTimer).due_at == run.now + timedelta(seconds=5)
    assert run.wait.kind == "retry"


def test_states_all_does_not_retry_states_runtime() -> None:
    run = Driver(retry_all_machine())
    run.start({})

    # The result lacks $.needed, so OutputPath raises States.Runtime in the interpreter.
    result = run.apply(TaskSucceeded(run.wait.id, {"other": 1}))

    assert of_type(result.effects, StartTimer) == []
    assert run.running.status is ProcessStatus.FAILED
    assert run.running.error == errors.RUNTIME


def test_states_all_does_not_catch_states_runtime() -> None:
    definition = machine(
        {
            "Work": callback_task(
                OutputPath="$.needed",
                Catch=[{"ErrorEquals": ["States.ALL"], "Next": "Recover"}],
            ),
            "Recover": {"Type": "Pass", "End": True},
        }
    )
    run = Driver(definition)
    run.start({})

    run.apply(TaskSucceeded(run.wait.id, {"other": 1}))

    assert run.running.status is ProcessStatus.FAILED
    assert run.running.error == errors.RUNTIME
    assert run.history_types("StateEntered") == ["Work"]


def test_an_answer_after_the_deadline_is_refused_even_before_the_timer_fires() -> None:
    run, _ = start_saga(120)
    wait = run.wait
    late = run.offer(TaskSucceeded(wait.id, {"reserved": True}), after=86_400)
    assert late.rejected and "deadline" in late.rejected
    assert_rejected(late, run.running)
    assert wait.timeout_timer is not None
    run.apply(TimerFired(wait.timeout_timer))
    assert run.running.status is ProcessStatus.FAILED
    assert run.running.error == errors.TIMEOUT
