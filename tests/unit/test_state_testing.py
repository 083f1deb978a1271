"""TestState: one state run on its own, answered as AWS Step Functions' TestState API does."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bridge.test_state import Mock, StateTestError, run_test_state

CHARGE: dict[str, Any] = {
    "Type": "Task",
    "Resource": "bridge:kafka:send.waitForTaskToken",
    "InputPath": "$.order",
    "Parameters": {"Topic": "payments", "Message": {"id.$": "$.id", "token.$": "$$.Task.Token"}},
    "ResultSelector": {"charged.$": "$.amount"},
    "ResultPath": "$.payment",
    "Retry": [{"ErrorEquals": ["Busy"], "IntervalSeconds": 2, "MaxAttempts": 1}],
    "Catch": [{"ErrorEquals": ["Declined"], "Next": "Refund", "ResultPath": "$.error"}],
    "Next": "Ship",
}
ORDER = {"order": {"id": "o1"}, "note": "x"}


def test_a_task_with_a_mocked_result_succeeds_with_its_output_and_next_state() -> None:
    answer = run_test_state(CHARGE, input=ORDER, mock=Mock(result={"amount": 5}))

    assert answer.status == "SUCCEEDED"
    assert answer.output == {**ORDER, "payment": {"charged": 5}}
    assert answer.next_state == "Ship"
    assert answer.inspection_data is None  # INFO


def test_debug_shows_each_stage_of_the_data_flow() -> None:
    answer = run_test_state(
        CHARGE, input=ORDER, mock=Mock(result={"amount": 5}), inspection_level="DEBUG"
    )

    data = answer.inspection_data
    assert data is not None
    assert data["input"] == ORDER
    assert data["afterInputPath"] == {"id": "o1"}
    assert data["afterParameters"]["Message"]["id"] == "o1"
    assert data["result"] == {"amount": 5}
    assert data["afterResultSelector"] == {"charged": 5}
    assert data["afterResultPath"] == {**ORDER, "payment": {"charged": 5}}
    shown = answer.to_dict()
    assert json.loads(shown["output"]) == answer.output
    assert json.loads(shown["inspectionData"]["afterResultSelector"]) == {"charged": 5}
    assert list(data) == [
        "input",
        "afterInputPath",
        "afterParameters",
        "result",
        "afterResultSelector",
        "afterResultPath",
    ]


def test_an_error_a_retrier_matches_is_retriable_with_its_backoff() -> None:
    answer = run_test_state(
        CHARGE, input=ORDER, mock=Mock(error="Busy", cause="later"), inspection_level="DEBUG"
    )

    assert (answer.status, answer.error, answer.cause) == ("RETRIABLE", "Busy", "later")
    assert answer.inspection_data is not None
    assert answer.inspection_data["errorDetails"] == {
        "retryIndex": 0,
        "retryBackoffIntervalSeconds": 2.0,
    }
    assert "output" not in answer.to_dict()


def test_an_error_a_catcher_matches_goes_to_its_next_state() -> None:
    answer = run_test_state(
        CHARGE, input=ORDER, mock=Mock(error="Declined", cause="no funds"), inspection_level="DEBUG"
    )

    assert answer.status == "CAUGHT_ERROR"
    assert answer.next_state == "Refund"
    assert answer.output == {**ORDER, "error": {"Error": "Declined", "Cause": "no funds"}}
    assert answer.inspection_data is not None
    assert answer.inspection_data["errorDetails"] == {"catchIndex": 0}


def test_an_error_nothing_matches_fails_the_state() -> None:
    answer = run_test_state(CHARGE, input=ORDER, mock=Mock(error="Lost", cause="gone"))

    assert (answer.status, answer.error, answer.cause, answer.next_state) == (
        "FAILED",
        "Lost",
        "gone",
        None,
    )


def test_a_choice_names_the_state_it_chose() -> None:
    choice = {
        "Type": "Choice",
        "Choices": [{"Variable": "$.n", "NumericGreaterThan": 10, "Next": "Big"}],
        "Default": "Small",
    }
    assert run_test_state(choice, input={"n": 11}).next_state == "Big"
    assert run_test_state(choice, input={"n": 1}).next_state == "Small"
    looping = {**choice, "Default": "Loop"}
    answer = run_test_state(looping, state_name="Loop", input={"n": 1})
    assert (answer.status, answer.next_state) == ("SUCCEEDED", "Loop")


def test_fail_and_succeed_states() -> None:
    failed = run_test_state({"Type": "Fail"})
    assert (failed.status, failed.error, failed.cause) == ("FAILED", None, None)
    assert failed.to_dict() == {"status": "FAILED"}
    done = run_test_state({"Type": "Succeed", "OutputPath": "$.a"}, input={"a": [1]})
    assert (done.status, done.output, done.next_state) == ("SUCCEEDED", [1], None)


def test_jsonata_with_variables_shows_them_after_assign() -> None:
    state = {
        "Type": "Pass",
        "Output": "{% $states.input.a + $v %}",
        "Assign": {"w": "{% $v * 2 %}"},
        "End": True,
    }
    machine = {"QueryLanguage": "JSONata", "StartAt": "P", "States": {"P": state}}

    answer = run_test_state(
        machine, state_name="P", input={"a": 1}, variables={"v": 2}, inspection_level="TRACE"
    )

    assert (answer.status, answer.output) == ("SUCCEEDED", 3)
    assert answer.inspection_data == {"input": {"a": 1}, "variables": {"v": 2, "w": 4}}


def test_a_runtime_error_has_aws_cause() -> None:
    answer = run_test_state({"Type": "Pass", "OutputPath": "$.missing", "End": True}, input={})
    assert answer.status == "FAILED"
    assert answer.cause == (
        "An error occurred while executing the state 'TestState' (entered at the event id #2). "
        "Invalid path '$.missing' : No results for path: $['missing']"
    )


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"definition": {"StartAt": "A", "States": {"A": {"Type": "Succeed"}}}}, "stateName"),
        (
            {
                "definition": {"StartAt": "A", "States": {"A": {"Type": "Succeed"}}},
                "state_name": "B",
            },
            "no state 'B'",
        ),
        ({"definition": {"Comment": "no type"}}, "give a state"),
        ({"definition": CHARGE, "input": ORDER}, "needs a mock"),
        ({"definition": {"Type": "Pass", "Bogus": 1, "End": True}}, "Bogus"),
        ({"definition": "{not json"}, "definition"),
        ({"definition": {"Type": "Succeed"}, "inspection_level": "ALL"}, "inspectionLevel"),
    ],
)
def test_requests_it_cannot_run_are_refused_with_the_reason(
    kwargs: dict[str, Any], problem: str
) -> None:
    definition = kwargs.pop("definition")
    with pytest.raises(StateTestError, match=problem):
        run_test_state(definition, **kwargs)


HELLO = {"Value": "HelloWorld"}
IO_INPUT = {
    "initialData": {"fieldFromInput": "value from input", "otherField": "other"},
    "unrelatedData": {"someOtherField": 1234},
}
RESULT = {"resultKey": "result value"}
MODIFIED = {"staticValue": "some value", "inputValue": "value from input"}


# Answers recorded on AWS (14-11-2025) in LocalStack's parity snapshots,
# tests/aws/services/stepfunctions/v2/test_state/test_test_state_scenarios.snapshot.json,
# test_base_inspection_level_debug[...]; the inspection data's JSON text decoded.
@pytest.mark.parametrize(
    ("state", "given", "recorded"),
    [
        (
            {"Type": "Pass", "End": True},
            HELLO,
            {
                "status": "SUCCEEDED",
                "output": HELLO,
                "inspectionData": {
                    "input": HELLO,
                    "afterInputPath": HELLO,
                    "afterParameters": HELLO,
                    "afterResultSelector": HELLO,
                    "afterResultPath": HELLO,
                },
            },
        ),
        (
            {"Type": "Pass", "Result": RESULT, "End": True},
            HELLO,
            {
                "status": "SUCCEEDED",
                "output": RESULT,
                "inspectionData": {
                    "input": HELLO,
                    "result": RESULT,
                    "afterResultSelector": RESULT,
                    "afterResultPath": RESULT,
                },
            },
        ),
        (
            {
                "Type": "Pass",
                "InputPath": "$.initialData",
                "Parameters": {"staticValue": "some value", "inputValue.$": "$.fieldFromInput"},
                "ResultPath": "$.modifiedData",
                "End": True,
            },
            IO_INPUT,
            {
                "status": "SUCCEEDED",
                "output": {**IO_INPUT, "modifiedData": MODIFIED},
                "inspectionData": {
                    "input": IO_INPUT,
                    "afterInputPath": IO_INPUT["initialData"],
                    "afterParameters": MODIFIED,
                    "afterResultSelector": MODIFIED,
                    "afterResultPath": {**IO_INPUT, "modifiedData": MODIFIED},
                },
            },
        ),
        (
            {"Type": "Pass", "Result": RESULT, "ResultPath": "$.modifiedData", "End": True},
            IO_INPUT,
            {
                "status": "SUCCEEDED",
                "output": {**IO_INPUT, "modifiedData": RESULT},
                "inspectionData": {
                    "input": IO_INPUT,
                    "result": RESULT,
                    "afterResultSelector": RESULT,
                    "afterResultPath": {**IO_INPUT, "modifiedData": RESULT},
                },
            },
        ),
        (
            {
                "Type": "Fail",
                "Error": "SomeFailure",
                "Cause": "This state machines raises a 'SomeFailure' failure.",
            },
            HELLO,
            {
                "status": "FAILED",
                "error": "SomeFailure",
                "cause": "This state machines raises a 'SomeFailure' failure.",
                "inspectionData": {"input": HELLO, "afterInputPath": HELLO},
            },
        ),
        (
            {"Type": "Succeed"},
            HELLO,
            {
                "status": "SUCCEEDED",
                "output": HELLO,
                "inspectionData": {"input": HELLO, "afterInputPath": HELLO},
            },
        ),
        (
            {
                "Type": "Choice",
                "Choices": [
                    {"Not": {"Variable": "$.type", "StringEquals": "Private"}, "Next": "Public"},
                    {
                        "And": [
                            {"Variable": "$.value", "NumericGreaterThanEquals": 20},
                            {"Variable": "$.value", "NumericLessThan": 30},
                        ],
                        "Next": "ValueInTwenties",
                    },
                ],
                "Default": "DefaultState",
            },
            {"type": "Private", "value": 22},
            {
                "status": "SUCCEEDED",
                "nextState": "ValueInTwenties",
                "output": {"type": "Private", "value": 22},
                "inspectionData": {
                    "input": {"type": "Private", "value": 22},
                    "afterInputPath": {"type": "Private", "value": 22},
                },
            },
        ),
    ],
)
def test_answers_match_those_recorded_on_aws(
    state: dict[str, Any], given: Any, recorded: dict[str, Any]
) -> None:
    answer = run_test_state(state, input=given, inspection_level="DEBUG").to_dict()

    if "output" in answer:
        answer["output"] = json.loads(answer["output"])
    answer["inspectionData"] = {
        key: json.loads(value) for key, value in answer["inspectionData"].items()
    }
    assert answer == recorded


MAP = {
    "Type": "Map",
    "ItemsPath": "$.Values",
    "MaxConcurrency": 1,
    "ItemProcessor": {
        "StartAt": "Charge",
        "States": {"Charge": CHARGE | {"Next": None, "End": True, "Catch": []}},
    },
    "ResultPath": "$.results",
    "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Recover"}],
    "End": True,
}


def test_a_mock_stands_for_a_map_states_whole_result() -> None:
    state = {key: value for key, value in MAP.items()}
    state["ItemProcessor"] = {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}
    answer = run_test_state(
        state, input={"Values": [1, 2]}, mock=Mock(result=[7, 8]), inspection_level="DEBUG"
    )

    assert (answer.status, answer.output) == ("SUCCEEDED", {"Values": [1, 2], "results": [7, 8]})
    assert answer.inspection_data is not None
    assert answer.inspection_data["maxConcurrency"] == 1
    assert answer.to_dict()["inspectionData"]["maxConcurrency"] == 1

    failed = run_test_state(state, input={"Values": [1]}, mock=Mock(error="Boom", cause="c"))
    assert (failed.status, failed.next_state, failed.error) == ("CAUGHT_ERROR", "Recover", "Boom")


def test_retries_already_made_count_against_max_attempts() -> None:
    retried = run_test_state(CHARGE, input=ORDER, mock=Mock(error="Busy"), retrier_retry_count=1)
    assert (retried.status, retried.error) == ("FAILED", "Busy")
    backoff = {**CHARGE, "Retry": [CHARGE["Retry"][0] | {"MaxAttempts": 3, "BackoffRate": 2}]}
    answer = run_test_state(
        backoff,
        input=ORDER,
        mock=Mock(error="Busy"),
        retrier_retry_count=2,
        inspection_level="DEBUG",
    )
    assert answer.status == "RETRIABLE"
    assert answer.inspection_data is not None
    assert answer.inspection_data["errorDetails"]["retryBackoffIntervalSeconds"] == 8.0


def test_the_context_object_takes_the_fields_given() -> None:
    state = {
        "Type": "Pass",
        "Parameters": {"name.$": "$$.Execution.Name", "state.$": "$$.State.Name"},
        "End": True,
    }
    answer = run_test_state(state, context={"Execution": {"Name": "exec-1"}})
    assert answer.output == {"name": "exec-1", "state": "TestState"}


def test_trace_shows_an_http_tasks_request_and_response() -> None:
    call = {
        "Type": "Task",
        "Resource": "bridge:http:invoke",
        "Parameters": {
            "Method": "POST",
            "Url": "https://api.example.com/charges?api_key=s3cret",
            "Headers": {"Authorization": "Bearer t0ken"},
            "RequestBody": {"amount": 5},
        },
        "End": True,
    }
    mocked = Mock(result={"StatusCode": 201, "ResponseBody": {"id": "c-1"}})

    debug = run_test_state(call, mock=mocked, inspection_level="DEBUG")
    trace = run_test_state(call, mock=mocked, inspection_level="TRACE")

    assert debug.inspection_data is not None and "request" not in debug.inspection_data
    assert trace.inspection_data is not None
    request = trace.inspection_data["request"]
    assert request["method"] == "POST" and json.loads(request["body"]) == {"amount": 5}
    shown = json.dumps(request)
    assert "s3cret" not in shown and "t0ken" not in shown
    assert trace.inspection_data["response"]["StatusCode"] == 201
    assert trace.to_dict()["inspectionData"]["response"]["ResponseBody"] == {"id": "c-1"}
