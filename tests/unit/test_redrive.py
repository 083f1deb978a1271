"""Redrive: an ended process runs again from the state it ended in (like RedriveExecution)."""

from __future__ import annotations

from bridge.asl.effects import SendMessage
from bridge.asl.inputs import Redrive, Stop, TaskFailed, TaskSucceeded
from bridge.asl.process import ProcessStatus
from tests.unit.driver import of_type
from tests.unit.test_parallel_map import definition, machine, send_wait


def flow() -> dict[str, object]:
    return machine(
        {
            "Prepare": {
                "Type": "Pass",
                "Result": {"n": 1},
                "ResultPath": "$.prepared",
                "Next": "Work",
            },
            "Work": send_wait("work", end=False, Next="Done", ResultPath="$.work"),
            "Done": {
                "Type": "Pass",
                "Parameters": {"redrives.$": "$$.Execution.RedriveCount", "work.$": "$.work"},
                "End": True,
            },
        },
        "Prepare",
    )


def test_a_failed_process_is_redriven_from_the_failed_state() -> None:
    run = definition(flow())
    run.start({"order": "o-1"})
    run.apply(TaskFailed(run.wait.id, "Busy", "try later"))
    assert run.running.status is ProcessStatus.FAILED

    redriven = run.apply(Redrive())
    assert run.running.status is ProcessStatus.RUNNING
    assert run.running.error is None and run.running.redrive_count == 1
    # The failed state runs again with the input it had; the states before it do not.
    [command] = of_type(redriven.effects, SendMessage)
    assert command.value["in"] == {"order": "o-1", "prepared": {"n": 1}}
    assert [e.type for e in redriven.history][:2] == ["ProcessRedriven", "StateEntered"]

    run.apply(TaskSucceeded(run.wait.id, "ok"))
    assert run.running.status is ProcessStatus.SUCCEEDED
    assert run.running.output == {"redrives": 1, "work": "ok"}


def test_a_stopped_process_can_be_redriven_but_a_succeeded_or_running_one_cannot() -> None:
    run = definition(flow())
    run.start({})
    assert run.offer(Redrive()).rejected  # running
    run.apply(Stop("Operator.Stopped", "by hand"))
    assert run.running.status is ProcessStatus.ABORTED
    run.apply(Redrive())
    run.apply(TaskSucceeded(run.wait.id, "ok"))
    assert run.running.status is ProcessStatus.SUCCEEDED
    assert run.offer(Redrive()).rejected
