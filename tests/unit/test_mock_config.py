"""Step Functions Local's mock configuration file, read as the local runner's mocks."""

from __future__ import annotations

from typing import Any

import pytest

from bridge.local import MocksError, run_local
from bridge.mock_config import MockConfigError, is_mock_config, mocks_for

# The shape of AWS's example ("Using mocked service integrations for testing in Step Functions
# Local"), with the bridge's own task resource in place of Lambda and SQS.
DEFINITION: dict[str, Any] = {
    "StartAt": "LambdaState",
    "States": {
        "LambdaState": {
            "Type": "Task",
            "Resource": "bridge:kafka:send.waitForTaskToken",
            "Parameters": {"Topic": "lambda", "Message": {"token.$": "$$.Task.Token"}},
            "Retry": [
                {
                    "ErrorEquals": ["Lambda.ResourceNotReadyException"],
                    "IntervalSeconds": 1,
                    "MaxAttempts": 3,
                }
            ],
            "Next": "SQSState",
        },
        "SQSState": {
            "Type": "Task",
            "Resource": "bridge:kafka:send.waitForTaskToken",
            "Parameters": {"Topic": "sqs", "Message": {"token.$": "$$.Task.Token"}},
            "End": True,
        },
    },
}

CONFIG: dict[str, Any] = {
    "StateMachines": {
        "LambdaSQSIntegration": {
            "TestCases": {
                "HappyPath": {"LambdaState": "MockedLambdaSuccess", "SQSState": "MockedSQSSuccess"},
                "RetryPath": {
                    "LambdaState": "MockedLambdaRetry",
                    "SQSState": "MockedSQSSuccess",
                },
                "HybridPath": {"LambdaState": "MockedLambdaSuccess"},
            }
        }
    },
    "MockedResponses": {
        "MockedLambdaSuccess": {
            "0": {"Return": {"StatusCode": 200, "Payload": {"StatusCode": 200, "body": "Hello"}}}
        },
        "LambdaMockedResourceNotReady": {
            "0": {"Throw": {"Error": "Lambda.ResourceNotReadyException", "Cause": "not ready"}}
        },
        "MockedSQSSuccess": {"0": {"Return": {"MD5OfMessageBody": "3bcb6e8e", "MessageId": "m1"}}},
        "MockedLambdaRetry": {
            "0": {"Throw": {"Error": "Lambda.ResourceNotReadyException"}},
            "1-2": {"Throw": {"Error": "Lambda.TimeoutException", "Cause": "Lambda timed out."}},
            "3": {"Return": {"StatusCode": 200, "Payload": {"StatusCode": 200, "body": "Hi"}}},
        },
    },
}


def test_a_test_case_becomes_the_runners_mocks_by_invocation() -> None:
    mocks = mocks_for(CONFIG, "RetryPath")
    assert mocks["LambdaState"] == [
        {"Throw": {"Error": "Lambda.ResourceNotReadyException", "Cause": ""}},
        {"Throw": {"Error": "Lambda.TimeoutException", "Cause": "Lambda timed out."}},
        {"Throw": {"Error": "Lambda.TimeoutException", "Cause": "Lambda timed out."}},
        {"Return": {"StatusCode": 200, "Payload": {"StatusCode": 200, "body": "Hi"}}},
    ]
    assert mocks["SQSState"] == [{"Return": {"MD5OfMessageBody": "3bcb6e8e", "MessageId": "m1"}}]
    assert is_mock_config(CONFIG) and not is_mock_config(mocks)


def test_the_happy_path_runs_with_the_mocked_answers() -> None:
    result = run_local(DEFINITION, {}, mocks=CONFIG, test_case="HappyPath", skip_waits=True)
    assert result.succeeded, result
    assert result.output == {"MD5OfMessageBody": "3bcb6e8e", "MessageId": "m1"}


def test_a_throw_the_retrier_does_not_match_fails_the_run() -> None:
    result = run_local(DEFINITION, {}, mocks=CONFIG, test_case="RetryPath", skip_waits=True)
    # The first throw is retried; the second (Lambda.TimeoutException) is not in ErrorEquals.
    assert result.status.value == "FAILED"
    assert (result.error, result.cause) == ("Lambda.TimeoutException", "Lambda timed out.")


def test_the_state_machine_is_chosen_by_the_definitions_name_among_several() -> None:
    config = {**CONFIG, "StateMachines": {**CONFIG["StateMachines"], "Other": {"TestCases": {}}}}
    with pytest.raises(MockConfigError, match="name the state machine"):
        mocks_for(config, "HappyPath")
    assert mocks_for(config, "HappyPath", default="LambdaSQSIntegration")["SQSState"]
    result = run_local(
        DEFINITION,
        {},
        mocks=config,
        test_case="HappyPath",
        name="LambdaSQSIntegration",
        skip_waits=True,
    )
    assert result.succeeded


@pytest.mark.parametrize(
    ("responses", "problem"),
    [
        ({"1": {"Return": 1}}, "no answer for invocation 0"),
        ({"0-1": {"Return": 1}, "1": {"Return": 2}}, "invocation 1 is mocked twice"),
        ({"2-1": {"Return": 1}}, "the range ends before it starts"),
        ({"first": {"Return": 1}}, "not an invocation number"),
    ],
)
def test_invocation_numbers_run_from_zero_without_gaps(
    responses: dict[str, Any], problem: str
) -> None:
    config = {
        "StateMachines": {"M": {"TestCases": {"T": {"LambdaState": "R"}}}},
        "MockedResponses": {"R": responses},
    }
    with pytest.raises(MockConfigError, match=problem):
        mocks_for(config, "T")


def test_an_unknown_test_case_or_response_is_named() -> None:
    with pytest.raises(MocksError, match="HappyPath, HybridPath, RetryPath"):
        run_local(DEFINITION, {}, mocks=CONFIG, test_case="Nope")
    with pytest.raises(MocksError, match="name a test case"):
        run_local(DEFINITION, {}, mocks=CONFIG)
    config = {**CONFIG, "StateMachines": {"M": {"TestCases": {"T": {"LambdaState": "Missing"}}}}}
    with pytest.raises(MocksError, match="no mocked response named 'Missing'"):
        run_local(DEFINITION, {}, mocks=config, test_case="T")
