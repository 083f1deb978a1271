"""The local runner: a definition run to its end in memory, with mocked answers, for users' tests.

``run_local(definition, input, mocks=...)`` drives the same pure ``interpreter.step`` the engine
drives, but where the engine turns effects into database rows and Kafka messages, the runner keeps
them in memory: a message sent is recorded, a task token or an approval opens a wait that the mocks
answer, a timer goes into a virtual timer set. Nothing here knows what a state does; every state
semantic stays in ``bridge.asl``. No broker, no database.

The loop: answer the open waits in the order they were opened (each from its state's next mocked
response); when none can be answered, fire the earliest timer (sleeping until it is due, or, with
``skip_waits``, moving the virtual clock to it); stop when the process ends. A run that cannot go on
(no mock for a waiting state, nothing left that could end a wait, too many steps) ends FAILED with a
``Local.*`` error, which no Retry or Catch sees: it is a mistake in the test, not in the process.
"""

from __future__ import annotations

import copy
import json
import random
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, assert_never

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from bridge.asl.effects import (
    CancelTimer,
    ChangeSeats,
    CloseWait,
    ConcludeApproval,
    ExpectCallback,
    ExpectEvent,
    HistoryEntry,
    InvokeHttp,
    NotifyApprovers,
    NotifyParent,
    RecordHolders,
    RecordVote,
    RemindApproval,
    RequestApproval,
    SendMessage,
    StartChild,
    StartTimer,
    StopChild,
)
from bridge.asl.errors import BridgeError, DefinitionError
from bridge.asl.inputs import (
    ApprovalDecided,
    ChildEnded,
    ChildStarted,
    EventArrived,
    HttpAnswered,
    Input,
    Start,
    TaskFailed,
    TaskSucceeded,
    TimerFired,
)
from bridge.asl.interpreter import step
from bridge.asl.loading import parse_definition
from bridge.asl.model import (
    APPROVAL,
    EVENT_WAIT,
    HTTP_INVOKE,
    PROCESS_START_SYNC,
    SEND_WAIT,
    Definition,
)
from bridge.asl.process import Process, ProcessStatus
from bridge.asl.run_base import Probe
from bridge.asl.types import JSON
from bridge.mock_config import MockConfigError, is_mock_config, mocks_for

#: Errors of the runner itself (the process did not end on its own); never retried or caught.
NO_MOCK = "Local.NoMock"
STUCK = "Local.Stuck"
TOO_MANY_STEPS = "Local.TooManySteps"


class MocksError(BridgeError):
    """Mocks that cannot be used; ``problems`` name the state and field of each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("invalid mocks:\n  " + "\n  ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class LocalResult:
    """How a local run ended, with everything that happened on the way.

    ``history`` holds the interpreter's entries as ``{"at", "type", "state", "details"}``;
    ``messages`` every Kafka message the process sent (``topic``, ``key``, ``value``, ``headers``,
    ``state``, ``messageId``); ``approvals`` every approval it asked for (``state``, ``title``,
    ``description``, ``data``); ``children`` every child process it started (``state``,
    ``definition``, ``input``, ``name``, ``correlationKey``, ``sync``, ``processId``): the runner
    starts none, it answers ``.sync`` tasks from their mocks.
    """

    status: ProcessStatus
    output: JSON
    error: str | None
    cause: str | None
    history: list[dict[str, JSON]]
    process_id: str
    messages: list[dict[str, JSON]] = field(default_factory=list)
    approvals: list[dict[str, JSON]] = field(default_factory=list)
    reminders: list[dict[str, JSON]] = field(default_factory=list)
    children: list[dict[str, JSON]] = field(default_factory=list)

    @property
    def succeeded(self) -> bool:
        return self.status is ProcessStatus.SUCCEEDED

    def to_dict(self) -> dict[str, JSON]:
        """The result as plain JSON data (what ``bridge run`` prints)."""
        return {
            "status": self.status.value,
            "output": self.output,
            "error": self.error,
            "cause": self.cause,
            "processId": self.process_id,
            "history": self.history,
            "messages": self.messages,
            "approvals": self.approvals,
            "children": self.children,
        }


def run_local(
    definition: Mapping[str, JSON] | str,
    input: JSON = None,
    *,
    mocks: Mapping[str, JSON] | str | None = None,
    skip_waits: bool = False,
    name: str = "local",
    max_steps: int = 100_000,
    seed: int | None = None,
    test_case: str | None = None,
    state_machine: str | None = None,
) -> LocalResult:
    """Run ``definition`` on ``input`` until the process ends, answering waits from ``mocks``.

    ``definition`` and ``mocks`` are mappings or JSON/YAML text. ``mocks`` maps a state name to one
    response or a list used in turn, one per invocation of that state (the last one repeats); a
    response is ``{"Return": output}``, ``{"Throw": {"Error": ..., "Cause": ...}}`` or
    ``{"Timeout": true}`` (never answered); a ``bridge:approval`` state returns
    ``{"outcome": "APPROVED" | "REJECTED", "decidedBy": ..., "comment": ...}``.

    ``mocks`` may also be a Step Functions Local mock configuration (``StateMachines`` and
    ``MockedResponses``, see ``bridge.mock_config``): then ``test_case`` names the test case, and
    ``state_machine`` the state machine when the file has several.

    Waits (Wait states, retry intervals, TimeoutSeconds) pass in real time unless ``skip_waits``.
    ``seed`` makes ids, tokens and the random intrinsic functions repeat from run to run.
    Raises ``DefinitionError`` or ``MocksError`` before anything runs; a process that fails is a
    result, not an exception.
    """
    document = document_of(definition)
    parsed = parse_definition(document, name)
    given = _mocks(mocks)
    if is_mock_config(given):
        try:
            given = mocks_for(given, test_case, state_machine, default=name)
        except MockConfigError as exc:
            raise MocksError(exc.problems) from None
    elif test_case is not None:
        raise MocksError(["a test case needs a Step Functions Local mock configuration"])
    answers = parse_mocks(given, document)
    runner = _Runner(
        parsed,
        answers,
        LocalEntropy(seed),
        skip_waits=skip_waits,
        max_steps=max_steps,
        clock=lambda: datetime.now(UTC),
        sleep=time.sleep,
    )
    return runner.run(input)


def run_probed(
    document: Mapping[str, JSON],
    definition: Definition,
    input: JSON,
    mocks: Mapping[str, JSON],
    *,
    probe: Probe,
    variables: Mapping[str, JSON],
    retried: int,
    max_steps: int,
    seed: int | None = None,
) -> LocalResult:
    """``run_local`` for ``document`` parsed as ``definition``, for a TestState request: with
    workflow variables set before the first state, the first state's retriers counted as having
    retried ``retried`` times already, and ``probe`` collecting its data flow; nothing waits."""
    runner = _Runner(
        definition,
        parse_mocks(mocks, document),
        LocalEntropy(seed),
        skip_waits=True,
        max_steps=max_steps,
        clock=lambda: datetime.now(UTC),
        sleep=time.sleep,
        probe=probe,
        variables=dict(variables),
        retried=retried,
    )
    return runner.run(input)


class LocalEntropy:
    """The runner's ``Entropy``: unique ids from a seeded generator, so a seed repeats a run."""

    def __init__(self, seed: int | None = None) -> None:
        self._random = random.Random(seed)

    def new_id(self) -> str:
        return self.uuid4()

    def new_token(self) -> str:
        return f"local-token-{self._random.getrandbits(128):032x}"

    def random_int(self, low: int, high: int) -> int:
        return low + self._random.randrange(max(high - low, 1))

    def uuid4(self) -> str:
        return str(uuid.UUID(int=self._random.getrandbits(128), version=4))


# --------------------------------------------------------------------- mocks


@dataclass(frozen=True)
class Returned:
    output: JSON


@dataclass(frozen=True)
class Thrown:
    error: str
    cause: str


@dataclass(frozen=True)
class Decided:
    approved: bool
    decided_by: str | None
    comment: str | None


@dataclass(frozen=True)
class NeverAnswered:
    pass


@dataclass(frozen=True)
class Arrived:
    """The event a ``bridge:event:waitFor`` state receives (its result)."""

    event: JSON


@dataclass(frozen=True)
class Responded:
    """The response a ``bridge:http:invoke`` state's call gets (any status)."""

    response: dict[str, JSON]


Answer = Returned | Thrown | Decided | Arrived | Responded | NeverAnswered


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class _Throw(_Frozen):
    error: str = Field(alias="Error", min_length=1)
    cause: str = Field(default="", alias="Cause")


class _Response(_Frozen):
    returned: JSON = Field(default=None, alias="Return")
    thrown: _Throw | None = Field(default=None, alias="Throw")
    timeout: Literal[True] | None = Field(default=None, alias="Timeout")

    @model_validator(mode="after")
    def _exactly_one(self) -> _Response:
        if len(self.model_fields_set) != 1:
            raise ValueError("a response needs exactly one of Return, Throw, Timeout")
        return self


class _HttpResponse(_Frozen):
    """A mocked HTTP response: only the status is needed (200 when left out)."""

    status_code: int = Field(default=200, alias="StatusCode", ge=100, le=599)
    status_text: str = Field(default="", alias="StatusText")
    headers: dict[str, str] = Field(default_factory=dict, alias="Headers")
    response_body: JSON = Field(default=None, alias="ResponseBody")


class _Decision(_Frozen):
    outcome: Literal["APPROVED", "REJECTED"]
    decided_by: str | None = Field(default=None, alias="decidedBy")
    comment: str | None = None


def _as_list(value: object) -> object:
    return [value] if isinstance(value, Mapping) else value


_MOCKS = TypeAdapter(
    dict[str, Annotated[list[_Response], BeforeValidator(_as_list), Field(min_length=1)]]
)


def parse_mocks(mocks: Mapping[str, JSON], document: Mapping[str, JSON]) -> dict[str, list[Answer]]:
    """Validate ``mocks`` against the definition ``document``; ``MocksError`` names each problem.

    Only states that wait for an answer take mocks: ``bridge:kafka:send.waitForTaskToken`` tasks
    (Return, Throw, Timeout), ``bridge:approval`` tasks (a decision as Return, or Timeout),
    ``bridge:event:waitFor`` tasks (the event as Return, or Timeout), ``bridge:http:invoke``
    tasks (the response as Return, a call without one as Throw, or Timeout) and
    ``bridge:process:start.sync`` tasks (the child's output as Return, the child's error and
    cause as Throw, or Timeout for a child that never ends).
    """
    try:
        responses = _MOCKS.validate_python(mocks)
    except ValidationError as exc:
        raise MocksError([_describe(error, mocks) for error in exc.errors()]) from None
    kinds = dict(_task_states(document))
    problems: list[str] = []
    answers: dict[str, list[Answer]] = {}
    for state, listed in responses.items():
        if state not in kinds:
            problems.append(f"{state}: no state of that name in the definition")
            continue
        resource = kinds[state]
        if resource not in (SEND_WAIT, APPROVAL, EVENT_WAIT, HTTP_INVOKE, PROCESS_START_SYNC):
            problems.append(
                f"{state}: only tasks that wait for an answer ({SEND_WAIT}, {APPROVAL}, "
                f"{EVENT_WAIT}, {HTTP_INVOKE}, {PROCESS_START_SYNC}) take mocks; this state is "
                f"{resource or 'not a Task'}"
            )
            continue
        answers[state] = []
        for index, response in enumerate(listed):
            where = state if isinstance(mocks[state], Mapping) else f"{state}[{index}]"
            answer = _answer(response, resource, where, problems)
            if answer is not None:
                answers[state].append(answer)
    if problems:
        raise MocksError(problems)
    return answers


def _answer(response: _Response, resource: str, where: str, problems: list[str]) -> Answer | None:
    if response.timeout:
        return NeverAnswered()
    if response.thrown is not None:
        if resource == APPROVAL:
            problems.append(f"{where}.Throw: an approval is decided, not thrown; use Return")
            return None
        if resource == EVENT_WAIT:
            problems.append(f"{where}.Throw: an event arrives or not; use Return or Timeout")
            return None
        return Thrown(response.thrown.error, response.thrown.cause)
    if resource in (SEND_WAIT, PROCESS_START_SYNC):
        return Returned(response.returned)
    if resource == EVENT_WAIT:
        return Arrived(response.returned)
    if resource == HTTP_INVOKE:
        try:
            http = _HttpResponse.model_validate(response.returned)
        except ValidationError as exc:
            for error in exc.errors():
                location = "".join(f".{part}" for part in error["loc"])
                problems.append(f"{where}.Return{location}: {_message(error)}")
            return None
        return Responded(http.model_dump(by_alias=True))
    try:
        decision = _Decision.model_validate(response.returned)
    except ValidationError as exc:
        for error in exc.errors():
            location = "".join(f".{part}" for part in error["loc"])
            problems.append(f"{where}.Return{location}: {_message(error)}")
        return None
    return Decided(decision.outcome == "APPROVED", decision.decided_by, decision.comment)


def _describe(error: Mapping[str, Any], mocks: Mapping[str, JSON]) -> str:
    loc = list(error["loc"])
    if len(loc) >= 2 and isinstance(mocks.get(str(loc[0])), Mapping) and loc[1] == 0:
        del loc[1]  # a single response was given, not a list
    location = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc)
    location = location.lstrip(".")
    if error["type"] == "dict_type" and not loc:
        return "the mocks must map state names to responses"
    return f"{location}: {_message(error)}" if location else _message(error)


def _message(error: Mapping[str, Any]) -> str:
    """Pydantic's message, reworded where it would name our classes or say too little."""
    match error["type"]:
        case "extra_forbidden":
            return "is not a field here"
        case "model_type" | "dict_type":
            return "must be an object"
        case "list_type":
            return "must be a response object or a list of them"
        case "too_short":
            return "needs at least one response"
        case "value_error":
            return str(error["ctx"]["error"])
    return str(error["msg"])


def _task_states(document: Mapping[str, JSON]) -> Iterator[tuple[str, str | None]]:
    """Every state of the document, nested branches included, with its Task resource if any."""
    states = document.get("States")
    if not isinstance(states, Mapping):
        return
    for name, state in states.items():
        if not isinstance(state, Mapping):
            continue
        resource = state.get("Resource") if state.get("Type") == "Task" else None
        yield str(name), resource if isinstance(resource, str) else None
        for branch in state.get("Branches") or ():
            if isinstance(branch, Mapping):
                yield from _task_states(branch)
        for key in ("ItemProcessor", "Iterator"):
            if isinstance(state.get(key), Mapping):
                yield from _task_states(state[key])


def document_of(definition: Mapping[str, JSON] | str) -> Mapping[str, JSON]:
    try:
        return _data(definition, "the definition")
    except ValueError as exc:
        raise DefinitionError([str(exc)]) from None


def _mocks(mocks: Mapping[str, JSON] | str | None) -> Mapping[str, JSON]:
    if mocks is None:
        return {}
    try:
        return _data(mocks, "the mocks")
    except ValueError as exc:
        raise MocksError([str(exc)]) from None


def _data(source: Mapping[str, JSON] | str, what: str) -> Mapping[str, JSON]:
    """A mapping, or JSON/YAML text holding one; ``ValueError`` saying why not otherwise."""
    if isinstance(source, str):
        text = source
        try:
            source = json.loads(text)
        except ValueError:
            # Imported here: JSON needs no YAML parser (see bridge.definitions).
            import yaml

            try:
                source = yaml.safe_load(text)
            except yaml.YAMLError as exc:
                raise ValueError(f"{what} is neither JSON nor YAML: {exc}") from None
    if not isinstance(source, Mapping):
        raise ValueError(f"{what} must be a JSON/YAML object")
    return source


# --------------------------------------------------------------------- the loop


@dataclass
class _OpenWait:
    state: str
    answer: Answer | None
    kind: str = "callback"
    seats: tuple[str, ...] = ()


@dataclass
class _Runner:
    """One local run: the process, its open waits and timers, and what it did so far."""

    definition: Definition
    answers: Mapping[str, list[Answer]]
    entropy: LocalEntropy
    skip_waits: bool
    max_steps: int
    clock: Callable[[], datetime]
    sleep: Callable[[float], object]
    process: Process | None = None
    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    steps: int = 0
    invocations: dict[str, int] = field(default_factory=dict)
    waits: dict[str, _OpenWait] = field(default_factory=dict)
    timers: dict[str, datetime] = field(default_factory=dict)
    history: list[dict[str, JSON]] = field(default_factory=list)
    messages: list[dict[str, JSON]] = field(default_factory=list)
    approvals: list[dict[str, JSON]] = field(default_factory=list)
    reminders: list[dict[str, JSON]] = field(default_factory=list)
    children: list[dict[str, JSON]] = field(default_factory=list)
    #: The open wait of each child a ``.sync`` task waits for.
    child_waits: dict[str, str] = field(default_factory=dict)
    #: What a TestState request asks of the run.
    probe: Probe | None = None
    #: Workflow variables set before the first state.
    variables: dict[str, JSON] = field(default_factory=dict)
    #: How often the first state's retriers count as having retried already (TestState).
    retried: int = 0

    def run(self, data: JSON) -> LocalResult:
        self.now = self.clock()
        process_id = self.entropy.new_id()
        self._apply(
            Start(
                process_id,
                data,
                origin={"runner": "local"},
                variables=dict(self.variables),
                retried=self.retried,
            )
        )
        while self.process is not None and not self.process.status.ended:
            if self.steps >= self.max_steps:
                return self._stop(
                    TOO_MANY_STEPS, f"the process did not end within {self.max_steps} steps"
                )
            answerable = next(
                (
                    (wait_id, wait)
                    for wait_id, wait in self.waits.items()
                    if not isinstance(wait.answer, NeverAnswered)
                ),
                None,
            )
            if answerable is not None:
                wait_id, wait = answerable
                if wait.answer is None:
                    return self._stop(
                        NO_MOCK, f"state {wait.state!r} waits for an answer and has no mock"
                    )
                del self.waits[wait_id]
                self._tick()
                if isinstance(wait.answer, Decided):
                    # Every seat casts the mocked decision until the approval's rule decides.
                    for seat in wait.seats:
                        decided = ApprovalDecided(
                            wait_id,
                            wait.answer.approved,
                            wait.answer.decided_by,
                            wait.answer.comment,
                            seat=seat,
                        )
                        self._apply(decided)
                        if self.process is None or not self._waiting(wait_id):
                            break
                elif wait.kind == "child":
                    self._apply(self._child_ended(wait_id, wait.answer))
                else:
                    self._apply(_input(wait_id, wait.answer, wait.kind))
            elif self.timers:
                timer_id = min(self.timers, key=lambda timer: self.timers[timer])
                self._until(self.timers.pop(timer_id))
                self._apply(TimerFired(timer_id))
            else:
                states = ", ".join(sorted({wait.state for wait in self.waits.values()}))
                return self._stop(
                    STUCK,
                    f"the process waits in {states or 'no state'} for an answer the mocks never "
                    "give (Timeout) and no timer will end the wait",
                )
        assert self.process is not None
        return self._result(self.process.status, self.process.error, self.process.cause)

    def _apply(self, event: Input) -> None:
        """Apply ``event``, then the inputs its effects answer at once (a child's start), in
        order, as the engine does within a batch."""
        pending = [event]
        while pending and self.steps < self.max_steps:
            pending.extend(self._apply_one(pending.pop(0)))

    def _apply_one(self, event: Input) -> list[Input]:
        result = step(self.definition, self.process, event, self.now, self.entropy, self.probe)
        self.steps += 1
        if result.rejected is not None:
            return []  # as the engine does: a stale input changes nothing
        self.process = result.process
        follow: list[Input] = []
        self.history.extend(_entry(entry) for entry in result.history)
        for effect in result.effects:
            match effect:
                case SendMessage():
                    self.messages.append(
                        {
                            "topic": effect.topic,
                            "key": effect.key,
                            "value": effect.value,
                            "headers": effect.headers,
                            "state": effect.state,
                            "messageId": effect.message_id,
                        }
                    )
                case ExpectCallback():
                    self.waits[effect.wait_id] = _OpenWait(effect.state, self._next(effect.state))
                case RequestApproval():
                    self.approvals.append(
                        {
                            "state": effect.state,
                            "title": effect.title,
                            "description": effect.description,
                            "data": effect.data,
                        }
                    )
                    self.waits[effect.wait_id] = _OpenWait(
                        effect.state, self._next(effect.state), "approval", effect.seats
                    )
                case ExpectEvent():
                    self.waits[effect.wait_id] = _OpenWait(
                        effect.state, self._next(effect.state), "event"
                    )
                case InvokeHttp():
                    self.waits[effect.wait_id] = _OpenWait(
                        effect.state, self._next(effect.state), "http"
                    )
                case CloseWait():
                    self.waits.pop(effect.wait_id, None)
                case RemindApproval():
                    self.reminders.append(
                        {"state": effect.state, "pending": list(effect.pending), "at": self.now}
                    )
                case RecordVote() | RecordHolders() | ConcludeApproval() | NotifyApprovers():
                    pass  # the history has them; only the engine keeps rows and sends mail
                case ChangeSeats():
                    if (opened := self.waits.get(effect.wait_id)) is not None:
                        opened.seats = effect.seats
                case StartChild():
                    follow.append(self._start_child(effect))
                case StopChild():
                    self.waits.pop(self.child_waits.pop(effect.child_id, ""), None)
                case NotifyParent():
                    pass  # a local run is nobody's child
                case StartTimer():
                    self.timers[effect.timer_id] = effect.due_at
                case CancelTimer():
                    self.timers.pop(effect.timer_id, None)
                case _:
                    assert_never(effect)
        return follow

    def _start_child(self, effect: StartChild) -> Input:
        """Record the child a task asks for and start it at once (on paper): ``.sync`` tasks
        then wait for their mocked end."""
        self.children.append(
            {
                "state": effect.state,
                "definition": effect.definition,
                "input": effect.input,
                "name": effect.name,
                "correlationKey": effect.correlation_key,
                "sync": effect.sync,
                "processId": effect.child_id,
            }
        )
        if effect.sync:
            self.waits[effect.wait_id] = _OpenWait(effect.state, self._next(effect.state), "child")
            self.child_waits[effect.child_id] = effect.wait_id
        name = effect.definition.partition(":")[0]
        return ChildStarted(effect.wait_id, effect.child_id, name, None, self.now, effect.name)

    def _child_ended(self, wait_id: str, answer: Answer | None) -> Input:
        """A mocked child's end: Return is its output, Throw its error and cause."""
        child = next((c for c, w in self.child_waits.items() if w == wait_id), "")
        self.child_waits.pop(child, None)
        if isinstance(answer, Thrown):
            return ChildEnded(
                wait_id, child, "FAILED", None, answer.error, answer.cause, self.now, self.now
            )
        assert isinstance(answer, Returned)
        output = copy.deepcopy(answer.output)
        return ChildEnded(wait_id, child, "SUCCEEDED", output, None, None, self.now, self.now)

    def _waiting(self, wait_id: str) -> bool:
        """Whether the process still waits on ``wait_id`` (an approval may need more votes)."""
        found: list[str] = []

        def walk(position: Any) -> None:
            if position is None:
                return
            if position.wait is not None:
                found.append(position.wait.id)
            for branch in position.branches:
                walk(branch.position)

        walk(self.process.position if self.process else None)
        return wait_id in found

    def _next(self, state: str) -> Answer | None:
        """The mocked answer for this invocation of ``state``: the next in its list, or the last."""
        listed = self.answers.get(state)
        count = self.invocations.get(state, 0)
        self.invocations[state] = count + 1
        if not listed:
            return None
        return listed[min(count, len(listed) - 1)]

    def _tick(self) -> None:
        if not self.skip_waits:
            self.now = max(self.now, self.clock())

    def _until(self, due: datetime) -> None:
        if not self.skip_waits:
            remaining = (due - self.clock()).total_seconds()
            if remaining > 0:
                self.sleep(remaining)
            self.now = self.clock()
        self.now = max(self.now, due)

    def _stop(self, error: str, cause: str) -> LocalResult:
        state = self.process.current_state if self.process else None
        self.history.append(
            _entry(
                HistoryEntry(self.now, "LocalRunFailed", state, {"error": error, "cause": cause})
            )
        )
        return self._result(ProcessStatus.FAILED, error, cause)

    def _result(self, status: ProcessStatus, error: str | None, cause: str | None) -> LocalResult:
        assert self.process is not None
        return LocalResult(
            status=status,
            output=self.process.output if status is ProcessStatus.SUCCEEDED else None,
            error=error,
            cause=cause,
            history=self.history,
            process_id=self.process.id,
            messages=self.messages,
            approvals=self.approvals,
            reminders=self.reminders,
            children=self.children,
        )


def _input(wait_id: str, answer: Answer, kind: str = "callback") -> Input:
    match answer:
        case Returned(output=output):
            return TaskSucceeded(wait_id, copy.deepcopy(output))
        case Thrown(error=error, cause=cause) if kind == "http":
            return HttpAnswered(wait_id, error=error, cause=cause)
        case Thrown(error=error, cause=cause):
            return TaskFailed(wait_id, error, cause)
        case Responded(response=response):
            return HttpAnswered(wait_id, copy.deepcopy(response))
        case Decided():
            return ApprovalDecided(wait_id, answer.approved, answer.decided_by, answer.comment)
        case Arrived(event=event):
            return EventArrived(wait_id, copy.deepcopy(event))
        case NeverAnswered():
            raise AssertionError("a wait that is never answered is not answered")
    assert_never(answer)


def _entry(entry: HistoryEntry) -> dict[str, JSON]:
    at = entry.at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return {"at": at, "type": entry.type, "state": entry.state, "details": entry.details}
