"""The interpreter: one pure step of a process.

``step(definition, process, input, now, entropy) -> Step`` applies one input (a start, a callback,
a decision, a fired timer, a stop) and runs the process forward until it waits or ends. It reads no
clock (``now`` comes in), draws randomness only from ``entropy``, and performs no I/O: everything
the outside world must do comes back as effects, everything that happened as history entries.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from bridge.asl import approvals, children, choice, errors, http_task, intrinsics, jsonata, paths
from bridge.asl.dataflow import (
    MAX_PAYLOAD_BYTES,
    count,
    event_subscriptions,
    fixed,
    input_path,
    iso,
    kafka_message,
    optional_count,
    optional_percentage,
    output_path,
    parse_timestamp,
    read_or_runtime,
    seconds,
    text,
    too_large,
    wait_due,
)
from bridge.asl.effects import (
    CancelTimer,
    CloseWait,
    ConcludeApproval,
    Effect,
    ExpectCallback,
    ExpectEvent,
    HistoryEntry,
    InvokeHttp,
    NotifyParent,
    RecordVote,
    RemindApproval,
    RequestApproval,
    SendMessage,
    StartChild,
    StartTimer,
    StopChild,
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
    Start,
    Stop,
    TaskFailed,
    TaskHeartbeat,
    TaskSucceeded,
    TimerFired,
)
from bridge.asl.model import (
    APPROVAL,
    EVENT_WAIT,
    HTTP_INVOKE,
    PROCESS_START,
    PROCESS_START_SYNC,
    SEND,
    SEND_WAIT,
    ChoiceState,
    Definition,
    FailState,
    Machine,
    MapState,
    ParallelState,
    PassState,
    SucceedState,
    TaskState,
    WaitState,
)
from bridge.asl.process import Branch, Position, Process, ProcessStatus, Wait

JSON = Any

#: Transitions one step may make without waiting; a loop of Pass and Choice states that never
#: waits would otherwise hold a worker forever.
MAX_TRANSITIONS_PER_STEP = 1000


class Entropy(Protocol):
    """Every source of randomness the interpreter may use (injected, so tests can fix it)."""

    def new_id(self) -> str: ...

    def new_token(self) -> str: ...

    def random_int(self, low: int, high: int) -> int: ...

    def uuid4(self) -> str: ...


@dataclass(frozen=True)
class Step:
    """The outcome of one step. ``rejected`` says why the input did not apply (nothing changed)."""

    process: Process | None
    effects: tuple[Effect, ...] = ()
    history: tuple[HistoryEntry, ...] = ()
    rejected: str | None = None


def step(
    definition: Definition,
    process: Process | None,
    event: Input,
    now: datetime,
    entropy: Entropy,
) -> Step:
    """Apply ``event`` to ``process`` (None for a start) and run until the process waits or ends."""
    if isinstance(event, Audit):
        if process is None:
            return Step(None, rejected="no such process")
        entry = HistoryEntry(now, event.kind, event.state, dict(event.details))
        return Step(process, (), (entry,))
    if isinstance(event, Start):
        if process is not None:
            return Step(process, rejected=f"process {process.id} already exists")
        return _Run(definition, now, entropy).start(event)
    if process is None:
        return Step(None, rejected="no such process")
    if isinstance(event, Redrive):
        if not process.status.can_become(ProcessStatus.RUNNING) or process.position is None:
            return Step(process, rejected=f"a {process.status.value} process cannot be redriven")
        return _Run(definition, now, entropy).redrive(process)
    if process.status.ended:
        return Step(process, rejected=f"process is {process.status.value}")
    return _Run(definition, now, entropy).resume(process, event)


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
class _Run:
    """Accumulates one step's effects and history; discarded when the step returns."""

    definition: Definition
    now: datetime
    entropy: Entropy
    effects: list[Effect] = field(default_factory=list)
    history: list[HistoryEntry] = field(default_factory=list)
    transitions: int = 0

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
        )
        self._record("ProcessStarted", None, input=event.input, **event.origin)
        if (limit := self.definition.max_seconds) is not None:
            timer = self.entropy.new_id()
            self.effects.append(StartTimer(timer, self.now + timedelta(seconds=limit)))
            process = process.model_copy(update={"timeout_timer": timer})
        position = self._enter(self.definition.start_at, event.input)
        scope = _Scope(self.definition)
        return self._conclude(process, scope, self._drive(process, scope, position))

    def redrive(self, process: Process) -> Step:
        """Like Step Functions' RedriveExecution: the same process, from the state that ended it."""
        assert process.position is not None
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
        self._record("StateEntered", name, input=raw_input)
        return Position(state=name, input=raw_input, entered_at=self.now)

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
        if isinstance(outcome, _Next | _End) and too_large(outcome.output):
            outcome = Failure(
                errors.DATA_LIMIT_EXCEEDED,
                f"The state/task output of {position.state} exceeds {MAX_PAYLOAD_BYTES} bytes",
            )
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
        context = _context(process, scope, position)
        try:
            match state:
                case PassState():
                    return self._pass(scope, state, position.input, context)
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
                            text(self._evaluate(state.error, bindings, "Error")),
                            text(self._evaluate(state.cause, bindings, "Cause")),
                        )
                    return self._fail_state(state, position.input, context)
                case ParallelState():
                    return self._parallel(process, scope, state, position, context)
                case MapState():
                    return self._map(process, scope, state, position, context)
        except StatesError as exc:
            return exc.as_failure()
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
                wait.ballot is not None and timer_id in wait.ballot.reminder_timers
            ):
                ballot = wait.ballot
                self.effects.append(
                    RemindApproval(wait.id, name, tuple(ballot.pending()), ballot.expires_at)
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
                    context = _context(process, scope, position)
                    if self._is_jsonata(state):
                        bindings = self._bindings(scope, context, input=position.input)
                        output = self._output(state, bindings, position.input)
                        self._assign_jsonata(scope, state.assign, bindings)
                        return _flow(state.next, bool(state.end), output)
                    data = input_path(state.input_path, position.input, context)
                    self._assign(scope, state.assign, data, context)
                    return _flow(
                        state.next, bool(state.end), output_path(state.output_path, data, context)
                    )
                except StatesError as exc:
                    return exc.as_failure()
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

    def _decided(
        self, process: Process, scope: _Scope, position: Position, event: ApprovalDecided
    ) -> _Outcome:
        wait = position.wait
        assert wait is not None
        ballot = wait.ballot or approvals.Ballot(seats=(approvals.ANYONE,))
        seat = event.seat or (ballot.seats[0] if len(ballot.seats) == 1 else None)
        if seat is None or seat not in ballot.seats:
            raise _Refused(f"{event.seat!r} is not a seat of this approval")
        if ballot.voted(seat):
            raise _Refused(f"{seat} has already decided")
        vote = approvals.Vote(
            seat=seat,
            approved=event.approved,
            decided_by=event.decided_by,
            comment=event.comment,
            at=self.now,
        )
        ballot = ballot.model_copy(update={"votes": (*ballot.votes, vote)})
        self.effects.append(
            RecordVote(wait.id, seat, event.approved, event.decided_by, event.comment)
        )
        self._record(
            "ApprovalVoted",
            position.state,
            seat=seat,
            decision="approve" if event.approved else "reject",
            decidedBy=event.decided_by,
            comment=event.comment,
        )
        outcome = ballot.tally()
        if outcome is None:
            updated = wait.model_copy(update={"ballot": ballot})
            return _Blocked(position.model_copy(update={"wait": updated}))
        return self._conclude_approval(process, scope, position, ballot, outcome)

    def _conclude_approval(
        self,
        process: Process,
        scope: _Scope,
        position: Position,
        ballot: approvals.Ballot,
        outcome: approvals.Outcome,
        *,
        expired: bool = False,
    ) -> _Outcome:
        assert position.wait is not None
        decision = approvals.record(ballot, outcome, self.now, expired=expired)
        self._record(
            "ApprovalDecided",
            position.state,
            outcome=outcome,
            expired=expired,
            decidedBy=decision["decidedBy"],
            comment=decision["comment"],
            votes=decision["votes"],
        )
        self.effects.append(ConcludeApproval(position.wait.id, "EXPIRED" if expired else outcome))
        self._abandon(position)
        if outcome == "APPROVED":
            return self._completed(process, scope, position, decision)
        return approvals.rejection(ballot, expired=expired).as_failure()

    def _approval_expired(
        self, process: Process, scope: _Scope, position: Position, ballot: approvals.Ballot
    ) -> _Outcome:
        self._record("ApprovalExpired", position.state, onExpiry=ballot.on_expiry)
        if ballot.on_expiry == "Approve":
            return self._conclude_approval(
                process, scope, position, ballot, "APPROVED", expired=True
            )
        if ballot.on_expiry == "Reject":
            return self._conclude_approval(
                process, scope, position, ballot, "REJECTED", expired=True
            )
        assert position.wait is not None
        self.effects.append(ConcludeApproval(position.wait.id, "EXPIRED"))
        self._abandon(position)
        return Failure(errors.TIMEOUT, f"The approval in {position.state} expired")

    def _abandon(self, position: Position | None) -> None:
        """Close every wait in this subtree: tokens and links stop working, timers are cancelled."""
        if position is None:
            return
        wait = position.wait
        if wait is not None:
            if wait.kind in ("callback", "approval", "event", "http"):
                self.effects.append(CloseWait(wait.id))
            if wait.kind == "child" and wait.child is not None:
                # Nobody waits for the child any more: it stops too (with its own children).
                self.effects.append(StopChild(wait.child, position.state))
            reminders = wait.ballot.reminder_timers if wait.ballot else ()
            for timer in (wait.timeout_timer, wait.heartbeat_timer, wait.timer, *reminders):
                if timer is not None:
                    self.effects.append(CancelTimer(timer))
        for branch in position.branches:
            if branch.status == "running":
                self._abandon(branch.position)

    # ----------------------------------------------------------------- simple states

    def _pass(self, scope: _Scope, state: PassState, raw_input: JSON, context: JSON) -> _Outcome:
        if self._is_jsonata(state):
            bindings = self._bindings(scope, context, input=raw_input)
            output = self._output(state, bindings, raw_input)
            self._assign_jsonata(scope, state.assign, bindings)
            return _flow(state.next, bool(state.end), output)
        data = input_path(state.input_path, raw_input, context)
        if state.has_result:
            result = state.result
        elif state.parameters is not None:
            result = self._template(state.parameters, data, context)
        else:
            result = data
        self._assign(scope, state.assign, result, context)
        merged = paths.put_result(raw_input, state.result_path, result)
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
                    return _Next(str(rule["Next"]), output)
            target = choice.choose([], state.default, position.input, context)
            output = self._output(state, bindings, position.input)
            self._assign_jsonata(scope, state.assign, bindings)
            return _Next(target, output)
        data = input_path(state.input_path, position.input, context)
        output = output_path(state.output_path, data, context)
        for rule in state.choices:
            if choice.evaluate_rule(rule, data, context):
                self._assign(scope, rule.get("Assign"), data, context)
                return _Next(str(rule["Next"]), output)
        # Raises States.NoChoiceMatched when there is no Default either.
        target = choice.choose([], state.default, data, context)
        self._assign(scope, state.assign, data, context)
        return _Next(target, output)

    def _wait(self, scope: _Scope, state: WaitState, position: Position, context: JSON) -> _Outcome:
        if self._is_jsonata(state):
            bindings = self._bindings(scope, context, input=position.input)
            due = self._jsonata_due(state, bindings)
            if due <= self.now:
                output = self._output(state, bindings, position.input)
                self._assign_jsonata(scope, state.assign, bindings)
                return _flow(state.next, bool(state.end), output)
        else:
            data = input_path(state.input_path, position.input, context)
            due = wait_due(state, data, context, self.now)
            if due <= self.now:
                self._assign(scope, state.assign, data, context)
                return _flow(
                    state.next, bool(state.end), output_path(state.output_path, data, context)
                )
        timer = self.entropy.new_id()
        self.effects.append(StartTimer(timer, due))
        self._record("WaitStarted", position.state, until=iso(due))
        return _Blocked(
            position.model_copy(update={"wait": Wait(id=timer, kind="wait", timer=timer)})
        )

    # ----------------------------------------------------------------- tasks

    def _task(
        self,
        process: Process,
        scope: _Scope,
        state: TaskState,
        position: Position,
        context: dict[str, JSON],
    ) -> _Outcome:
        token: str | None = None
        if state.resource == SEND_WAIT:
            token = self.entropy.new_token()
            context = {**context, "Task": {"Token": token}}
        if self._is_jsonata(state):
            bindings = self._bindings(scope, context, input=position.input)
            data = position.input
            parameters = (
                self._evaluate(state.arguments, bindings, "Arguments")
                if state.arguments is not None
                else data
            )
            timeout = self._jsonata_seconds(state.timeout_seconds, bindings, "TimeoutSeconds")
            heartbeat = self._jsonata_seconds(state.heartbeat_seconds, bindings, "HeartbeatSeconds")
        else:
            data = input_path(state.input_path, position.input, context)
            parameters = (
                self._template(state.parameters, data, context)
                if state.parameters is not None
                else data
            )
            timeout = seconds(
                fixed(state.timeout_seconds), state.timeout_seconds_path, data, context
            )
            heartbeat = seconds(
                fixed(state.heartbeat_seconds), state.heartbeat_seconds_path, data, context
            )
        if state.resource in (PROCESS_START, PROCESS_START_SYNC):
            return self._start_child(process, state, position, parameters, timeout)
        if state.resource in (SEND, SEND_WAIT):
            message = kafka_message(parameters, state.resource)
            message_id = self.entropy.new_id()
            self.effects.append(
                SendMessage(
                    message_id=message_id,
                    topic=message["topic"],
                    key=message["key"],
                    value=message["value"],
                    headers=message["headers"],
                    state=position.state,
                )
            )
            self._record(
                "CommandEmitted",
                position.state,
                topic=message["topic"],
                key=message["key"],
                messageId=message_id,
                waitsForCallback=token is not None,
            )
            if token is None:
                result = {"MessageId": message_id, "Topic": message["topic"]}
                return self._completed(process, scope, position, result)
            wait_id = self.entropy.new_id()
            self.effects.append(ExpectCallback(wait_id, token, position.state))
            wait = self._wait_with_timers(wait_id, "callback", timeout, heartbeat)
            return _Blocked(position.model_copy(update={"wait": wait}))
        if state.resource == EVENT_WAIT:
            subscriptions = event_subscriptions(parameters, position.state)
            wait_id = self.entropy.new_id()
            self.effects.append(ExpectEvent(wait_id, position.state, subscriptions))
            self._record(
                "EventWaitStarted",
                position.state,
                events=[{"topic": t, "type": e, "key": k} for t, e, k in subscriptions],
            )
            wait = self._wait_with_timers(wait_id, "event", timeout, None)
            return _Blocked(position.model_copy(update={"wait": wait}))
        if state.resource == APPROVAL:
            return self._request_approval(state, position, parameters, data, timeout)
        if state.resource == HTTP_INVOKE:
            return self._invoke_http(position, parameters, timeout)
        raise AssertionError(f"unvalidated resource {state.resource}")

    def _invoke_http(self, position: Position, parameters: JSON, timeout: int | None) -> _Outcome:
        """Ask the shell for the call (``InvokeHttp``) and wait for its answer.

        TimeoutSeconds (60 s when unset) bounds the call; the wait's own deadline comes
        ``DEADLINE_GRACE_SECONDS`` later, so that the call's answer, even ``Http.Timeout``,
        arrives before it. The deadline ends the state only when no worker answered.
        """
        request = http_task.build_request(parameters)
        seconds = timeout if timeout is not None else http_task.DEFAULT_TIMEOUT_SECONDS
        deadline = self.now + timedelta(seconds=seconds)
        wait_id = self.entropy.new_id()
        self.effects.append(
            InvokeHttp(wait_id, position.state, request.to_json(), seconds, deadline)
        )
        self._record(
            "HttpInvoked",
            position.state,
            callId=wait_id,
            timeoutSeconds=seconds,
            **request.redacted(),
        )
        timer = self.entropy.new_id()
        ends = deadline + timedelta(seconds=http_task.DEADLINE_GRACE_SECONDS)
        self.effects.append(StartTimer(timer, ends))
        wait = Wait(id=wait_id, kind="http", timeout_timer=timer, timeout_at=ends)
        return _Blocked(position.model_copy(update={"wait": wait}))

    def _http_answered(
        self, process: Process, scope: _Scope, position: Position, event: HttpAnswered
    ) -> _Outcome:
        """A 2xx response is the task's result; any other status, or no response, fails it."""
        name = position.state
        self._abandon(position)
        if event.error is not None:
            self._record("TaskFailed", name, error=event.error, cause=event.cause)
            return Failure(event.error, event.cause)
        response = event.response if isinstance(event.response, dict) else {}
        failure = http_task.failure_of(response)
        if failure is not None:
            self._record("TaskFailed", name, error=failure.error, cause=failure.cause)
            return failure
        self._record("TaskSucceeded", name, output=http_task.redact_result(response))
        return self._completed(process, scope, position, response)

    def _start_child(
        self,
        process: Process,
        state: TaskState,
        position: Position,
        parameters: JSON,
        timeout: int | None,
    ) -> _Outcome:
        """Ask the shell for a child process and wait for its start (and, ``.sync``, its end)."""
        asked = children.request(parameters, state.resource)
        depth = (process.parent.depth if process.parent else 0) + 1
        if depth > children.MAX_DEPTH:
            return Failure(
                errors.NESTING_TOO_DEEP,
                f"State {position.state}: processes nest at most {children.MAX_DEPTH} deep",
            )
        sync = state.resource == PROCESS_START_SYNC
        child = (
            children.child_id(process.id, asked.name)
            if asked.name is not None
            else self.entropy.new_id()
        )
        wait_id = self.entropy.new_id()
        self.effects.append(
            StartChild(
                child_id=child,
                wait_id=wait_id,
                state=position.state,
                definition=asked.definition,
                input=asked.input,
                name=asked.name,
                correlation_key=asked.correlation_key,
                sync=sync,
                depth=depth,
            )
        )
        wait = self._wait_with_timers(wait_id, "child", timeout if sync else None, None)
        wait = wait.model_copy(update={"kind": "child", "child": child, "sync": sync})
        return _Blocked(position.model_copy(update={"wait": wait}))

    def _child_answer(
        self,
        process: Process,
        scope: _Scope,
        position: Position,
        wait: Wait,
        event: ChildStarted | ChildNotStarted | ChildEnded,
    ) -> _Outcome:
        name = position.state
        if isinstance(event, ChildNotStarted):
            self._record("ChildNotStarted", name, error=event.error, cause=event.cause)
            self._close_child_wait(wait)
            return Failure(event.error, event.cause)
        if isinstance(event, ChildStarted):
            self._record(
                "ChildStarted",
                name,
                processId=event.process_id,
                definition=event.definition,
                version=event.version,
                name=event.name,
                sync=wait.sync,
                existing=event.existing,
            )
            if wait.sync:
                return _Blocked(position)
            self._close_child_wait(wait)
            result = children.started(event.process_id, iso(event.started_at))
            return self._completed(process, scope, position, result)
        outcome = children.result(event)
        self._close_child_wait(wait)
        if isinstance(outcome, Failure):
            self._record(
                "ChildEnded",
                name,
                processId=event.process_id,
                status=event.status,
                error=outcome.error,
                cause=outcome.cause,
            )
            return outcome
        self._record(
            "ChildEnded", name, processId=event.process_id, status=event.status, output=event.output
        )
        return self._completed(process, scope, position, outcome)

    def _close_child_wait(self, wait: Wait) -> None:
        """The child wait ended with an answer: only its timeout timer goes."""
        if wait.timeout_timer is not None:
            self.effects.append(CancelTimer(wait.timeout_timer))

    def _request_approval(
        self,
        state: TaskState,
        position: Position,
        parameters: JSON,
        data: JSON,
        timeout: int | None,
    ) -> _Outcome:
        request = parameters if isinstance(parameters, dict) else {}
        ballot = approvals.ballot_of(request, position.state)
        reminders = approvals.reminders_of(request, position.state)
        wait_id = self.entropy.new_id()
        title = request.get("Title") or f"{self.definition.name}: {position.state}"
        description = request.get("Description")
        expires_at = self.now + timedelta(seconds=timeout) if timeout is not None else None
        self.effects.append(
            RequestApproval(
                wait_id=wait_id,
                state=position.state,
                title=str(title),
                description=None if description is None else str(description),
                data=request.get("Data", data),
                seats=ballot.seats,
                rule=ballot.rule,
                expires_at=expires_at,
                on_expiry=ballot.on_expiry,
            )
        )
        timers = []
        if expires_at is not None:
            for seconds in reminders:
                due = expires_at - timedelta(seconds=seconds)
                if due > self.now:
                    timer = self.entropy.new_id()
                    self.effects.append(StartTimer(timer, due))
                    timers.append(timer)
        self._record(
            "ApprovalRequested",
            position.state,
            title=str(title),
            seats=list(ballot.seats),
            rule=ballot.rule,
            expiresAt=iso(expires_at) if expires_at else None,
        )
        wait = self._wait_with_timers(wait_id, "approval", timeout, None)
        ballot = ballot.model_copy(
            update={"reminder_timers": tuple(timers), "expires_at": expires_at}
        )
        return _Blocked(
            position.model_copy(update={"wait": wait.model_copy(update={"ballot": ballot})})
        )

    def _wait_with_timers(
        self, wait_id: str, kind: str, timeout: int | None, heartbeat: int | None
    ) -> Wait:
        timeout_timer = heartbeat_timer = None
        if timeout is not None:
            timeout_timer = self.entropy.new_id()
            self.effects.append(StartTimer(timeout_timer, self.now + timedelta(seconds=timeout)))
        if heartbeat is not None:
            heartbeat_timer = self.entropy.new_id()
            self.effects.append(
                StartTimer(heartbeat_timer, self.now + timedelta(seconds=heartbeat))
            )
        return Wait(
            id=wait_id,
            kind="callback" if kind == "callback" else "event" if kind == "event" else "approval",
            timeout_at=self.now + timedelta(seconds=timeout) if timeout is not None else None,
            heartbeat_at=self.now + timedelta(seconds=heartbeat) if heartbeat is not None else None,
            timeout_timer=timeout_timer,
            heartbeat_timer=heartbeat_timer,
            heartbeat_seconds=heartbeat,
        )

    def _completed(
        self, process: Process, scope: _Scope, position: Position, result: JSON
    ) -> _Outcome:
        """A Task, Parallel or Map state has its result: ResultSelector, ResultPath, OutputPath."""
        state = scope.machine.states[position.state]
        assert isinstance(state, TaskState | ParallelState | MapState)
        try:
            context = _context(process, scope, position)
            if self._is_jsonata(state):
                bindings = self._bindings(scope, context, input=position.input, result=result)
                output = self._output(state, bindings, result)
                self._assign_jsonata(scope, state.assign, bindings)
                return _flow(state.next, bool(state.end), output)
            if state.result_selector is not None:
                result = self._template(state.result_selector, result, context)
            self._assign(scope, state.assign, result, context)
            merged = paths.put_result(position.input, state.result_path, result)
            return _flow(
                state.next, bool(state.end), output_path(state.output_path, merged, context)
            )
        except StatesError as exc:
            return exc.as_failure()

    # ----------------------------------------------------------------- Parallel and Map

    def _parallel(
        self,
        process: Process,
        scope: _Scope,
        state: ParallelState,
        position: Position,
        context: JSON,
    ) -> _Outcome:
        if self._is_jsonata(state):
            bindings = self._bindings(scope, context, input=position.input)
            data = position.input
            if state.arguments is not None:
                data = self._evaluate(state.arguments, bindings, "Arguments")
        else:
            data = input_path(state.input_path, position.input, context)
            if state.parameters is not None:
                data = self._template(state.parameters, data, context)
        branches = tuple(Branch(index=index, input=data) for index in range(len(state.branches)))
        started = position.model_copy(update={"branches": branches})
        return self._settle(process, scope, started)

    def _map(
        self,
        process: Process,
        scope: _Scope,
        state: MapState,
        position: Position,
        context: dict[str, JSON],
    ) -> _Outcome:
        if self._is_jsonata(state):
            bindings = self._bindings(scope, context, input=position.input)
            data = position.input
            items = (
                self._evaluate(state.items, bindings, "Items") if state.items is not None else data
            )
            limits = {
                "max_concurrency": self._jsonata_count(state.max_concurrency, bindings),
                "tolerated_failure_count": self._jsonata_count(
                    state.tolerated_failure_count, bindings
                ),
                "tolerated_failure_percentage": self._jsonata_count(
                    state.tolerated_failure_percentage, bindings
                ),
            }
        else:
            data = input_path(state.input_path, position.input, context)
            if state.items is not None:
                items = self._template(state.items, data, context)
            else:
                items = read_or_runtime(state.items_path or "$", data, context)
            limits = {
                "max_concurrency": count(
                    fixed(state.max_concurrency),
                    state.max_concurrency_path,
                    data,
                    "MaxConcurrency",
                ),
                "tolerated_failure_count": optional_count(
                    fixed(state.tolerated_failure_count),
                    state.tolerated_failure_count_path,
                    data,
                ),
                "tolerated_failure_percentage": optional_percentage(
                    fixed(state.tolerated_failure_percentage),
                    state.tolerated_failure_percentage_path,
                    data,
                ),
            }
        if not isinstance(items, list):
            raise StatesError(
                errors.RUNTIME,
                f"Map state {position.state}: the items must be an array, "
                f"not {type(items).__name__}",
            )
        selector = state.item_selector if state.item_selector is not None else state.parameters
        branches = []
        for index, item in enumerate(items):
            branch_input = item
            if selector is not None:
                item_context = {**context, "Map": {"Item": {"Index": index, "Value": item}}}
                if self._is_jsonata(state):
                    item_bindings = self._bindings(scope, item_context, input=position.input)
                    branch_input = self._evaluate(selector, item_bindings, "ItemSelector")
                else:
                    branch_input = self._template(selector, data, item_context)
            branches.append(Branch(index=index, input=branch_input, item=item))
        started = position.model_copy(update={"branches": tuple(branches), **limits})
        self._record("MapStarted", position.state, length=len(items))
        return self._settle(process, scope, started)

    def _settle(self, process: Process, scope: _Scope, position: Position) -> _Outcome:
        """Start what may start, and decide whether a Parallel or Map state is done or failed."""
        state = scope.machine.states[position.state]
        assert isinstance(state, ParallelState | MapState)
        while True:
            branches = list(position.branches)
            failure = self._branch_failure(state, position)
            if failure is not None:
                for branch in branches:
                    if branch.status == "running":
                        self._abandon(branch.position)
                aborted = tuple(
                    b.model_copy(update={"status": "aborted"}) if not b.done else b
                    for b in branches
                )
                position = position.model_copy(update={"branches": aborted})
                return failure
            running = sum(1 for branch in branches if branch.status == "running")
            limit = position.max_concurrency or len(branches)
            waiting = [branch for branch in branches if branch.status == "pending"]
            if not waiting or running >= limit:
                break
            branch = waiting[0]
            branches[branch.index] = self._start_branch(process, scope, position, branch)
            position = position.model_copy(update={"branches": tuple(branches)})
        if all(branch.done for branch in position.branches):
            results = [
                branch.output
                if branch.status == "succeeded"
                else {"Error": branch.error, "Cause": branch.cause}
                for branch in position.branches
            ]
            return self._completed(
                process, scope, position.model_copy(update={"branches": ()}), results
            )
        return _Blocked(position)

    def _branch_failure(
        self, state: ParallelState | MapState, position: Position
    ) -> Failure | None:
        failed = [branch for branch in position.branches if branch.status == "failed"]
        if not failed:
            return None
        first = failed[0]
        if isinstance(state, ParallelState):
            return Failure(first.error or "", first.cause or "")
        count, percentage = position.tolerated_failure_count, position.tolerated_failure_percentage
        if count is None and percentage is None:
            return Failure(first.error or "", first.cause or "")
        total = len(position.branches)
        over_count = count is not None and len(failed) > count
        over_percentage = percentage is not None and len(failed) * 100 > percentage * total
        if over_count or over_percentage or (count is None and percentage is None):
            return Failure(
                errors.EXCEED_TOLERATED_FAILURE_THRESHOLD,
                f"Map state {position.state}: {len(failed)} of {total} items failed, more than "
                "the tolerated failures",
            )
        return None

    def _branch_scope(self, scope: _Scope, position: Position, branch: Branch) -> _Scope:
        state = scope.machine.states[position.state]
        outer, own = scope.variables(), dict(branch.variables)
        if isinstance(state, ParallelState):
            return _Scope(state.branches[branch.index], scope.map_item, outer, own)
        assert isinstance(state, MapState)
        return _Scope(state.processor, (branch.index, branch.item), outer, own)

    def _start_branch(
        self, process: Process, scope: _Scope, position: Position, branch: Branch
    ) -> Branch:
        inner = self._branch_scope(scope, position, branch)
        self._record("BranchStarted", position.state, index=branch.index)
        first = self._enter(inner.machine.start_at, branch.input)
        running = branch.model_copy(update={"status": "running"})
        result = self._drive(process, inner, first)
        return self._branch_after(position.state, running, result, inner)

    def _branch_after(
        self, parent: str, branch: Branch, result: _FrameResult, inner: _Scope
    ) -> Branch:
        if inner.own != branch.variables:
            branch = branch.model_copy(update={"variables": inner.own})
        match result:
            case _Waiting(position=position):
                return branch.model_copy(update={"position": position})
            case _Ended(output=output):
                self._record("BranchSucceeded", parent, index=branch.index)
                return branch.model_copy(
                    update={"status": "succeeded", "output": output, "position": None}
                )
            case _Failed(failure=failure):
                self._record(
                    "BranchFailed",
                    parent,
                    index=branch.index,
                    error=failure.error,
                    cause=failure.cause,
                )
                return branch.model_copy(
                    update={
                        "status": "failed",
                        "error": failure.error,
                        "cause": failure.cause,
                        "position": None,
                    }
                )

    # ----------------------------------------------------------------- errors

    def _recover(
        self, process: Process, scope: _Scope, position: Position, failure: Failure
    ) -> _FrameResult | Position:
        """Retry, then Catch, then fail the frame: the order AWS applies them in."""
        state = scope.machine.states[position.state]
        if not isinstance(state, TaskState | ParallelState | MapState):
            return _Failed(failure, position)
        for index, retrier in enumerate(state.retry):
            if not errors.error_matches(retrier.error_equals, failure.error):
                continue
            attempts = list(position.attempts) + [0] * (len(state.retry) - len(position.attempts))
            if attempts[index] >= retrier.max_attempts:
                break
            delay = retrier.interval_seconds * retrier.backoff_rate ** attempts[index]
            if retrier.max_delay_seconds is not None:
                delay = min(delay, retrier.max_delay_seconds)
            if retrier.jitter_strategy == "FULL":
                delay = self.entropy.random_int(0, int(delay * 1000) + 1) / 1000
            attempts[index] += 1
            timer = self.entropy.new_id()
            self.effects.append(StartTimer(timer, self.now + timedelta(seconds=delay)))
            self._record(
                "RetryScheduled",
                position.state,
                error=failure.error,
                cause=failure.cause,
                attempt=attempts[index],
                delaySeconds=delay,
            )
            return _Waiting(
                position.model_copy(
                    update={
                        "wait": Wait(id=timer, kind="retry", timer=timer),
                        "attempts": tuple(attempts),
                        "retry_count": position.retry_count + 1,
                        "branches": (),
                    }
                )
            )
        for catcher in state.catch:
            if errors.error_matches(catcher.error_equals, failure.error):
                error_output = {"Error": failure.error, "Cause": failure.cause}
                self._record(
                    "ErrorCaught", position.state, error=failure.error, cause=failure.cause
                )
                try:
                    context = _context(process, scope, position)
                    if self._is_jsonata(state):
                        bindings = self._bindings(
                            scope, context, input=position.input, errorOutput=error_output
                        )
                        output = self._output_of(
                            catcher.model_dump(by_alias=True, exclude_unset=True),
                            bindings,
                            error_output,
                        )
                        self._assign_jsonata(scope, catcher.assign, bindings)
                    else:
                        self._assign(scope, catcher.assign, error_output, context)
                        output = paths.put_result(position.input, catcher.result_path, error_output)
                except StatesError as exc:
                    return _Failed(exc.as_failure(), position)
                self._record("StateExited", position.state, output=output)
                return self._transition(catcher.next, output, position)
        return _Failed(failure, position)

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
        return Step(process, tuple(self.effects), tuple(self.history))

    def _reject(self, process: Process, reason: str) -> Step:
        return Step(process, rejected=reason)

    # ----------------------------------------------------------------- helpers

    def _record(self, kind: str, state: str | None, **details: JSON) -> None:
        if self.definition.keeps(kind):
            self.history.append(HistoryEntry(self.now, kind, state, dict(details)))

    def _assign(
        self, scope: _Scope, assign: Mapping[str, JSON] | None, source: JSON, context: JSON
    ) -> None:
        """Set workflow variables; every value is computed before any is set, as AWS does."""
        if not assign:
            return
        values = self._template(dict(assign), source, context)
        assert isinstance(values, dict)
        scope.own.update(values)

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
        scope.own.update(values)

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
        timestamp = self._evaluate(state.timestamp, bindings, "Timestamp")
        return parse_timestamp(timestamp, "Timestamp")

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
        return Failure(error or "", cause or "")

    def _template(self, template: JSON, data: JSON, context: JSON) -> JSON:
        return paths.apply_template(template, data, context, intrinsics=self.entropy)


def _targets(wait: Wait, event: Input) -> bool:
    """Whether ``event`` is what ``wait`` waits for."""
    match event:
        case (
            TaskSucceeded(wait_id=wait_id)
            | TaskFailed(wait_id=wait_id)
            | TaskHeartbeat(wait_id=wait_id)
        ):
            return wait.kind == "callback" and wait.id == wait_id
        case ApprovalDecided(wait_id=wait_id):
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
            return timer_id in (wait.timeout_timer, wait.heartbeat_timer, wait.timer, *reminders)
    return False


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
