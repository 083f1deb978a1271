"""Express processes: few history entries, a five-minute ceiling, the same semantics otherwise."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from bridge.asl.effects import StartTimer
from bridge.asl.errors import DefinitionError
from bridge.asl.inputs import TaskFailed, TimerFired
from bridge.asl.loading import parse_definition
from bridge.asl.model import EXPRESS_HISTORY, SEND_WAIT
from bridge.asl.process import ProcessStatus
from tests.unit.driver import T0, Driver


def express(states: dict[str, Any], **extra: Any) -> dict[str, Any]:
    first = next(iter(states))
    return {"ProcessType": "EXPRESS", "StartAt": first, "States": states, **extra}


SHAPE = {
    "Shape": {"Type": "Pass", "Parameters": {"sum.$": "States.MathAdd($.a, $.b)"}, "Next": "Pick"},
    "Pick": {
        "Type": "Choice",
        "Choices": [{"Variable": "$.sum", "NumericGreaterThan": 10, "Next": "Big"}],
        "Default": "Small",
    },
    "Big": {"Type": "Pass", "Result": "big", "End": True},
    "Small": {"Type": "Pass", "Result": "small", "End": True},
}


def test_express_keeps_only_start_and_end_and_computes_the_same() -> None:
    standard = Driver(parse_definition({"StartAt": "Shape", "States": SHAPE}, "s"))
    fast = Driver(parse_definition(express(SHAPE), "e"))
    for driver in (standard, fast):
        driver.start({"a": 7, "b": 5})
    assert standard.running.output == fast.running.output == "big"
    assert [e.type for e in fast.log[0].result.history] == ["ProcessStarted", "ProcessSucceeded"]
    assert len(standard.log[0].result.history) > 6


def test_express_keeps_failures() -> None:
    states = {
        "Call": {
            "Type": "Task",
            "Resource": SEND_WAIT,
            "Parameters": {"Topic": "t", "Message": {"token.$": "$$.Task.Token"}},
            "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Failed"}],
            "End": True,
        },
        "Failed": {"Type": "Fail", "Error": "Order.Failed"},
    }
    driver = Driver(parse_definition(express(states), "e"))
    driver.start({})
    wait = driver.wait
    driver.apply(TaskFailed(wait.id, "Payment.Declined", "no funds"), after=1)
    kinds = [entry.type for applied in driver.log for entry in applied.result.history]
    assert kinds == ["ProcessStarted", "TaskFailed", "ErrorCaught", "ProcessFailed"], kinds
    assert set(kinds) <= EXPRESS_HISTORY


def test_express_ends_timed_out_after_five_minutes_at_most() -> None:
    states = {"Nap": {"Type": "Wait", "Seconds": 3600, "End": True}}
    driver = Driver(parse_definition(express(states), "e"))
    started = driver.start({})
    [limit, nap] = sorted(
        (e for e in started.effects if isinstance(e, StartTimer)), key=lambda e: e.due_at
    )
    assert limit.due_at == T0 + timedelta(minutes=5) and nap.due_at == T0 + timedelta(hours=1)
    driver.apply(TimerFired(limit.timer_id), after=300)
    assert driver.running.status is ProcessStatus.TIMED_OUT

    shorter = Driver(parse_definition(express(states, TimeoutSeconds=30), "e"))
    timers = [e for e in shorter.start({}).effects if isinstance(e, StartTimer)]
    assert min(t.due_at for t in timers) == T0 + timedelta(seconds=30)


def test_express_refuses_a_longer_timeout() -> None:
    states = {"Done": {"Type": "Succeed"}}
    with pytest.raises(DefinitionError) as raised:
        parse_definition(express(states, TimeoutSeconds=600), "e")
    assert "EXPRESS process runs 300 seconds at most" in str(raised.value.problems)
    with pytest.raises(DefinitionError):
        parse_definition({**express(states), "ProcessType": "FAST"}, "e")
    standard = parse_definition({"StartAt": "Done", "States": states, "TimeoutSeconds": 600}, "s")
    assert not standard.express and standard.max_seconds == 600
