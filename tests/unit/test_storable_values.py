"""The core bounds what it keeps: a state's output or assigned variables that could not be
stored (too deep, a NUL character, a lone surrogate) fail the step with a named error, instead of
being found by the database when the batch is written."""

from __future__ import annotations

from typing import Any

import pytest

from bridge.asl import limits
from bridge.local import run_local


def _pass(field: str, value: Any) -> dict[str, Any]:
    return {
        "StartAt": "A",
        "States": {
            "A": {"Type": "Pass", field: value, "Next": "B"},
            "B": {"Type": "Pass", "End": True},
        },
    }


@pytest.mark.parametrize(
    ("field", "value", "error", "cause"),
    [
        ("Parameters", {"v.$": "States.Base64Decode('AA==')"}, "States.Runtime", "NUL character"),
        ("Assign", {"v.$": "States.Base64Decode('AA==')"}, "States.Runtime", "assigned variables"),
        (
            "Parameters",
            {"v.$": "States.StringToJson($.deep)"},
            "States.DataLimitExceeded",
            "nested deeper than 128",
        ),
    ],
)
def test_an_unstorable_value_fails_the_step(field: str, value: Any, error: str, cause: str) -> None:
    deep = "[" * 130 + "]" * 130
    result = run_local(_pass(field, value), {"deep": deep})
    assert result.status == "FAILED"
    assert result.error == error
    assert cause in (result.cause or "")


def test_values_within_the_bounds_pass() -> None:
    result = run_local(
        _pass("Parameters", {"v.$": "States.StringToJson($.deep)"}), {"deep": "[[1]]"}
    )
    assert result.status == "SUCCEEDED"


def test_the_check_is_iterative_and_names_the_bound() -> None:
    value: Any = "x"
    for _ in range(5000):
        value = {"a": value}
    assert limits.problem(value) == "is nested deeper than 64 levels"
    assert (
        limits.problem(["ok", {"k\x00": 1}])
        == "holds a NUL character (\\u0000), which cannot be stored"
    )
    with pytest.raises(limits.Unstorable, match="the body is nested deeper than 64 levels"):
        limits.loads("[" * 100_000)
    with pytest.raises(limits.Unstorable, match="not UTF-8"):
        limits.loads(b"\xff")


def test_numbers_that_json_cannot_carry_are_refused() -> None:
    """NaN and Infinity: Python's json reads and writes them, PostgreSQL and Kafka consumers
    do not; refused at the edge and in what a step produces, the same on every database."""
    not_finite = "holds a number that is not finite (NaN or Infinity), which JSON cannot carry"
    assert limits.problem(float("nan")) == not_finite
    assert limits.problem({"a": [1.5, float("inf")]}) == not_finite
    assert limits.problem({"a": [1.5, -2, 10**30]}) is None
    for text in ("NaN", '{"a": [Infinity]}', '{"a": -Infinity}'):
        with pytest.raises(limits.Unstorable, match="not JSON"):
            limits.loads(text)
