"""What every part of one run shares: outcome types, the frame scope, and the run's base class.

``RunBase`` holds one step's effects and history and the helpers every kind of state uses
(history, variables, JSONata evaluation, ending the process). The state handlers live in mixins
(``run_tasks``, ``run_branches``, ``run_errors``) that ``interpreter._Run`` combines; this module
declares, as abstract methods, the few parts of the core loop those mixins call back into.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from bridge.asl import errors, intrinsics, jsonata, notify, paths, search, templates
from bridge.asl.approvals import ApprovalStatus, Ballot
from bridge.asl.dataflow import iso, jsonata_timestamp, read_or_runtime, unstorable
from bridge.asl.effects import (
    CancelTimer,
    CloseWait,
    ConcludeApproval,
    Effect,
    HistoryEntry,
    NotifyApprovers,
    NotifyParent,
    StopChild,
)
from bridge.asl.errors import Failure, StatesError
from bridge.asl.model import Definition, FailState, Machine, WaitState, map_state_names
from bridge.asl.process import Position, Process, ProcessStatus
from bridge.asl.types import JSON, Entropy


@dataclass(frozen=True)
class Step:
    """The outcome of one step. ``rejected`` says why the input did not apply (nothing changed)."""

    process: Process | None
    effects: tuple[Effect, ...] = ()
    history: tuple[HistoryEntry, ...] = ()
    rejected: str | None = None


class _Refused(Exception):
    """The input is refused as a whole (a seat that already voted); nothing changes."""


@dataclass(frozen=True)
class _Next:
    state: str
    output: JSON


@dataclass(frozen=True)
class _End:
    output: JSON


@dataclass(frozen=True)
class _Blocked:
    """The state waits; ``position`` is the state's position with its wait or branches."""

    position: Position


#: What executing (or answering) one state leads to.
_Outcome = _Next | _End | _Blocked | Failure


@dataclass(frozen=True)
class _Waiting:
    position: Position


@dataclass(frozen=True)
class _Ended:
    output: JSON
    last: Position


@dataclass(frozen=True)
class _Failed:
    failure: Failure
    last: Position


#: Where a whole frame (the process, or one branch) stands after running as far as it can.
_FrameResult = _Waiting | _Ended | _Failed


@dataclass(frozen=True)
class _Scope:
    """The state machine a frame runs in, the Map item it works on (for ``$$.Map``), and its
    variables: ``outer`` from enclosing frames (read-only), ``own`` assigned in this frame."""

    machine: Definition | Machine
    map_item: tuple[int, JSON] | None = None
    outer: Mapping[str, JSON] = field(default_factory=dict)
    own: dict[str, JSON] = field(default_factory=dict)

    def variables(self) -> dict[str, JSON]:
        return {**self.outer, **self.own}


@dataclass
class Probe:
    """What a TestState request asks of a run: each state's data flow collected stage by stage
    (AWS's inspection data: afterInputPath, afterParameters, result, ...), context object fields
    to use, and the states whose whole result is mocked (a Map's or a Parallel's: the value, or
    the ``Failure`` it ends in) instead of running their branches."""

    stages: dict[str, dict[str, JSON]] = field(default_factory=dict)
    context: Mapping[str, JSON] | None = None
    results: Mapping[str, JSON] = field(default_factory=dict)


@dataclass
class RunBase(ABC):
    """Accumulates one step's effects and history; discarded when the step returns."""

    definition: Definition
    now: datetime
    entropy: Entropy
    effects: list[Effect] = field(default_factory=list)
    history: list[HistoryEntry] = field(default_factory=list)
    transitions: int = 0
    #: The id of the last event AWS would have recorded (``Process.events``), kept through
    #: the step whatever the definition keeps in its own history.
    events: int = 0
    map_states: frozenset[str] | None = None
    #: What TestState asks of the run (see ``Probe``); None for every process.
    probe: Probe | None = None
    #: Search attributes this step set (None: removed), in order; applied when it returns.
    search_updates: dict[str, search.SearchValue | None] = field(default_factory=dict)

    # ----------------------------------------------------------------- the core loop (interpreter)

    @abstractmethod
    def _drive(self, process: Process, scope: _Scope, position: Position) -> _FrameResult:
        """Run a frame from ``position`` until it waits or ends."""

    @abstractmethod
    def _enter(self, name: str, raw_input: JSON) -> Position:
        """The position of a state just entered."""

    @abstractmethod
    def _transition(self, name: str, output: JSON, came_from: Position) -> _FrameResult | Position:
        """Move to state ``name``, or fail the frame when a step makes too many transitions."""

    # ----------------------------------------------------------------- abandoning waits

    def _abandon(self, position: Position | None) -> None:
        """Close every wait in this subtree: tokens and links stop working, timers are cancelled."""
        if position is None:
            return
        wait = position.wait
        if wait is not None:
            if wait.kind in ("callback", "approval", "event", "http"):
                self.effects.append(CloseWait(wait.id, wait.kind))
            if wait.kind == "approval" and wait.ballot is not None:
                self._tell_closed(position.state, wait.id, wait.ballot)
            if wait.kind == "child" and wait.child is not None:
                # Nobody waits for the child any more: it stops too (with its own children).
                self.effects.append(StopChild(wait.child, position.state))
            reminders = wait.ballot.reminder_timers if wait.ballot else ()
            escalation = wait.ballot.escalation_timer if wait.ballot else None
            for timer in (
                wait.timeout_timer,
                wait.heartbeat_timer,
                wait.timer,
                escalation,
                *reminders,
            ):
                if timer is not None:
                    self.effects.append(CancelTimer(timer))
        for branch in position.branches:
            if branch.status == "running":
                self._abandon(branch.position)

    def _tell_closed(self, state: str, wait_id: str, ballot: Ballot) -> None:
        """An approval left undecided (the process stopped, failed or timed out, or its branch
        ended) is CLOSED: everyone asked hears so, when its Notify wants ``Decided``, so that
        a request in a mailbox or a channel does not look open. One decided in this step was
        told its outcome already, and one requested in this step was never asked (its request
        is skipped, the approval being closed by the time it goes out)."""
        told_now = any(
            (isinstance(effect, ConcludeApproval) and effect.wait_id == wait_id)
            or (
                isinstance(effect, NotifyApprovers)
                and effect.wait_id == wait_id
                and effect.event == "Requested"
            )
            for effect in self.effects
        )
        spec = ballot.notify or notify.NO_NOTIFY
        if not told_now and spec.wants("Decided"):
            self.effects.append(
                NotifyApprovers(
                    wait_id, state, "Decided", ballot.seats, spec, ApprovalStatus.CLOSED.value
                )
            )

    # ----------------------------------------------------------------- endings

    def _finish(
        self,
        process: Process,
        status: ProcessStatus,
        *,
        output: JSON = None,
        error: str | None = None,
        cause: str | None = None,
    ) -> Step:
        assert process.status.can_become(status), (process.status, status)
        if process.timeout_timer is not None:
            self.effects.append(CancelTimer(process.timeout_timer))
        kind = {
            ProcessStatus.SUCCEEDED: "ProcessSucceeded",
            ProcessStatus.FAILED: "ProcessFailed",
            ProcessStatus.TIMED_OUT: "ProcessTimedOut",
            ProcessStatus.ABORTED: "ProcessAborted",
        }[status]
        details: dict[str, JSON] = (
            {"output": output}
            if status is ProcessStatus.SUCCEEDED
            else {"error": error, "cause": cause}
        )
        self._record(kind, process.current_state, **details)
        if process.parent is not None and process.parent.wait_id is not None:
            # The parent waits for this end (``.sync``); the shell answers it in the same batch.
            self.effects.append(
                NotifyParent(
                    parent_id=process.parent.id,
                    wait_id=process.parent.wait_id,
                    status=status.value,
                    output=output,
                    error=error,
                    cause=cause,
                    started_at=process.started_at,
                    ended_at=self.now,
                )
            )
        ended = process.model_copy(
            update={
                "status": status,
                "output": output,
                "error": error,
                "cause": cause,
                "ended_at": self.now,
                "timeout_timer": None,
                "position": (
                    process.position.model_copy(update={"wait": None, "branches": ()})
                    if process.position
                    else None
                ),
            }
        )
        return self._done(ended)

    def _done(self, process: Process) -> Step:
        if process.events != self.events:
            process = process.model_copy(update={"events": self.events})
        if self.search_updates:
            found = search.apply(process.search_attributes, self.search_updates)
            if found != process.search_attributes:
                process = process.model_copy(update={"search_attributes": found})
        return Step(process, tuple(self.effects), tuple(self.history))

    def _reject(self, process: Process, reason: str) -> Step:
        return Step(process, rejected=reason)

    # ----------------------------------------------------------------- helpers

    def _record(self, kind: str, state: str | None, **details: JSON) -> None:
        self.events += _AWS_EVENTS.get(kind, 0)
        if kind in _BRANCH_EVENTS and state in self._map_states():
            self.events += 1  # MapIterationStarted, -Succeeded, -Failed
        if self.definition.keeps(kind):
            self.history.append(HistoryEntry(self.now, kind, state, dict(details)))

    def _inspect(self, state: str, stage: str, value: JSON) -> None:
        # The state's first run counts (a retried or re-entered state runs again).
        if self.probe is not None:
            self.probe.stages.setdefault(state, {}).setdefault(stage, value)

    def _context(self, process: Process, scope: _Scope, position: Position) -> dict[str, JSON]:
        """The context object (``$$``), with the fields a TestState request gives."""
        context = _context(process, scope, position)
        given = self.probe.context if self.probe is not None else None
        for key, value in (given or {}).items():
            if isinstance(value, Mapping) and isinstance(context.get(key), dict):
                context[key] = {**context[key], **value}
            else:
                context[key] = value
        return context

    def _map_states(self) -> frozenset[str]:
        if self.map_states is None:
            self.map_states = map_state_names(self.definition)
        return self.map_states

    def _state_failed(self, error: StatesError, position: Position) -> Failure:
        """A state's own evaluation error, with its cause as AWS words it."""
        if error.error == errors.QUERY_EVALUATION_ERROR:
            self.events += 1  # AWS: EvaluationFailed
        return errors.in_state(error, position.state, position.entered_event)

    def _assign(
        self, scope: _Scope, assign: Mapping[str, JSON] | None, source: JSON, context: JSON
    ) -> None:
        """Set workflow variables; every value is computed before any is set, as AWS does."""
        if not assign:
            return
        values = self._template(dict(assign), source, context)
        assert isinstance(values, dict)
        scope.own.update(_storable(values))

    # ----------------------------------------------------------------- search attributes

    def _search(
        self, state: str | None, fields: Mapping[str, JSON] | None, source: JSON, context: JSON
    ) -> None:
        """Set search attributes from a JSONPath ``SearchAttributes`` object. Each one on its
        own: a path that matches nothing removes its attribute, a value that cannot be kept is
        skipped with a note; neither fails the state."""
        for key, given in (fields or {}).items():
            name = search.attribute_name(key)
            value = given
            if key.endswith(".$"):
                try:
                    built = self._template({key: given}, source, context)
                except StatesError as exc:
                    if exc.error != errors.PARAMETER_PATH_FAILURE:
                        self._skip_attribute(state, name, exc.cause or exc.error or "")
                        continue
                    built = {name: None}
                assert isinstance(built, dict)
                value = built[name]
            self._set_attribute(state, name, value)

    def _search_jsonata(
        self, state: str | None, fields: Mapping[str, JSON] | None, bindings: Mapping[str, JSON]
    ) -> None:
        """Set search attributes from a JSONata ``SearchAttributes`` object; an expression that
        yields nothing removes its attribute (see ``_search``)."""
        for name, given in (fields or {}).items():
            value = given
            if jsonata.is_expression(given):
                try:
                    value = jsonata.evaluate(
                        given, bindings, self.entropy, field=f"SearchAttributes/{name}"
                    )
                except StatesError as exc:
                    self._skip_attribute(state, name, exc.cause or exc.error or "")
                    continue
                if value is jsonata.UNDEFINED:
                    value = None
            self._set_attribute(state, name, value)

    def _set_attribute(self, state: str | None, name: str, value: JSON) -> None:
        problem = search.value_problem(value)
        if problem is not None:
            self._skip_attribute(state, name, f"the value {problem}")
            return
        # Re-set last: the order of updates is the order they happened in.
        self.search_updates.pop(name, None)
        self.search_updates[name] = value

    def _skip_attribute(self, state: str | None, name: str, reason: str) -> None:
        self._record(search.SKIPPED, state, name=name, reason=reason[:500])

    # ----------------------------------------------------------------- JSONata

    def _is_jsonata(self, state: object) -> bool:
        language = getattr(state, "query_language", None) or self.definition.query_language
        return bool(language == "JSONata")

    def _bindings(
        self, scope: _Scope, context: Mapping[str, JSON], **states: JSON
    ) -> dict[str, JSON]:
        """``$states`` (input, result, errorOutput, context) and the workflow variables."""
        visible_context = {key: value for key, value in context.items() if key != paths.VARIABLES}
        return {**scope.variables(), "states": {"context": visible_context, **states}}

    def _evaluate(self, template: JSON, bindings: Mapping[str, JSON], field_name: str) -> JSON:
        return jsonata.evaluate_template(template, bindings, self.entropy, field=field_name)

    def _output(self, state: object, bindings: Mapping[str, JSON], default: JSON) -> JSON:
        if not getattr(state, "has_output", False):
            return default
        return self._evaluate(getattr(state, "output", None), bindings, "Output")

    def _output_of(
        self, rule: Mapping[str, JSON], bindings: Mapping[str, JSON], default: JSON
    ) -> JSON:
        if "Output" not in rule:
            return default
        return self._evaluate(rule["Output"], bindings, "Output")

    def _assign_jsonata(
        self, scope: _Scope, assign: Mapping[str, JSON] | None, bindings: Mapping[str, JSON]
    ) -> None:
        if not assign:
            return
        values = self._evaluate(dict(assign), bindings, "Assign")
        assert isinstance(values, dict)
        scope.own.update(_storable(values))

    def _jsonata_seconds(
        self, value: int | str | None, bindings: Mapping[str, JSON], field_name: str
    ) -> int | None:
        if value is None or isinstance(value, int):
            return value
        seconds = self._evaluate(value, bindings, field_name)
        if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds < 1:
            raise StatesError(
                errors.QUERY_EVALUATION_ERROR, f"{field_name} must be a positive integer"
            )
        return seconds

    def _jsonata_count(self, value: int | float | str | None, bindings: Mapping[str, JSON]) -> Any:
        if not isinstance(value, str):
            return value
        number = self._evaluate(value, bindings, "Map")
        if isinstance(number, bool) or not isinstance(number, int | float) or number < 0:
            raise StatesError(errors.QUERY_EVALUATION_ERROR, f"{value} must be a number >= 0")
        return number

    def _jsonata_due(self, state: WaitState, bindings: Mapping[str, JSON]) -> datetime:
        if state.seconds is not None:
            seconds = self._evaluate(state.seconds, bindings, "Seconds")
            if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
                raise StatesError(
                    errors.QUERY_EVALUATION_ERROR, "Seconds must be a non-negative number"
                )
            return self.now + timedelta(seconds=seconds)
        return jsonata_timestamp(self._evaluate(state.timestamp, bindings, "Timestamp"))

    def _fail_state(self, state: FailState, raw_input: JSON, context: JSON) -> Failure:
        """Error and Cause, fixed or read by ErrorPath/CausePath (a path or an intrinsic)."""

        def read(path: str) -> str:
            if intrinsics.is_intrinsic(path):
                value = intrinsics.evaluate(path, raw_input, context, self.entropy)
            else:
                value = read_or_runtime(path, raw_input, context)
            return value if isinstance(value, str) else json.dumps(value)

        error = read(state.error_path) if state.error_path is not None else state.error
        cause = read(state.cause_path) if state.cause_path is not None else state.cause
        return Failure(error, cause)

    def _template(self, template: JSON, data: JSON, context: JSON) -> JSON:
        return templates.apply_template(template, data, context, intrinsics=self.entropy)


#: How many events AWS Step Functions records for each of ours: a task's outcome stands for
#: TaskScheduled, TaskStarted and the outcome; Map and Parallel add theirs in run_branches.
_AWS_EVENTS = {
    "ProcessStarted": 1,
    "ProcessRedriven": 1,
    "StateEntered": 1,
    "StateExited": 1,
    "MapStarted": 1,
    "TaskSucceeded": 3,
    "TaskFailed": 3,
    "TaskTimedOut": 3,
}


_BRANCH_EVENTS = frozenset({"BranchStarted", "BranchSucceeded", "BranchFailed"})


def _flow(next_name: str | None, end: bool, output: JSON) -> _Outcome:
    if end or next_name is None:
        return _End(output)
    return _Next(next_name, output)


def _context(process: Process, scope: _Scope, position: Position) -> dict[str, JSON]:
    context: dict[str, JSON] = {
        "Execution": {
            "Id": process.id,
            "Name": process.id,
            "Input": process.input,
            "StartTime": iso(process.started_at),
            "RedriveCount": process.redrive_count,
        },
        "State": {
            "Name": position.state,
            "EnteredTime": iso(position.entered_at),
            "RetryCount": position.retry_count,
        },
        "StateMachine": {
            "Id": f"{process.definition}:{process.version}",
            "Name": process.definition,
        },
    }
    if scope.map_item is not None:
        index, value = scope.map_item
        context["Map"] = {"Item": {"Index": index, "Value": value}}
    context[paths.VARIABLES] = scope.variables()
    return context


def _storable(variables: dict[str, JSON]) -> dict[str, JSON]:
    """Assigned variables are kept with the process: bounded like a state's output."""
    failure = unstorable(variables, "Assign")
    if failure is not None:
        cause = failure.cause or ""
        raise StatesError(
            failure.error or errors.RUNTIME,
            cause.replace("The state/task output of Assign", "The assigned variables"),
        )
    return variables
