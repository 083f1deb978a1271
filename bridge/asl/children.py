"""Nested processes, pure part: what a ``bridge:process:start`` task asks for, and what a child's
start and end mean for its parent.

A parent's task names the child's definition (``NAME``, ``NAME:VERSION`` or ``NAME:ALIAS``), its
input, an optional Name and correlation key. The interpreter turns that into a ``StartChild``
effect and waits; the shell starts the child in the same transaction and answers with
``ChildStarted`` (or ``ChildNotStarted``). The plain form then completes with
``{"ProcessId", "StartedAt"}``; ``.sync`` waits until the child's end comes back as
``ChildEnded``: its output on success, or a ``Process.Child*`` error whose cause is the child's
status, error and cause as JSON, so that Retry and Catch apply.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from bridge.asl import errors, limits
from bridge.asl.dataflow import iso
from bridge.asl.errors import Failure, StatesError
from bridge.asl.inputs import ChildEnded
from bridge.asl.process import Position, Process
from bridge.asl.types import JSON

#: How deep processes may nest (a child of a child of ...): a definition that starts itself
#: would otherwise recurse without end.
MAX_DEPTH = 10

#: The error of each way a child may end other than SUCCEEDED.
_ERRORS = {
    "FAILED": errors.CHILD_FAILED,
    "TIMED_OUT": errors.CHILD_TIMED_OUT,
    "ABORTED": errors.CHILD_ABORTED,
}


@dataclass(frozen=True)
class ChildRequest:
    """A child start as the task's Parameters (or Arguments) give it, checked."""

    definition: str
    input: JSON
    name: str | None
    correlation_key: str | None


def request(parameters: JSON, resource: str) -> ChildRequest:
    """The start ``parameters`` ask for; ``Process.InvalidParameters`` when they cannot be used."""
    if not isinstance(parameters, Mapping):
        raise StatesError(errors.CHILD_INVALID_PARAMETERS, f"{resource} needs an object")
    definition = parameters.get("Definition")
    if not isinstance(definition, str) or not definition or len(definition) > 300:
        raise StatesError(
            errors.CHILD_INVALID_PARAMETERS,
            "Definition must be a definition name, NAME:ALIAS or NAME:VERSION",
        )
    name = parameters.get("Name")
    if name is not None and (not isinstance(name, str) or not 1 <= len(name) <= 200):
        raise StatesError(
            errors.CHILD_INVALID_PARAMETERS, "Name must be a string of 1 to 200 characters"
        )
    key = parameters.get("CorrelationKey")
    if isinstance(key, int | float) and not isinstance(key, bool):
        key = str(key)
    if key is not None and (not isinstance(key, str) or len(key) > 500):
        raise StatesError(
            errors.CHILD_INVALID_PARAMETERS, "CorrelationKey must be a string of at most 500"
        )
    problem = limits.problem(dict(parameters), max_depth=limits.MAX_DEPTH + 1)
    if problem is not None:
        raise StatesError(errors.CHILD_INVALID_PARAMETERS, f"The parameters {problem}")
    return ChildRequest(definition, parameters.get("Input", {}), name, key)


def child_id(parent_id: str, name: str) -> str:
    """The id of the child a parent names ``name``: the same for every start of that name, so
    a parent never has two children of one name."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"bridge:child:{parent_id}:{name}"))


def started(process_id: str, started_at: JSON) -> dict[str, JSON]:
    """The plain form's result."""
    return {"ProcessId": process_id, "StartedAt": started_at}


def result(ended: ChildEnded) -> JSON | Failure:
    """What a child's end makes of the parent's ``.sync`` task: the child's output, wrapped like
    Step Functions' ``startExecution.sync:2`` (``Output`` is the child's output as JSON), or the
    failure matching the child's status."""
    if ended.status == "SUCCEEDED":
        return {
            "ProcessId": ended.process_id,
            "Status": ended.status,
            "Output": ended.output,
            "StartedAt": iso(ended.started_at) if ended.started_at else None,
            "EndedAt": iso(ended.ended_at) if ended.ended_at else None,
        }
    cause = {
        "ProcessId": ended.process_id,
        "Status": ended.status,
        "Error": ended.error,
        "Cause": ended.cause,
    }
    return Failure(_ERRORS.get(ended.status, errors.CHILD_FAILED), json.dumps(cause))


def ended_input(child: Process, wait_id: str) -> ChildEnded:
    """The input that tells a parent how ``child`` (an ended process) ended."""
    assert child.status.ended
    return ChildEnded(
        wait_id=wait_id,
        process_id=child.id,
        status=child.status.value,
        output=child.output,
        error=child.error,
        cause=child.cause,
        started_at=child.started_at,
        ended_at=child.ended_at,
    )


def stop_cause(parent_id: str, state: str) -> str:
    return f"the parent process {parent_id} stopped waiting for it in state {state}"


def waits_for(process: Process, wait_id: str) -> bool:
    """Whether ``process`` (in any branch) still waits on ``wait_id``."""
    return process.open_wait(wait_id) is not None


def children_waited_for(process: Process) -> list[str]:
    """The children ``process`` waits for right now (every branch), for the status pages."""
    found: list[str] = []
    _gather_children(process.position, found)
    return found


# A module function, not a closure that calls itself: such a closure is a reference cycle, and
# everything it holds would wait for the garbage collector.
def _gather_children(position: Position | None, found: list[str]) -> None:
    if position is None:
        return
    if position.wait is not None and position.wait.child is not None:
        found.append(position.wait.child)
    for branch in position.branches:
        _gather_children(branch.position, found)
