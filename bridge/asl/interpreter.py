"""The interpreter: one pure step of a process.

``step(definition, process, input, now, entropy) -> Step`` applies one input (a start, a callback,
a decision, a fired timer, a stop) and runs the process forward until it waits or ends. It reads no
clock (``now`` comes in), draws randomness only from ``entropy``, and performs no I/O: everything
the outside world must do comes back as effects, everything that happened as history entries.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from bridge.asl import choice, errors, paths
from bridge.asl.effects import (
    CancelTimer,
    CloseWait,
    Effect,
    ExpectCallback,
    HistoryEntry,
    RequestApproval,
    SendMessage,
    StartTimer,
)
from bridge.asl.errors import Failure, StatesError
from bridge.asl.inputs import (
    ApprovalDecided,
    Input,
    Start,
    Stop,
    TaskFailed,
    TaskHeartbeat,
    TaskSucceeded,
    TimerFired,
)
from bridge.asl.model import (
    APPROVAL,
    SEND,
    SEND_WAIT,
    ChoiceState,
    Definition,
    FailState,
    PassState,
    SucceedState,
    TaskState,
    WaitState,
)
from bridge.asl.process import Position, Process, ProcessStatus, Wait

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
    if isinstance(event, Start):
        if process is not None:
            return Step(process, rejected=f"process {process.id} already exists")
        return _Run(definition, now, entropy).start(event)
    if process is None:
        return Step(None, rejected="no such process")
    if process.status.ended:
        return Step(process, rejected=f"process is {process.status.value}")
    return _Run(definition, now, entropy).resume(process, event)


@dataclass(frozen=True)
class _Next:
    state: str
    output: JSON


@dataclass(frozen=True)
class _End:
    output: JSON


@dataclass(frozen=True)
class _Blocked:
    wait: Wait


_Outcome = _Next | _End | _Blocked | Failure


@dataclass
class _Run:
    """Accumulates one step's effects and history; discarded when the step returns."""

    definition: Definition
    now: datetime
    entropy: Entropy
    effects: list[Effect] = field(default_factory=list)
    history: list[HistoryEntry] = field(default_factory=list)

    # ----------------------------------------------------------------- entry points

    def start(self, event: Start) -> Step:
        process = Process(
            id=event.process_id,
            definition=self.definition.name,
            version=self.definition.version,
            correlation_key=event.correlation_key,
            input=event.input,
            started_at=self.now,
        )
        self._record("ProcessStarted", None, input=event.input, **event.origin)
        if self.definition.timeout_seconds is not None:
            timer = self.entropy.new_id()
            self.effects.append(
                StartTimer(timer, self.now + timedelta(seconds=self.definition.timeout_seconds))
            )
            process = process.model_copy(update={"timeout_timer": timer})
        return self._run(process, self.definition.start_at, event.input)

    def resume(self, process: Process, event: Input) -> Step:
        if isinstance(event, Stop):
            self._end_wait(process)
            return self._finish(
                process, ProcessStatus.ABORTED, error=event.error, cause=event.cause
            )
        if isinstance(event, TimerFired) and event.timer_id == process.timeout_timer:
            self._end_wait(process)
            return self._finish(
                process,
                ProcessStatus.TIMED_OUT,
                error=errors.TIMEOUT,
                cause="The process exceeded the definition's TimeoutSeconds",
            )
        position = process.position
        wait = position.wait if position else None
        if position is None or wait is None:
            return self._reject(process, "the process is not waiting")
        match event:
            case TaskSucceeded(wait_id=wait_id, output=output) if _is(wait, wait_id, "callback"):
                self._record("TaskSucceeded", position.state, output=output)
                self._end_wait(process)
                return self._after_task(process, position, output)
            case TaskFailed(wait_id=wait_id, error=error, cause=cause) if _is(
                wait, wait_id, "callback"
            ):
                self._record("TaskFailed", position.state, error=error, cause=cause)
                self._end_wait(process)
                return self._handle_failure(process, position, Failure(error, cause))
            case TaskHeartbeat(wait_id=wait_id) if _is(wait, wait_id, "callback"):
                return self._heartbeat(process, position, wait)
            case ApprovalDecided() if _is(wait, event.wait_id, "approval"):
                return self._decided(process, position, event)
            case TimerFired(timer_id=timer_id):
                return self._timer(process, position, wait, timer_id)
        return self._reject(process, "the input does not match what the process waits for")

    # ----------------------------------------------------------------- waits

    def _heartbeat(self, process: Process, position: Position, wait: Wait) -> Step:
        self._record("TaskHeartbeat", position.state)
        if wait.heartbeat_timer is None or wait.heartbeat_seconds is None:
            return self._done(process)
        timer = self.entropy.new_id()
        self.effects.append(CancelTimer(wait.heartbeat_timer))
        self.effects.append(StartTimer(timer, self.now + timedelta(seconds=wait.heartbeat_seconds)))
        new_wait = wait.model_copy(update={"heartbeat_timer": timer})
        return self._done(
            process.model_copy(update={"position": position.model_copy(update={"wait": new_wait})})
        )

    def _decided(self, process: Process, position: Position, event: ApprovalDecided) -> Step:
        outcome = "APPROVED" if event.approved else "REJECTED"
        decision = {
            "outcome": outcome,
            "decidedBy": event.decided_by,
            "decidedAt": _iso(self.now),
            "comment": event.comment,
        }
        self._record("ApprovalDecided", position.state, **decision)
        self._end_wait(process)
        if event.approved:
            return self._after_task(process, position, decision)
        cause = f"Rejected by {event.decided_by or 'an approver'}"
        if event.comment:
            cause += f": {event.comment}"
        return self._handle_failure(process, position, Failure(errors.APPROVAL_REJECTED, cause))

    def _timer(self, process: Process, position: Position, wait: Wait, timer_id: str) -> Step:
        if timer_id == wait.timeout_timer:
            self._end_wait(process)
            self._record("TaskTimedOut", position.state)
            failure = Failure(errors.TIMEOUT, f"State {position.state} exceeded its TimeoutSeconds")
            return self._handle_failure(process, position, failure)
        if timer_id == wait.heartbeat_timer:
            self._end_wait(process)
            self._record("TaskTimedOut", position.state, heartbeat=True)
            failure = Failure(
                errors.HEARTBEAT_TIMEOUT, f"State {position.state} missed its heartbeat"
            )
            return self._handle_failure(process, position, failure)
        if timer_id == wait.timer and wait.kind == "retry":
            self._record("RetryStarted", position.state, attempt=position.retry_count)
            return self._run(
                process,
                position.state,
                position.input,
                attempts=position.attempts,
                retry_count=position.retry_count,
            )
        if timer_id == wait.timer and wait.kind == "wait":
            state = self.definition.states[position.state]
            assert isinstance(state, WaitState)
            self._record("WaitEnded", position.state)
            try:
                output = _output_path(
                    state.output_path, _input_path(state.input_path, position.input)
                )
            except StatesError as exc:
                return self._fail(process, exc.as_failure())
            return self._advance(process, position.state, state.next, bool(state.end), output)
        return self._reject(process, "the timer is no longer wanted")

    def _end_wait(self, process: Process) -> None:
        """Close the current wait: its tokens stop working and its timers are cancelled."""
        wait = process.position.wait if process.position else None
        if wait is None:
            return
        if wait.kind in ("callback", "approval"):
            self.effects.append(CloseWait(wait.id))
        for timer in (wait.timeout_timer, wait.heartbeat_timer, wait.timer):
            if timer is not None:
                self.effects.append(CancelTimer(timer))

    # ----------------------------------------------------------------- running states

    def _run(
        self,
        process: Process,
        name: str,
        raw_input: JSON,
        *,
        attempts: tuple[int, ...] = (),
        retry_count: int = 0,
    ) -> Step:
        """Enter ``name`` and keep going until the process waits or ends."""
        transitions = 0
        while True:
            transitions += 1
            if transitions > MAX_TRANSITIONS_PER_STEP:
                return self._fail(
                    process,
                    Failure(
                        errors.RUNTIME,
                        f"more than {MAX_TRANSITIONS_PER_STEP} transitions without waiting",
                    ),
                )
            process = process.model_copy(update={"transitions": process.transitions + 1})
            position = Position(
                state=name,
                input=raw_input,
                entered_at=self.now,
                attempts=attempts,
                retry_count=retry_count,
            )
            if retry_count == 0:
                self._record("StateEntered", name, input=raw_input)
            outcome = self._execute(process, position)
            attempts, retry_count = (), 0
            match outcome:
                case _Blocked(wait=wait):
                    return self._done(
                        process.model_copy(
                            update={"position": position.model_copy(update={"wait": wait})}
                        )
                    )
                case Failure():
                    process = process.model_copy(update={"position": position})
                    state = self.definition.states[name]
                    if isinstance(state, FailState):
                        return self._fail(process, outcome)
                    return self._handle_failure(process, position, outcome)
                case _End(output=output):
                    self._record("StateExited", name, output=output)
                    process = process.model_copy(update={"position": position})
                    return self._finish(process, ProcessStatus.SUCCEEDED, output=output)
                case _Next(state=next_name, output=output):
                    self._record("StateExited", name, output=output)
                    name, raw_input = next_name, output

    def _execute(self, process: Process, position: Position) -> _Outcome:
        state = self.definition.states[position.state]
        context = _context(process, position)
        try:
            match state:
                case PassState():
                    return self._pass(state, position.input, context)
                case TaskState():
                    return self._task(process, state, position, context)
                case ChoiceState():
                    data = _input_path(state.input_path, position.input)
                    target = choice.choose(state.choices, state.default, data, context)
                    return _Next(target, _output_path(state.output_path, data))
                case WaitState():
                    return self._wait(state, position, context)
                case SucceedState():
                    data = _input_path(state.input_path, position.input)
                    return _End(_output_path(state.output_path, data))
                case FailState():
                    return _fail_state(state, position.input, context)
        except StatesError as exc:
            return exc.as_failure()
        raise AssertionError(f"unknown state type {type(state).__name__}")

    def _pass(self, state: PassState, raw_input: JSON, context: JSON) -> _Outcome:
        data = _input_path(state.input_path, raw_input)
        if state.has_result:
            result = state.result
        elif state.parameters is not None:
            result = self._template(state.parameters, data, context)
        else:
            result = data
        output = _output_path(
            state.output_path, paths.put_result(raw_input, state.result_path, result)
        )
        return _flow(state.next, bool(state.end), output)

    def _wait(self, state: WaitState, position: Position, context: JSON) -> _Outcome:
        data = _input_path(state.input_path, position.input)
        due = _wait_due(state, data, context, self.now)
        if due <= self.now:
            return _flow(state.next, bool(state.end), _output_path(state.output_path, data))
        timer = self.entropy.new_id()
        self.effects.append(StartTimer(timer, due))
        self._record("WaitStarted", position.state, until=_iso(due))
        return _Blocked(Wait(id=timer, kind="wait", timer=timer))

    def _task(
        self, process: Process, state: TaskState, position: Position, context: dict[str, JSON]
    ) -> _Outcome:
        data = _input_path(state.input_path, position.input)
        token: str | None = None
        if state.resource == SEND_WAIT:
            token = self.entropy.new_token()
            context = {**context, "Task": {"Token": token}}
        parameters = (
            self._template(state.parameters, data, context)
            if state.parameters is not None
            else data
        )
        timeout = _seconds(state.timeout_seconds, state.timeout_seconds_path, data, context)
        heartbeat = _seconds(state.heartbeat_seconds, state.heartbeat_seconds_path, data, context)
        if state.resource in (SEND, SEND_WAIT):
            message = _message(parameters, state.resource)
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
                return self._task_result(
                    process, state, position, {"MessageId": message_id, "Topic": message["topic"]}
                )
            wait_id = self.entropy.new_id()
            self.effects.append(ExpectCallback(wait_id, token, position.state))
            return _Blocked(self._wait_with_timers(wait_id, "callback", timeout, heartbeat))
        if state.resource == APPROVAL:
            request = parameters if isinstance(parameters, dict) else {}
            wait_id = self.entropy.new_id()
            title = request.get("Title") or f"{self.definition.name}: {position.state}"
            description = request.get("Description")
            self.effects.append(
                RequestApproval(
                    wait_id=wait_id,
                    state=position.state,
                    title=str(title),
                    description=None if description is None else str(description),
                    data=request.get("Data", data),
                )
            )
            self._record("ApprovalRequested", position.state, title=str(title))
            return _Blocked(self._wait_with_timers(wait_id, "approval", timeout, None))
        raise AssertionError(f"unvalidated resource {state.resource}")

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
            kind="callback" if kind == "callback" else "approval",
            timeout_timer=timeout_timer,
            heartbeat_timer=heartbeat_timer,
            heartbeat_seconds=heartbeat,
        )

    def _task_result(
        self, process: Process, state: TaskState, position: Position, result: JSON
    ) -> _Outcome:
        context = _context(process, position)
        if state.result_selector is not None:
            result = self._template(state.result_selector, result, context)
        output = _output_path(
            state.output_path, paths.put_result(position.input, state.result_path, result)
        )
        return _flow(state.next, bool(state.end), output)

    def _after_task(self, process: Process, position: Position, result: JSON) -> Step:
        state = self.definition.states[position.state]
        assert isinstance(state, TaskState)
        try:
            outcome = self._task_result(process, state, position, result)
        except StatesError as exc:
            return self._handle_failure(process, position, exc.as_failure())
        if isinstance(outcome, _End):
            self._record("StateExited", position.state, output=outcome.output)
            return self._finish(process, ProcessStatus.SUCCEEDED, output=outcome.output)
        assert isinstance(outcome, _Next)
        return self._advance(process, position.state, outcome.state, False, outcome.output)

    def _advance(
        self, process: Process, name: str, next_name: str | None, end: bool, output: JSON
    ) -> Step:
        self._record("StateExited", name, output=output)
        if end or next_name is None:
            return self._finish(process, ProcessStatus.SUCCEEDED, output=output)
        return self._run(process, next_name, output)

    # ----------------------------------------------------------------- errors

    def _handle_failure(self, process: Process, position: Position, failure: Failure) -> Step:
        """Retry, then Catch, then fail the process: the order AWS applies them in."""
        state = self.definition.states[position.state]
        if not isinstance(state, TaskState):
            return self._fail(process, failure)
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
            new_position = position.model_copy(
                update={
                    "wait": Wait(id=timer, kind="retry", timer=timer),
                    "attempts": tuple(attempts),
                    "retry_count": position.retry_count + 1,
                }
            )
            return self._done(process.model_copy(update={"position": new_position}))
        for catcher in state.catch:
            if errors.error_matches(catcher.error_equals, failure.error):
                error_output = {"Error": failure.error, "Cause": failure.cause}
                self._record(
                    "ErrorCaught", position.state, error=failure.error, cause=failure.cause
                )
                try:
                    output = paths.put_result(position.input, catcher.result_path, error_output)
                except StatesError as exc:
                    return self._fail(process, exc.as_failure())
                self._record("StateExited", position.state, output=output)
                return self._run(process, catcher.next, output)
        return self._fail(process, failure)

    def _fail(self, process: Process, failure: Failure) -> Step:
        return self._finish(process, ProcessStatus.FAILED, error=failure.error, cause=failure.cause)

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
        ended = process.model_copy(
            update={
                "status": status,
                "output": output,
                "error": error,
                "cause": cause,
                "ended_at": self.now,
                "timeout_timer": None,
                "position": (
                    process.position.model_copy(update={"wait": None}) if process.position else None
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
        self.history.append(HistoryEntry(self.now, kind, state, dict(details)))

    def _template(self, template: JSON, data: JSON, context: JSON) -> JSON:
        return paths.apply_template(template, data, context, intrinsics=self.entropy)


def _is(wait: Wait, wait_id: str, kind: str) -> bool:
    return wait.id == wait_id and wait.kind == kind


def _flow(next_name: str | None, end: bool, output: JSON) -> _Outcome:
    if end or next_name is None:
        return _End(output)
    return _Next(next_name, output)


def _input_path(path: str | None, data: JSON) -> JSON:
    if path is None:
        return {}
    return _read_or_runtime(path, data)


def _output_path(path: str | None, data: JSON) -> JSON:
    if path is None:
        return {}
    return _read_or_runtime(path, data)


def _read_or_runtime(path: str, data: JSON) -> JSON:
    if path == "$":
        return data
    try:
        return paths.read_path(path, data, {})
    except paths.PathNotFound:
        raise StatesError(errors.RUNTIME, f"Invalid path '{path}' : No results for path") from None


def _context(process: Process, position: Position) -> dict[str, JSON]:
    return {
        "Execution": {
            "Id": process.id,
            "Name": process.id,
            "Input": process.input,
            "StartTime": _iso(process.started_at),
            "RedriveCount": 0,
        },
        "State": {
            "Name": position.state,
            "EnteredTime": _iso(position.entered_at),
            "RetryCount": position.retry_count,
        },
        "StateMachine": {
            "Id": f"{process.definition}:{process.version}",
            "Name": process.definition,
        },
    }


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _seconds(fixed: int | None, path: str | None, data: JSON, context: JSON) -> int | None:
    if fixed is not None:
        return fixed
    if path is None:
        return None
    try:
        value = paths.read_path(path, data, context)
    except paths.PathNotFound:
        raise StatesError(errors.RUNTIME, f"Invalid path '{path}' : No results for path") from None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise StatesError(errors.RUNTIME, f"The value at {path} must be a positive integer")
    return value


def _wait_due(state: WaitState, data: JSON, context: JSON, now: datetime) -> datetime:
    if state.seconds is not None:
        return now + timedelta(seconds=state.seconds)
    if state.timestamp is not None:
        return _parse_timestamp(state.timestamp, "Timestamp")
    if state.seconds_path is not None:
        seconds = _read_or_runtime(state.seconds_path, data)
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
            raise StatesError(
                errors.RUNTIME,
                f"SecondsPath {state.seconds_path} must point to a non-negative number",
            )
        return now + timedelta(seconds=seconds)
    assert state.timestamp_path is not None
    value = _read_or_runtime(state.timestamp_path, data)
    return _parse_timestamp(value, f"TimestampPath {state.timestamp_path}")


def _parse_timestamp(value: JSON, where: str) -> datetime:
    if not isinstance(value, str):
        raise StatesError(errors.RUNTIME, f"{where} is not an RFC 3339 timestamp")
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise StatesError(errors.RUNTIME, f"{where} is not an RFC 3339 timestamp") from None
    if moment.tzinfo is None:
        raise StatesError(errors.RUNTIME, f"{where} needs a time zone")
    return moment


def _fail_state(state: FailState, raw_input: JSON, context: JSON) -> Failure:
    error = state.error
    cause = state.cause
    if state.error_path is not None:
        error = str(_read_or_runtime(state.error_path, raw_input))
    if state.cause_path is not None:
        cause = str(_read_or_runtime(state.cause_path, raw_input))
    return Failure(error or "", cause or "")


def _message(parameters: JSON, resource: str) -> dict[str, Any]:
    """The Kafka message a send task asks for, checked: Topic, Key, Message, Headers."""
    if not isinstance(parameters, Mapping):
        raise StatesError("Kafka.InvalidParameters", f"{resource} needs an object of parameters")
    topic = parameters.get("Topic")
    if not isinstance(topic, str) or not topic:
        raise StatesError("Kafka.InvalidParameters", "Topic must be a non-empty string")
    if "Message" not in parameters:
        raise StatesError("Kafka.InvalidParameters", "Message is missing")
    key = parameters.get("Key")
    if key is not None and not isinstance(key, str | int):
        raise StatesError("Kafka.InvalidParameters", "Key must be a string or a number")
    headers = parameters.get("Headers") or {}
    if not isinstance(headers, Mapping) or not all(
        isinstance(value, str) for value in headers.values()
    ):
        raise StatesError("Kafka.InvalidParameters", "Headers must map names to strings")
    return {
        "topic": topic,
        "key": None if key is None else str(key),
        "value": parameters["Message"],
        "headers": dict(headers),
    }
