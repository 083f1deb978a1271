"""A process keeps its pending timers (``Process.timers``): exactly the timers its waits and its
own TimeoutSeconds still count on, each with its due time; a timer that fired, was cancelled or
belongs to an ended process is gone. The store wakes a process at ``Process.wake_at``."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.asl.effects import StartTimer
from bridge.asl.inputs import Stop, TaskHeartbeat, TaskSucceeded, TimerFired
from bridge.asl.interpreter import Step, keep_timers
from bridge.asl.process import Process, ProcessStatus, Wait
from tests.unit.driver import (
    T0,
    Driver,
    approval,
    callback_task,
    machine,
    of_type,
    round_trip,
    start_saga,
)


def waits(process: Process) -> list[Wait]:
    """The waits of the process and of its running branches."""
    found: list[Wait] = []
    stack = [process.position]
    while stack:
        position = stack.pop()
        if position is None:
            continue
        if position.wait is not None:
            found.append(position.wait)
        stack += [branch.position for branch in position.branches if branch.status == "running"]
    return found


def referenced(process: Process) -> set[str]:
    """The timers that the process's waits and its own timeout name."""
    if process.status.ended:
        return set()
    names = {process.timeout_timer} if process.timeout_timer else set()
    for wait in waits(process):
        names.update(
            name for name in (wait.timeout_timer, wait.heartbeat_timer, wait.timer) if name
        )
        if wait.ballot is not None:
            names.update(wait.ballot.reminder_timers)
            if wait.ballot.escalation_timer:
                names.add(wait.ballot.escalation_timer)
    return names


def test_a_task_keeps_its_timeout_until_it_is_answered() -> None:
    run, _ = start_saga()
    wait = run.wait
    assert wait.timeout_timer is not None and wait.timeout_at is not None
    assert run.running.timers == {wait.timeout_timer: wait.timeout_at}
    assert run.running.wake_at == wait.timeout_at

    run.apply(TaskSucceeded(wait.id, {"reserved": True}), after=1)

    following = run.wait
    assert following.timeout_timer is not None
    assert run.running.timers == {following.timeout_timer: following.timeout_at}
    # It survives the store's round trip.
    assert round_trip(run.running).timers == run.running.timers


def test_a_fired_timer_is_gone_and_an_ended_process_has_none() -> None:
    run, _ = start_saga()
    timer = run.wait.timeout_timer
    assert timer is not None
    ended = run.apply(TimerFired(timer), after=3600)
    assert ended.process is not None and ended.process.status.ended
    assert ended.process.timers == {} and ended.process.wake_at is None


def test_a_wait_state_and_the_process_timeout_wake_at_the_earliest() -> None:
    run = Driver(
        machine(
            {"Pause": {"Type": "Wait", "Seconds": 30, "End": True}},
            TimeoutSeconds=600,
        )
    )
    started = run.start({})
    due = {timer.timer_id: timer.due_at for timer in of_type(started.effects, StartTimer)}
    assert run.running.timers == due
    assert sorted(due.values()) == [T0 + timedelta(seconds=30), T0 + timedelta(seconds=600)]
    assert run.running.wake_at == T0 + timedelta(seconds=30)
    assert run.wait.timer is not None
    done = run.apply(TimerFired(run.wait.timer), after=30)
    assert done.process is not None and done.process.status is ProcessStatus.SUCCEEDED
    assert done.process.timers == {}


def test_a_reminder_fires_once_and_the_approval_keeps_its_timeout() -> None:
    run = approval({"Assignees": ["ann", "bob"], "Rule": "All", "RemindBeforeSeconds": 600})
    run.start({})
    ballot = run.wait.ballot
    assert ballot is not None
    (reminder,) = ballot.reminder_timers
    timeout = run.wait.timeout_timer
    assert timeout is not None and set(run.running.timers) == {reminder, timeout}

    run.apply(TimerFired(reminder), after=3000)

    assert set(run.running.timers) == {timeout}
    assert run.running.wake_at == run.wait.timeout_at


def test_a_refused_step_changes_no_timer() -> None:
    run, _ = start_saga()
    before = run.running
    refused = run.offer(TaskSucceeded("no-such-wait", {}))
    assert refused.rejected is not None
    assert keep_timers(TimerFired("x"), refused) is refused
    assert run.running.timers == before.timers


def test_spending_a_timer_takes_only_that_one() -> None:
    process = Process(
        id="p",
        definition="d",
        version=1,
        started_at=T0,
        timers={"a": T0, "b": T0 + timedelta(seconds=1)},
    )
    assert process.spend_timer("a").timers == {"b": T0 + timedelta(seconds=1)}
    assert process.spend_timer("zzz") is process


# --------------------------------------------------------------------------------------------
# Any sequence of answers, heartbeats, fired timers and stops


HEARTBEATING = machine(
    {
        "Both": {
            "Type": "Parallel",
            "Branches": [
                {
                    "StartAt": "Work",
                    "States": {
                        "Work": callback_task(TimeoutSeconds=300, HeartbeatSeconds=60, Next="Rest"),
                        "Rest": {"Type": "Wait", "Seconds": 45, "End": True},
                    },
                },
                {
                    "StartAt": "Other",
                    "States": {"Other": callback_task(TimeoutSeconds=120)},
                },
            ],
            "Next": "Last",
        },
        "Last": callback_task(TimeoutSeconds=30),
    },
    TimeoutSeconds=3600,
)

ACTIONS = st.lists(
    st.tuples(
        st.sampled_from(["answer", "heartbeat", "fire-earliest", "fire-any", "stop"]),
        st.integers(min_value=0, max_value=7),
        st.integers(min_value=0, max_value=400),
    ),
    max_size=14,
)


@settings(max_examples=150, deadline=None)
@given(ACTIONS)
def test_the_pending_timers_are_exactly_those_the_process_counts_on(
    actions: list[tuple[str, int, int]],
) -> None:
    run = Driver(HEARTBEATING)
    check(run.start({}))
    for action, pick, seconds in actions:
        process = run.running
        if process.status.ended:
            break
        open_waits = waits(process)
        if action in ("answer", "heartbeat") and open_waits:
            wait = open_waits[pick % len(open_waits)]
            event = TaskSucceeded(wait.id, {}) if action == "answer" else TaskHeartbeat(wait.id)
        elif action == "fire-earliest" and process.timers:
            event = TimerFired(min(process.timers, key=lambda name: process.timers[name]))
        elif action == "fire-any" and process.timers:
            event = TimerFired(sorted(process.timers)[pick % len(process.timers)])
        elif action == "stop":
            event = Stop()
        else:
            continue
        result = run.offer(event, after=seconds)
        if result.rejected is None:
            check(result)
            if isinstance(event, TimerFired):
                assert result.process is not None
                assert event.timer_id not in result.process.timers


def check(result: Step) -> None:
    process = result.process
    assert process is not None
    assert set(process.timers) == referenced(process)
    for wait in waits(process):
        if wait.timeout_timer is not None and wait.timeout_at is not None:
            assert process.timers[wait.timeout_timer] == wait.timeout_at
        if wait.heartbeat_timer is not None and wait.heartbeat_at is not None:
            assert process.timers[wait.heartbeat_timer] == wait.heartbeat_at
    assert process.wake_at == (min(process.timers.values()) if process.timers else None)
