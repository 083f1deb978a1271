"""The interpreter: one pure step of a process.

``step(definition, process, input, now, entropy) -> Step`` applies one input (a start, a callback,
a decision, a fired timer, a stop) and runs the process forward until it waits or ends. It reads no
clock (``now`` comes in), draws randomness only from ``entropy``, and performs no I/O: everything
the outside world must do comes back as effects, everything that happened as history entries.

This module holds the core loop (starting, driving and answering a frame) and the simple states.
``_Run`` combines the rest: ``run_tasks`` (Task resources), ``run_branches`` (Parallel and Map),
``run_errors`` (Retry and Catch), all built on ``run_base`` (outcome types, helpers, JSONata).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from bridge.asl import choice, errors, paths
from bridge.asl.dataflow import (
    input_path,
    iso,
    output_path,
    text,
    unstorable,
    wait_due,
)
from bridge.asl.effects import (
    CancelTimer,
    HistoryEntry,
    NotifyApprovers,
    RemindApproval,
    StartTimer,
)
from bridge.asl.errors import Failure, StatesError
from bridge.asl.inputs import (
    ApprovalDecided,
    Audit,
    ChildEnded,
    ChildNotStarted,
    ChildStarted,
    EventArrived,
    Fault,
    HttpAnswered,
    Input,
    Redrive,
    SeatChanged,
    Start,
    Stop,
    TaskFailed,
    TaskHeartbeat,
    TaskSucceeded,
    TimerFired,
)
from bridge.asl.model import (
    ChoiceState,
    Definition,
    FailState,
    MapState,
    ParallelState,
    PassState,
    SucceedState,
    TaskState,
    WaitState,
)
from bridge.asl.notify import NO_NOTIFY
from bridge.asl.process import Position, Process, ProcessStatus, Wait
from bridge.asl.run_base import (
    Probe,
    Step,
    _Blocked,
    _End,
    _Ended,
    _Failed,
    _flow,
    _FrameResult,
    _Next,
    _Outcome,
    _Refused,
    _Scope,
    _Waiting,
)
from bridge.asl.run_branches import RunBranches
from bridge.asl.run_errors import RunErrors
from bridge.asl.types import JSON, Entropy

__all__ = ["MAX_TRANSITIONS_PER_STEP", "Entropy", "Step", "keep_timers", "step"]


#: Transitions one step may make without waiting; a loop of Pass and Choice states that never
#: waits would otherwise hold a worker forever.
MAX_TRANSITIONS_PER_STEP = 1000


def step(
    definition: Definition,
    process: Process | None,
    event: Input,
    now: datetime,
    entropy: Entropy,
    probe: Probe | None = None,
) -> Step:
    """Apply ``event`` to ``process`` (None for a start) and run until the process waits or ends.

    ``probe`` is a TestState request's (see ``Probe``); None for every process."""
    return keep_timers(event, _step(definition, process, event, now, entropy, probe))


def keep_timers(event: Input, result: Step) -> Step:
    """``result`` with its process's pending timers brought up to date: those its effects
    started are added, those they cancelled and the one ``event`` fired go, and an ended
    process has none. A refused step changes nothing."""
    after = result.process
    if result.rejected is not None or after is None:
        return result
    timers = dict(after.timers)
    if isinstance(event, TimerFired):
        timers.pop(event.timer_id, None)
    for effect in result.effects:
        if isinstance(effect, StartTimer):
            timers[effect.timer_id] = effect.due_at
        elif isinstance(effect, CancelTimer):
            timers.pop(effect.timer_id, None)
    if after.status.ended:
        timers = {}
    if timers == after.timers:
        return result
    return replace(result, process=after.model_copy(update={"timers": timers}))


def _step(
    definition: Definition,
    process: Process | None,
    event: Input,
    now: datetime,
    entropy: Entropy,
    probe: Probe | None,
) -> Step:
    if isinstance(event, Audit):
        if process is None:
            return Step(None, rejected="no such process")
        entry = HistoryEntry(now, event.kind, event.state, dict(event.details))
        return Step(process, (), (entry,))
    if isinstance(event, Start):
        if process is not None:
            return Step(process, rejected=f"process {process.id} already exists")
        return _Run(definition, now, entropy, probe=probe).start(event)
    if process is None:
        return Step(None, rejected="no such process")
    if isinstance(event, Redrive):
        if not process.status.can_become(ProcessStatus.RUNNING) or process.position is None:
            return Step(process, rejected=f"a {process.status.value} process cannot be redriven")
        return _Run(definition, now, entropy, probe=probe).redrive(process)
    if process.status.ended:
        return Step(process, rejected=f"process is {process.status.value}")
    return _Run(definition, now, entropy, probe=probe).resume(process, event)


class _Run(RunBranches, RunErrors):
    """One step's run: the core loop here, the state handlers in the mixins it combines."""

    # ----------------------------------------------------------------- the process

    def start(self, event: Start) -> Step:
        process = Process(
            id=event.process_id,
            definition=self.definition.name,
            version=self.definition.version,
            correlation_key=event.correlation_key,
            input=event.input,
            started_at=self.now,
            parent=event.parent,
            variables=event.variables,
        )
        self._record("ProcessStarted", None, input=event.input, **event.origin)
        if (limit := self.definition.max_seconds) is not None:
            timer = self.entropy.new_id()
            self.effects.append(StartTimer(timer, self.now + timedelta(seconds=limit)))
            process = process.model_copy(update={"timeout_timer": timer})
        position = self._enter(self.definition.start_at, event.input)
        if event.retried:
            first = self.definition.states[self.definition.start_at]
            retriers = len(getattr(first, "retry", ()))
            position = position.model_copy(
                update={"attempts": (event.retried,) * retriers, "retry_count": event.retried}
            )
        scope = _Scope(self.definition, own=dict(event.variables))
        self._start_attributes(process, scope, position, event.input)
        return self._conclude(process, scope, self._drive(process, scope, position))

    def _start_attributes(
        self, process: Process, scope: _Scope, position: Position, given: JSON
    ) -> None:
        """The definition's own SearchAttributes, over the process's input."""
        fields = self.definition.search_attributes
        if not fields:
            return
        context = self._context(process, scope, position)
        if self.definition.query_language == "JSONata":
            self._search_jsonata(None, fields, self._bindings(scope, context, input=given))
        else:
            self._search(None, fields, given, context)

    def redrive(self, process: Process) -> Step:
        """Like Step Functions' RedriveExecution: the same process, from the state that ended it."""
        assert process.position is not None
        self.events = process.events
        last = process.position
        process = process.model_copy(
            update={
                "status": ProcessStatus.RUNNING,
                "output": None,
                "error": None,
                "cause": None,
                "ended_at": None,
                "redrive_count": process.redrive_count + 1,
            }
        )
        self._record("ProcessRedriven", last.state, redriveCount=process.redrive_count)
        if (limit := self.definition.max_seconds) is not None:
            timer = self.entropy.new_id()
            due = self.now + timedelta(seconds=limit)
            self.effects.append(StartTimer(timer, due))
            process = process.model_copy(update={"timeout_timer": timer})
        scope = _Scope(self.definition, own=dict(process.variables))
        position = self._enter(last.state, last.input)
        return self._conclude(process, scope, self._drive(process, scope, position))

    def resume(self, process: Process, event: Input) -> Step:
        self.events = process.events
        if isinstance(event, Stop):
            self._abandon(process.position)
            return self._finish(
                process, ProcessStatus.ABORTED, error=event.error, cause=event.cause
            )
        if isinstance(event, Fault):
            self._abandon(process.position)
            return self._finish(process, ProcessStatus.FAILED, error=event.error, cause=event.cause)
        if isinstance(event, TimerFired) and event.timer_id == process.timeout_timer:
            self._abandon(process.position)
            return self._finish(
                process,
                ProcessStatus.TIMED_OUT,
                error=errors.TIMEOUT,
                cause="The process exceeded the definition's TimeoutSeconds",
            )
        if process.position is None:
            return self._reject(process, "the process is not waiting")
        scope = _Scope(self.definition, own=dict(process.variables))
        try:
            result = self._deliver(process, scope, process.position, event)
        except _Refused as refused:
            return self._reject(process, str(refused))
        if result is None:
            return self._reject(process, "the input does not match what the process waits for")
        return self._conclude(process, scope, result)

    def _conclude(self, process: Process, scope: _Scope, result: _FrameResult) -> Step:
        if scope.own != process.variables:
            process = process.model_copy(update={"variables": scope.own})
        match result:
            case _Waiting(position=position):
                return self._done(process.model_copy(update={"position": position}))
            case _Ended(output=output, last=last):
                process = process.model_copy(update={"position": last})
                return self._finish(process, ProcessStatus.SUCCEEDED, output=output)
            case _Failed(failure=failure, last=last):
                process = process.model_copy(update={"position": last})
                return self._finish(
                    process, ProcessStatus.FAILED, error=failure.error, cause=failure.cause
                )

    # ----------------------------------------------------------------- running a frame

    def _enter(self, name: str, raw_input: JSON) -> Position:
        # The id AWS gives the entry event, which runtime error causes cite ("#N").
        self._record("StateEntered", name, input=raw_input, eventId=self.events + 1)
        return Position(state=name, input=raw_input, entered_at=self.now, entered_event=self.events)

    def _drive(self, process: Process, scope: _Scope, position: Position) -> _FrameResult:
        """Execute ``position``'s state and the ones after it until the frame waits or ends."""
        while True:
            outcome = self._execute(process, scope, position)
            followed = self._follow(process, scope, position, outcome)
            if not isinstance(followed, Position):
                return followed
            position = followed

    def _follow(
        self, process: Process, scope: _Scope, position: Position, outcome: _Outcome
    ) -> _FrameResult | Position:
        """Where an outcome leads: a wait, the frame's end, or the next state to execute."""
        if isinstance(outcome, _Next | _End):
            outcome = unstorable(outcome.output, position.state) or outcome
        match outcome:
            case _Blocked(position=blocked):
                return _Waiting(blocked)
            case _End(output=output):
                self._record("StateExited", position.state, output=output)
                return _Ended(output, position)
            case _Next(state=name, output=output):
                self._record("StateExited", position.state, output=output)
                return self._transition(name, output, position)
            case Failure():
                if isinstance(scope.machine.states[position.state], FailState):
                    return _Failed(outcome, position)
                return self._recover(process, scope, position, outcome)

    def _transition(self, name: str, output: JSON, came_from: Position) -> _FrameResult | Position:
        self.transitions += 1
        if self.transitions >= MAX_TRANSITIONS_PER_STEP:
            failure = Failure(
                errors.RUNTIME, f"more than {MAX_TRANSITIONS_PER_STEP} transitions without waiting"
            )
            return _Failed(failure, came_from)
        return self._enter(name, output)

    def _execute(self, process: Process, scope: _Scope, position: Position) -> _Outcome:
        state = scope.machine.states[position.state]
        context = self._context(process, scope, position)
        try:
            if self.probe is not None and not self._is_jsonata(state):
                self._inspect_entry(state, position, context)
            match state:
                case PassState():
                    return self._pass(scope, state, position, context)
                case TaskState():
                    return self._task(process, scope, state, position, context)
                case ChoiceState():
                    return self._choice(scope, state, position, context)
                case WaitState():
                    return self._wait(scope, state, position, context)
                case SucceedState():
                    if self._is_jsonata(state):
                        bindings = self._bindings(scope, context, input=position.input)
                        return _End(self._output(state, bindings, position.input))
                    data = input_path(state.input_path, position.input, context)
                    return _End(output_path(state.output_path, data, context))
                case FailState():
                    if self._is_jsonata(state):
                        bindings = self._bindings(scope, context, input=position.input)
                        return Failure(
                            None
                            if state.error is None
                            else text(self._evaluate(state.error, bindings, "Error")),
                            None
                            if state.cause is None
                            else text(self._evaluate(state.cause, bindings, "Cause")),
                        )
                    return self._fail_state(state, position.input, context)
                case ParallelState():
                    return self._parallel(process, scope, state, position, context)
                case MapState():
                    return self._map(process, scope, state, position, context)
        except StatesError as exc:
            return self._state_failed(exc, position)
        raise AssertionError(f"unknown state type {type(state).__name__}")

    # ----------------------------------------------------------------- answering a waiting frame

    def _deliver(
        self, process: Process, scope: _Scope, position: Position, event: Input
    ) -> _FrameResult | None:
        """Apply ``event`` to the frame in this subtree that waits for it; None if none does."""
        wait = position.wait
        if wait is not None and _targets(wait, event):
            if not isinstance(event, TimerFired):
                missed = [due for due in (wait.timeout_at, wait.heartbeat_at) if due is not None]
                if missed and min(missed) <= self.now:
                    raise _Refused(f"too late: the step's deadline passed at {iso(min(missed))}")
            outcome = self._answer(process, scope, position, wait, event)
            followed = self._follow(process, scope, position, outcome)
            if isinstance(followed, Position):
                return self._drive(process, scope, followed)
            return followed
        for index, branch in enumerate(position.branches):
            if branch.status != "running" or branch.position is None:
                continue
            inner_scope = self._branch_scope(scope, position, branch)
            inner = self._deliver(process, inner_scope, branch.position, event)
            if inner is None:
                continue
            branches = list(position.branches)
            branches[index] = self._branch_after(position.state, branch, inner, inner_scope)
            position = position.model_copy(update={"branches": tuple(branches)})
            outcome = self._settle(process, scope, position)
            followed = self._follow(process, scope, position, outcome)
            if isinstance(followed, Position):
                return self._drive(process, scope, followed)
            return followed
        return None

    def _answer(
        self, process: Process, scope: _Scope, position: Position, wait: Wait, event: Input
    ) -> _Outcome:
        name = position.state
        match event:
            case TaskSucceeded(output=output):
                self._record("TaskSucceeded", name, output=output)
                self._abandon(position)
                return self._completed(process, scope, position, output)
            case TaskFailed(error=error, cause=cause):
                self._record("TaskFailed", name, error=error, cause=cause)
                self._abandon(position)
                return Failure(error, cause)
            case TaskHeartbeat():
                return self._heartbeat(position, wait)
            case ApprovalDecided():
                return self._decided(process, scope, position, event)
            case SeatChanged():
                return self._seat_changed(position, event)
            case HttpAnswered():
                return self._http_answered(process, scope, position, event)
            case ChildStarted() | ChildNotStarted() | ChildEnded():
                return self._child_answer(process, scope, position, wait, event)
            case EventArrived(event=arrived):
                self._record(
                    "EventReceived",
                    name,
                    type=arrived.get("type") if isinstance(arrived, dict) else None,
                    key=arrived.get("key") if isinstance(arrived, dict) else None,
                    eventKey=arrived.get("eventKey") if isinstance(arrived, dict) else None,
                )
                self._abandon(position)
                return self._completed(process, scope, position, arrived)
            case TimerFired(timer_id=timer_id) if (
                timer_id == wait.timeout_timer and wait.ballot is not None
            ):
                return self._approval_expired(process, scope, position, wait.ballot)
            case TimerFired(timer_id=timer_id) if (
                wait.ballot is not None and timer_id == wait.ballot.escalation_timer
            ):
                return self._escalate(process, scope, position, wait.ballot)
            case TimerFired(timer_id=timer_id) if (
                wait.ballot is not None and timer_id in wait.ballot.reminder_timers
            ):
                ballot = wait.ballot
                self.effects.append(
                    RemindApproval(wait.id, name, tuple(ballot.pending()), ballot.expires_at)
                )
                spec = ballot.notify or NO_NOTIFY
                if spec.wants("Reminded"):
                    self.effects.append(
                        NotifyApprovers(wait.id, name, "Reminded", tuple(ballot.pending()), spec)
                    )
                self._record("ApprovalReminded", name, pending=ballot.pending())
                remaining = tuple(t for t in ballot.reminder_timers if t != timer_id)
                ballot = ballot.model_copy(update={"reminder_timers": remaining})
                return _Blocked(
                    position.model_copy(update={"wait": wait.model_copy(update={"ballot": ballot})})
                )
            case TimerFired(timer_id=timer_id) if (
                timer_id == wait.timeout_timer and wait.kind == "http"
            ):
                self._abandon(position)
                self._record("TaskTimedOut", name)
                return Failure(
                    errors.HTTP_TIMEOUT, f"State {name}: the HTTP call was not answered in time"
                )
            case TimerFired(timer_id=timer_id) if timer_id == wait.timeout_timer:
                self._abandon(position)
                self._record("TaskTimedOut", name)
                return Failure(errors.TIMEOUT, f"State {name} exceeded its TimeoutSeconds")
            case TimerFired(timer_id=timer_id) if timer_id == wait.heartbeat_timer:
                self._abandon(position)
                self._record("TaskTimedOut", name, heartbeat=True)
                return Failure(errors.HEARTBEAT_TIMEOUT, f"State {name} missed its heartbeat")
            case TimerFired() if wait.kind == "retry":
                self._record("RetryStarted", name, attempt=position.retry_count)
                again = Position(
                    state=name,
                    input=position.input,
                    entered_at=self.now,
                    attempts=position.attempts,
                    retry_count=position.retry_count,
                )
                return self._execute(process, scope, again)
            case TimerFired():
                state = scope.machine.states[name]
                assert isinstance(state, WaitState)
                self._record("WaitEnded", name)
                try:
                    context = self._context(process, scope, position)
                    if self._is_jsonata(state):
                        bindings = self._bindings(scope, context, input=position.input)
                        output = self._output(state, bindings, position.input)
                        self._assign_jsonata(scope, state.assign, bindings)
                        self._search_jsonata(name, state.search_attributes, bindings)
                        return _flow(state.next, bool(state.end), output)
                    data = input_path(state.input_path, position.input, context)
                    self._assign(scope, state.assign, data, context)
                    self._search(name, state.search_attributes, data, context)
                    return _flow(
                        state.next, bool(state.end), output_path(state.output_path, data, context)
                    )
                except StatesError as exc:
                    return self._state_failed(exc, position)
        raise AssertionError(f"unexpected input {event!r}")

    def _heartbeat(self, position: Position, wait: Wait) -> _Outcome:
        self._record("TaskHeartbeat", position.state)
        if wait.heartbeat_timer is None or wait.heartbeat_seconds is None:
            return _Blocked(position)
        timer = self.entropy.new_id()
        self.effects.append(CancelTimer(wait.heartbeat_timer))
        self.effects.append(StartTimer(timer, self.now + timedelta(seconds=wait.heartbeat_seconds)))
        new_wait = wait.model_copy(
            update={
                "heartbeat_timer": timer,
                "heartbeat_at": self.now + timedelta(seconds=wait.heartbeat_seconds),
            }
        )
        return _Blocked(position.model_copy(update={"wait": new_wait}))

    # ----------------------------------------------------------------- simple states

    def _inspect_entry(self, state: object, position: Position, context: JSON) -> None:
        """TestState: what the states that only read their input made of it (InputPath)."""
        if isinstance(state, ChoiceState | WaitState | SucceedState):
            data = input_path(state.input_path, position.input, context)
            self._inspect(position.state, "afterInputPath", data)
        elif isinstance(state, FailState):
            self._inspect(position.state, "afterInputPath", position.input)

    def _pass(self, scope: _Scope, state: PassState, position: Position, context: JSON) -> _Outcome:
        raw_input, name = position.input, position.state
        if self._is_jsonata(state):
            bindings = self._bindings(scope, context, input=raw_input)
            output = self._output(state, bindings, raw_input)
            self._assign_jsonata(scope, state.assign, bindings)
            self._search_jsonata(name, state.search_attributes, bindings)
            if state.assign:
                self._inspect(name, "variables", scope.variables())
            return _flow(state.next, bool(state.end), output)
        data = input_path(state.input_path, raw_input, context)
        if not state.has_result:
            self._inspect(name, "afterInputPath", data)
        if state.has_result:
            result = state.result
            self._inspect(name, "result", result)
        elif state.parameters is not None:
            try:
                result = self._template(state.parameters, data, context)
            except StatesError as exc:
                if exc.error != errors.PARAMETER_PATH_FAILURE:
                    raise
                # AWS fails a Pass state's missing Parameters path with States.Runtime (a
                # Task's with States.ParameterPathFailure).
                raise StatesError(errors.RUNTIME, exc.cause) from None
        else:
            result = data
        if not state.has_result:
            self._inspect(name, "afterParameters", result)
        self._inspect(name, "afterResultSelector", result)
        self._assign(scope, state.assign, result, context)
        self._search(name, state.search_attributes, result, context)
        if state.assign:
            self._inspect(name, "variables", scope.variables())
        merged = paths.put_result(raw_input, state.result_path, result)
        self._inspect(name, "afterResultPath", merged)
        return _flow(state.next, bool(state.end), output_path(state.output_path, merged, context))

    def _choice(
        self, scope: _Scope, state: ChoiceState, position: Position, context: JSON
    ) -> _Outcome:
        if self._is_jsonata(state):
            bindings = self._bindings(scope, context, input=position.input)
            for index, rule in enumerate(state.choices):
                condition = self._evaluate(rule.get("Condition"), bindings, f"Choices[{index}]")
                if not isinstance(condition, bool):
                    raise StatesError(
                        errors.QUERY_EVALUATION_ERROR,
                        f"Choices[{index}].Condition must yield a boolean, not {condition!r}",
                    )
                if condition:
                    output = self._output_of(rule, bindings, position.input)
                    self._assign_jsonata(scope, rule.get("Assign"), bindings)
                    self._search_jsonata(position.state, state.search_attributes, bindings)
                    return _Next(str(rule["Next"]), output)
            target = choice.choose([], state.default, position.input, context)
            output = self._output(state, bindings, position.input)
            self._assign_jsonata(scope, state.assign, bindings)
            self._search_jsonata(position.state, state.search_attributes, bindings)
            return _Next(target, output)
        data = input_path(state.input_path, position.input, context)
        output = output_path(state.output_path, data, context)
        for rule in state.choices:
            if choice.evaluate_rule(rule, data, context):
                self._assign(scope, rule.get("Assign"), data, context)
                self._search(position.state, state.search_attributes, data, context)
                return _Next(str(rule["Next"]), output)
        # Raises States.NoChoiceMatched when there is no Default either.
        target = choice.choose([], state.default, data, context)
        self._assign(scope, state.assign, data, context)
        self._search(position.state, state.search_attributes, data, context)
        return _Next(target, output)

    def _wait(self, scope: _Scope, state: WaitState, position: Position, context: JSON) -> _Outcome:
        if self._is_jsonata(state):
            bindings = self._bindings(scope, context, input=position.input)
            due = self._jsonata_due(state, bindings)
            if due <= self.now:
                output = self._output(state, bindings, position.input)
                self._assign_jsonata(scope, state.assign, bindings)
                self._search_jsonata(position.state, state.search_attributes, bindings)
                return _flow(state.next, bool(state.end), output)
        else:
            data = input_path(state.input_path, position.input, context)
            due = wait_due(state, data, context, self.now)
            if due <= self.now:
                self._assign(scope, state.assign, data, context)
                self._search(position.state, state.search_attributes, data, context)
                return _flow(
                    state.next, bool(state.end), output_path(state.output_path, data, context)
                )
        timer = self.entropy.new_id()
        self.effects.append(StartTimer(timer, due))
        self._record("WaitStarted", position.state, until=iso(due))
        return _Blocked(
            position.model_copy(update={"wait": Wait(id=timer, kind="wait", timer=timer)})
        )


def _targets(wait: Wait, event: Input) -> bool:
    """Whether ``event`` is what ``wait`` waits for."""
    match event:
        case (
            TaskSucceeded(wait_id=wait_id)
            | TaskFailed(wait_id=wait_id)
            | TaskHeartbeat(wait_id=wait_id)
        ):
            return wait.kind == "callback" and wait.id == wait_id
        case ApprovalDecided(wait_id=wait_id) | SeatChanged(wait_id=wait_id):
            return wait.kind == "approval" and wait.id == wait_id
        case EventArrived(wait_id=wait_id):
            return wait.kind == "event" and wait.id == wait_id
        case HttpAnswered(wait_id=wait_id):
            return wait.kind == "http" and wait.id == wait_id
        case (
            ChildStarted(wait_id=wait_id)
            | ChildNotStarted(wait_id=wait_id)
            | ChildEnded(wait_id=wait_id)
        ):
            return wait.kind == "child" and wait.id == wait_id
        case TimerFired(timer_id=timer_id):
            reminders = wait.ballot.reminder_timers if wait.ballot else ()
            escalation = wait.ballot.escalation_timer if wait.ballot else None
            timers = (wait.timeout_timer, wait.heartbeat_timer, wait.timer, escalation, *reminders)
            return timer_id is not None and timer_id in timers
    return False
