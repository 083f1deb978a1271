"""Workflow variables (Assign) in JSONPath states: set, read as $name, scoped to branches."""

from __future__ import annotations

from bridge.asl.effects import ExpectCallback
from bridge.asl.inputs import TaskFailed, TaskSucceeded
from bridge.asl.process import ProcessStatus
from tests.unit.driver import of_type
from tests.unit.test_parallel_map import definition, machine, send_wait


def test_assign_then_read_in_later_states_and_choice() -> None:
    run = definition(
        machine(
            {
                "Remember": {
                    "Type": "Pass",
                    "Parameters": {"total.$": "$.amount"},
                    "Assign": {"total.$": "$.total", "who": "ann"},
                    "Next": "Forget",
                },
                "Forget": {"Type": "Pass", "Result": {}, "Next": "Route"},
                "Route": {
                    "Type": "Choice",
                    "Choices": [
                        {
                            "Variable": "$total",
                            "NumericGreaterThan": 100,
                            "Assign": {"route": "big"},
                            "Next": "Report",
                        }
                    ],
                    "Default": "Report",
                    "Assign": {"route": "small"},
                },
                "Report": {
                    "Type": "Pass",
                    "Parameters": {
                        "total.$": "$total",
                        "who.$": "$who",
                        "route.$": "$route",
                        "text.$": "States.Format('{} paid {}', $who, $total)",
                    },
                    "End": True,
                },
            },
            "Remember",
        )
    )
    run.start({"amount": 150})
    assert run.running.output == {
        "total": 150,
        "who": "ann",
        "route": "big",
        "text": "ann paid 150",
    }
    assert run.running.variables == {"total": 150, "who": "ann", "route": "big"}


def test_assign_values_are_computed_before_any_is_set() -> None:
    run = definition(
        machine(
            {
                "A": {"Type": "Pass", "Assign": {"x": 1, "y": 2}, "Next": "Swap"},
                "Swap": {"Type": "Pass", "Assign": {"x.$": "$y", "y.$": "$x"}, "End": True},
            },
            "A",
        )
    )
    run.start({})
    assert run.running.variables == {"x": 2, "y": 1}


def test_task_result_and_catch_assign() -> None:
    run = definition(
        machine(
            {
                "Work": send_wait(
                    "work",
                    end=False,
                    Assign={"receipt.$": "$.id"},
                    Next="Again",
                ),
                "Again": send_wait(
                    "work",
                    end=False,
                    Catch=[
                        {
                            "ErrorEquals": ["States.ALL"],
                            "Assign": {"err.$": "$.Error"},
                            "Next": "Done",
                        }
                    ],
                    Next="Done",
                ),
                "Done": {
                    "Type": "Pass",
                    "Parameters": {"r.$": "$receipt", "e.$": "$err"},
                    "End": True,
                },
            },
            "Work",
        )
    )
    first = one_wait(run.start({}).effects)
    second = one_wait(run.apply(TaskSucceeded(first, {"id": "r-1"})).effects)
    run.apply(TaskFailed(second, "Nope", "no"))
    assert run.running.output == {"r": "r-1", "e": "Nope"}


def test_branches_read_outer_variables_and_keep_their_own() -> None:
    run = definition(
        machine(
            {
                "Init": {"Type": "Pass", "Assign": {"factor": 10}, "Next": "Each"},
                "Each": {
                    "Type": "Map",
                    "ItemProcessor": machine(
                        {
                            "Mine": {
                                "Type": "Pass",
                                "Assign": {"local.$": "$$.Map.Item.Value"},
                                "Next": "Use",
                            },
                            "Use": {
                                "Type": "Pass",
                                "Parameters": {
                                    "v.$": "States.MathAdd($local, $factor)",
                                },
                                "End": True,
                            },
                        },
                        "Mine",
                    ),
                    "Next": "After",
                },
                "After": {"Type": "Pass", "End": True},
            },
            "Init",
        )
    )
    run.start([1, 2])
    assert run.running.status is ProcessStatus.SUCCEEDED
    assert run.running.output == [{"v": 11}, {"v": 12}]
    assert run.running.variables == {"factor": 10}


def test_reading_an_unknown_variable_fails_the_state() -> None:
    run = definition(
        machine({"A": {"Type": "Pass", "Parameters": {"x.$": "$nope"}, "End": True}}, "A")
    )
    run.start({})
    assert run.running.status is ProcessStatus.FAILED
    assert run.running.error == "States.Runtime"


def one_wait(effects: object) -> str:
    found = of_type(effects, ExpectCallback)  # type: ignore[arg-type]
    assert len(found) == 1
    return found[0].wait_id
