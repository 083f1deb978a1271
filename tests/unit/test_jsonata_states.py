"""JSONata as the query language of states: Arguments, Output, Assign, Condition, Items."""

from __future__ import annotations

from typing import Any

import pytest

from bridge import run_local
from bridge.asl.errors import DefinitionError
from bridge.asl.loading import parse_definition

TOKEN_TASK = {
    "Type": "Task",
    "Resource": "bridge:kafka:send.waitForTaskToken",
    "Arguments": {
        "Topic": "work",
        "Message": {"token": "{% $states.context.Task.Token %}", "n": "{% $states.input.n %}"},
    },
}


def jsonata(states: dict[str, Any], start: str) -> dict[str, Any]:
    return {"QueryLanguage": "JSONata", "StartAt": start, "States": states}


def test_pass_output_and_assign_see_the_values_on_entry() -> None:
    result = run_local(
        jsonata(
            {
                "Init": {"Type": "Pass", "Assign": {"x": 1, "y": 2}, "Next": "Swap"},
                "Swap": {
                    "Type": "Pass",
                    "Assign": {"x": "{% $y %}", "y": "{% $x %}"},
                    "Output": {"sum": "{% $x + $y + $states.input.n %}", "x": "{% $x %}"},
                    "End": True,
                },
            },
            "Init",
        ),
        {"n": 10},
    )
    assert result.status == "SUCCEEDED"
    assert result.output == {"sum": 13, "x": 1}


def test_task_arguments_output_and_result() -> None:
    result = run_local(
        jsonata(
            {
                "Work": {
                    **TOKEN_TASK,
                    "Assign": {"receipt": "{% $states.result.id %}"},
                    "Output": {"id": "{% $states.result.id %}", "n": "{% $states.input.n %}"},
                    "Next": "Done",
                },
                "Done": {"Type": "Succeed", "Output": "{% $receipt & '!' %}"},
            },
            "Work",
        ),
        {"n": 3},
        mocks={"Work": {"Return": {"id": "r-9"}}},
    )
    assert result.status == "SUCCEEDED", result.cause
    assert result.output == "r-9!"
    assert result.messages[0]["value"]["n"] == 3
    assert result.messages[0]["value"]["token"]


def test_choice_conditions_and_default() -> None:
    definition = jsonata(
        {
            "Route": {
                "Type": "Choice",
                "Choices": [
                    {
                        "Condition": "{% $states.input.amount >= 900 %}",
                        "Output": {"route": "big"},
                        "Next": "Done",
                    }
                ],
                "Default": "Done",
                "Output": {"route": "small"},
            },
            "Done": {"Type": "Succeed"},
        },
        "Route",
    )
    assert run_local(definition, {"amount": 950}).output == {"route": "big"}
    assert run_local(definition, {"amount": 5}).output == {"route": "small"}


def test_map_items_and_item_selector() -> None:
    result = run_local(
        jsonata(
            {
                "Each": {
                    "Type": "Map",
                    "Items": "{% $states.input.orders %}",
                    "ItemSelector": {
                        "index": "{% $states.context.Map.Item.Index %}",
                        "id": "{% $states.context.Map.Item.Value.id %}",
                    },
                    "ItemProcessor": {
                        "StartAt": "Echo",
                        "States": {"Echo": {"Type": "Pass", "End": True}},
                    },
                    "Output": "{% $states.result.id %}",
                    "End": True,
                }
            },
            "Each",
        ),
        {"orders": [{"id": "a"}, {"id": "b"}]},
    )
    assert result.output == ["a", "b"]


def test_catch_output_sees_the_error_and_fail_takes_expressions() -> None:
    definition = jsonata(
        {
            "Work": {
                **TOKEN_TASK,
                "Catch": [
                    {
                        "ErrorEquals": ["Boom"],
                        "Output": {"caught": "{% $states.errorOutput.Error %}"},
                        "Next": "Give up",
                    }
                ],
                "End": True,
            },
            "Give up": {
                "Type": "Fail",
                "Error": "{% 'Order.' & $states.input.caught %}",
                "Cause": "{% 'it went ' & $lowercase($states.input.caught) %}",
            },
        },
        "Work",
    )
    result = run_local(definition, {"n": 1}, mocks={"Work": {"Throw": {"Error": "Boom"}}})
    assert (result.status, result.error, result.cause) == ("FAILED", "Order.Boom", "it went boom")


def test_wait_seconds_expression_and_undefined_is_an_error() -> None:
    definition = jsonata(
        {
            "Pause": {"Type": "Wait", "Seconds": "{% $states.input.delay %}", "Next": "Done"},
            "Done": {"Type": "Pass", "Output": "{% $states.input.missing %}", "End": True},
        },
        "Pause",
    )
    result = run_local(definition, {"delay": 60}, skip_waits=True)
    assert result.status == "FAILED"
    assert result.error == "States.QueryEvaluationError"
    assert "WaitStarted" in [entry["type"] for entry in result.history]


def test_one_jsonata_state_in_a_jsonpath_definition() -> None:
    result = run_local(
        {
            "StartAt": "Old",
            "States": {
                "Old": {"Type": "Pass", "Parameters": {"v.$": "$.v"}, "Next": "New"},
                "New": {
                    "Type": "Pass",
                    "QueryLanguage": "JSONata",
                    "Output": "{% $states.input.v * 2 %}",
                    "End": True,
                },
            },
        },
        {"v": 21},
    )
    assert result.output == 42


@pytest.mark.parametrize(
    ("states", "problem"),
    [
        (
            {"A": {"Type": "Pass", "InputPath": "$.x", "End": True}},
            "States.A.InputPath: is a JSONPath field",
        ),
        (
            {"A": {"Type": "Pass", "Output": "{% $states.input. %}", "End": True}},
            "States.A.Output",
        ),
        (
            {
                "A": {
                    "Type": "Choice",
                    "Choices": [{"Variable": "$.x", "IsNull": True, "Next": "B"}],
                },
                "B": {"Type": "Succeed"},
            },
            "a JSONata choice rule needs Condition",
        ),
        (
            {"A": {"Type": "Pass", "QueryLanguage": "JSONPath", "End": True}},
            "a JSONata definition cannot have JSONPath states",
        ),
    ],
)
def test_validation_of_jsonata_states(states: dict[str, Any], problem: str) -> None:
    with pytest.raises(DefinitionError) as raised:
        parse_definition(jsonata(states, "A"), "bad")
    assert any(problem in line for line in raised.value.problems), raised.value.problems


def test_jsonata_fields_in_a_jsonpath_state_are_refused() -> None:
    with pytest.raises(DefinitionError) as raised:
        parse_definition(
            {"StartAt": "A", "States": {"A": {"Type": "Pass", "Output": {"a": 1}, "End": True}}},
            "bad",
        )
    assert "States.A.Output: is a JSONata field" in raised.value.problems[0]
