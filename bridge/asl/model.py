"""Definitions as frozen, typed objects: parse a state machine document, then validate it.

Loading is ``parse_definition(document) -> Definition``. It raises ``DefinitionError`` listing every
problem with the state and field it concerns, so that a bad definition fails when it is deployed,
never in the middle of a process. The interpreter only ever sees a valid ``Definition``. This module
holds the node classes and the parsing; the semantic checks live in ``validation``.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_pascal

from bridge.asl.errors import DefinitionError
from bridge.asl.types import JSON

#: Task resources the bridge understands (the spelling follows Step Functions' integrations).
SEND = "bridge:kafka:send"
SEND_WAIT = "bridge:kafka:send.waitForTaskToken"
APPROVAL = "bridge:approval"
EVENT_WAIT = "bridge:event:waitFor"
HTTP_INVOKE = "bridge:http:invoke"
#: Nested processes (Step Functions' states:startExecution and .sync).
PROCESS_START = "bridge:process:start"
PROCESS_START_SYNC = "bridge:process:start.sync"
RESOURCES = (
    SEND,
    SEND_WAIT,
    APPROVAL,
    EVENT_WAIT,
    HTTP_INVOKE,
    PROCESS_START,
    PROCESS_START_SYNC,
)
#: The fields of a child start's Parameters (or Arguments).
CHILD_START_FIELDS = ("Definition", "Input", "Name", "CorrelationKey")


class _Node(BaseModel):
    model_config = ConfigDict(
        frozen=True, extra="forbid", alias_generator=to_pascal, populate_by_name=True
    )


class Retrier(_Node):
    error_equals: list[str] = Field(min_length=1)
    interval_seconds: int = Field(default=1, ge=1)
    max_attempts: int = Field(default=3, ge=0)
    backoff_rate: float = Field(default=2.0, ge=1.0)
    max_delay_seconds: int | None = Field(default=None, ge=1)
    jitter_strategy: Literal["FULL", "NONE"] = "NONE"
    comment: str | None = None


QueryLanguage = Literal["JSONPath", "JSONata"]
#: A JSONata ``{% ... %}`` expression where a number would stand in JSONPath.
Expression = Annotated[str, Field(pattern=r"(?s)^\{%.*%\}$")]
Seconds = Annotated[int, Field(ge=1, le=99_999_999)]


class Catcher(_Node):
    error_equals: list[str] = Field(min_length=1)
    next: str
    result_path: str | None = "$"
    comment: str | None = None
    assign: dict[str, JSON] | None = None
    #: JSONata: the state's output when this catcher is taken (``$states.errorOutput``).
    output: JSON = None


class _State(_Node):
    comment: str | None = None
    query_language: QueryLanguage | None = None
    input_path: str | None = "$"
    output_path: str | None = "$"
    #: JSONata: the state's output (``{% %}`` expressions over ``$states``).
    output: JSON = None

    @property
    def has_output(self) -> bool:
        return "output" in self.model_fields_set


class _Flow(_State):
    next: str | None = None
    end: bool | None = None
    #: Workflow variables set when the state completes (``$name`` reads them later).
    assign: dict[str, JSON] | None = None
    #: Bridge extension: search attributes set when the state completes, in Assign's scope.
    search_attributes: dict[str, JSON] | None = None


class PassState(_Flow):
    type: Literal["Pass"]
    result: JSON = None
    result_path: str | None = "$"
    parameters: JSON = None

    @property
    def has_result(self) -> bool:
        return "result" in self.model_fields_set


class TaskState(_Flow):
    type: Literal["Task"]
    resource: str
    parameters: JSON = None
    arguments: JSON = None
    result_selector: JSON = None
    result_path: str | None = "$"
    retry: list[Retrier] = Field(default_factory=list)
    catch: list[Catcher] = Field(default_factory=list)
    timeout_seconds: Seconds | Expression | None = None
    timeout_seconds_path: str | None = None
    heartbeat_seconds: Seconds | Expression | None = None
    heartbeat_seconds_path: str | None = None
    credentials: JSON = None


class ChoiceState(_State):
    type: Literal["Choice"]
    choices: list[dict[str, JSON]] = Field(min_length=1)
    default: str | None = None
    #: Variables set when no rule matches and Default is taken; a rule sets its own.
    assign: dict[str, JSON] | None = None
    #: Bridge extension: search attributes set when the Choice decides (whichever rule).
    search_attributes: dict[str, JSON] | None = None


class WaitState(_Flow):
    type: Literal["Wait"]
    seconds: Annotated[int, Field(ge=0)] | Expression | None = None
    timestamp: str | None = None
    seconds_path: str | None = None
    timestamp_path: str | None = None


class SucceedState(_State):
    type: Literal["Succeed"]


class FailState(_Node):
    type: Literal["Fail"]
    comment: str | None = None
    query_language: QueryLanguage | None = None
    error: str | None = None
    cause: str | None = None
    error_path: str | None = None
    cause_path: str | None = None


class Machine(_Node):
    """A state machine inside a Parallel branch or a Map's item processor."""

    comment: str | None = None
    start_at: str
    states: dict[str, State] = Field(min_length=1)


class ProcessorConfig(_Node):
    mode: Literal["INLINE", "DISTRIBUTED"] = "INLINE"
    execution_type: Literal["STANDARD", "EXPRESS"] | None = None


class ItemProcessor(Machine):
    processor_config: ProcessorConfig = Field(default_factory=ProcessorConfig)


class ParallelState(_Flow):
    type: Literal["Parallel"]
    branches: list[Machine] = Field(min_length=1)
    parameters: JSON = None
    arguments: JSON = None
    result_selector: JSON = None
    result_path: str | None = "$"
    retry: list[Retrier] = Field(default_factory=list)
    catch: list[Catcher] = Field(default_factory=list)


class MapState(_Flow):
    type: Literal["Map"]
    item_processor: ItemProcessor | None = None
    iterator: ItemProcessor | None = None
    items_path: str | None = "$"
    items: JSON = None
    item_selector: JSON = None
    parameters: JSON = None
    max_concurrency: Annotated[int, Field(ge=0)] | Expression = 0
    max_concurrency_path: str | None = None
    tolerated_failure_count: Annotated[int, Field(ge=0)] | Expression | None = None
    tolerated_failure_count_path: str | None = None
    tolerated_failure_percentage: Annotated[float, Field(ge=0, le=100)] | Expression | None = None
    tolerated_failure_percentage_path: str | None = None
    label: str | None = None
    result_selector: JSON = None
    result_path: str | None = "$"
    retry: list[Retrier] = Field(default_factory=list)
    catch: list[Catcher] = Field(default_factory=list)

    @property
    def processor(self) -> Machine:
        processor = self.item_processor or self.iterator
        assert processor is not None, "validated: ItemProcessor or Iterator"
        return processor


State = Annotated[
    PassState
    | TaskState
    | ChoiceState
    | WaitState
    | SucceedState
    | FailState
    | ParallelState
    | MapState,
    Field(discriminator="type"),
]

#: States that end with a result and can Retry and Catch.
Retryable = TaskState | ParallelState | MapState


#: A schedule's name in its definition (its id is DEFINITION.NAME).
SCHEDULE_NAME = r"^[A-Za-z0-9][A-Za-z0-9_-]*$"
#: Schedules one definition may declare.
MAX_SCHEDULES = 50


class Trigger(_Node):
    """Bridge extension: which events start a process, and how to read them.

    ``CorrelationKey`` and ``InputPath`` are JSONPath over the event's data, or JSONata
    ``{% %}`` expressions over ``$states.input`` (the event's data).
    """

    topic: str = Field(min_length=1)
    event_type: str | list[str]
    correlation_key: str
    event_id: str | None = None
    type_path: str = "$.type"
    input_path: str = "$"
    #: A start event whose key already has a running process of this definition: start
    #: another, ignore the event, or deliver it to the running process (to a wait for it).
    on_running: Literal["StartNew", "Ignore", "Deliver"] = "StartNew"
    #: With ``Deliver``: how long the event is kept when the running process does not wait yet.
    buffer_seconds: int | None = Field(default=None, ge=0)

    def matches_type(self, event_type: str | None) -> bool:
        return event_type in _types(self.event_type)


class ScheduleDeclaration(_Node):
    """Bridge extension: a schedule that starts processes of this definition (``Schedules``).

    Exactly one of ``Cron`` (in ``TimeZone``), ``RateSeconds`` and ``At`` (an RFC 3339
    timestamp) says when; each tick starts a process with ``Input``. Its id is
    ``DEFINITION.NAME``; deploying a version that no longer declares it removes it.
    """

    name: str = Field(min_length=1, max_length=100, pattern=SCHEDULE_NAME)
    cron: str | None = None
    time_zone: str | None = None
    rate_seconds: int | None = None
    at: str | None = None
    input: JSON = Field(default_factory=dict)
    #: The previous process still runs: skip the tick, allow another, or buffer one.
    overlap: Literal["Skip", "Allow", "BufferOne"] = "Skip"
    #: Ticks fell while no worker ran: start one process for them, or none.
    catch_up: Literal["Skip", "RunOnce"] = "RunOnce"
    #: Deployed paused (a schedule that exists already keeps its own pause).
    paused: bool = False
    description: str = Field(default="", max_length=1000)
    comment: str | None = None


def _types(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


class EventInterest(_Node):
    """Events of ``types`` on ``topic`` that some wait may want, keyed by ``key_path``.

    Derived from a definition's event waits (and ``Deliver`` triggers) when it is loaded, so that
    the workers know which topics to read and how to find an event's correlation key.
    """

    topic: str
    types: tuple[str, ...]
    key_path: str
    type_path: str = "$.type"
    #: None: the configured default.
    buffer_seconds: int | None = None
    #: From a ``Deliver`` trigger rather than an event wait.
    from_trigger: bool = False
    #: Where plain JSON events keep their identity, for deduplication.
    id_path: str | None = None


def event_wait_specs(parameters: JSON) -> list[dict[str, JSON]]:
    """The event specs of a ``bridge:event:waitFor`` task: ``Events`` or the single-spec form."""
    if isinstance(parameters, dict) and isinstance(parameters.get("Events"), list):
        return [spec for spec in parameters["Events"] if isinstance(spec, dict)]
    return [parameters] if isinstance(parameters, dict) else []


#: The longest an express process may run (Step Functions Express: five minutes).
EXPRESS_MAX_SECONDS = 300
#: What an express process keeps of its history: its start, its end and its failures.
EXPRESS_HISTORY = frozenset(
    {
        "ProcessStarted",
        "ProcessRedriven",
        "ProcessSucceeded",
        "ProcessFailed",
        "ProcessTimedOut",
        "ProcessAborted",
        "TaskFailed",
        "TaskTimedOut",
        "BranchFailed",
        "ErrorCaught",
        # The links to child processes (GET /processes/{id} lists children from them).
        "ChildStarted",
        "ChildNotStarted",
        # A search attribute value that was not kept, and why.
        "SearchAttributeSkipped",
    }
)


class Definition(_Node):
    """A whole state machine plus the bridge's extensions. ``name`` and ``version`` are set by
    whoever loads it (a file name, a deploy call)."""

    # Set by name only: their aliases must not catch the document's own fields ("Version" is
    # the ASL version, below).
    name: str = Field(default="", exclude=True, alias="bridge:name")
    version: int = Field(default=1, exclude=True, alias="bridge:version")
    comment: str | None = None
    start_at: str
    states: dict[str, State] = Field(min_length=1)
    timeout_seconds: int | None = Field(default=None, ge=1)
    query_language: QueryLanguage = "JSONPath"
    triggers: list[Trigger] = Field(default_factory=list)
    asl_version: str | None = Field(default=None, alias="Version")
    #: EXPRESS: short, high-volume processes that keep only their start, end and failures in the
    #: history and end TIMED_OUT after five minutes at most.
    process_type: Literal["STANDARD", "EXPRESS"] = "STANDARD"
    #: Days a finished process and its history are kept, over BRIDGE_RETENTION_DAYS; 0 keeps
    #: them for good. The newest version's value holds for every process of the definition.
    retention_days: int | None = Field(default=None, ge=0, le=36_500)
    #: Schedules that start processes of this definition; the newest version's hold.
    schedules: list[ScheduleDeclaration] = Field(default_factory=list, max_length=MAX_SCHEDULES)
    #: Bridge extension: the business fields a process is listed and filtered by, evaluated
    #: over its input when it starts (``bridge.asl.search``).
    search_attributes: dict[str, JSON] | None = None
    #: Who hears of this definition's approvals (bridge.asl.notify), for every approval step
    #: without a Notify of its own; written out, never read from the data.
    notify: dict[str, Any] | None = None

    @property
    def express(self) -> bool:
        return self.process_type == "EXPRESS"

    @property
    def max_seconds(self) -> int | None:
        """How long a process may run: TimeoutSeconds, and for EXPRESS five minutes at most."""
        if self.express:
            return min(self.timeout_seconds or EXPRESS_MAX_SECONDS, EXPRESS_MAX_SECONDS)
        return self.timeout_seconds

    def keeps(self, history_type: str) -> bool:
        """Whether a history entry of this type is kept (EXPRESS keeps few)."""
        return not self.express or history_type in EXPRESS_HISTORY


def event_interests(definition: Definition) -> list[EventInterest]:
    """Every (topic, types, key path) any wait or Deliver trigger of ``definition`` listens for."""
    found: list[EventInterest] = []
    for trigger in definition.triggers:
        if trigger.on_running == "Deliver" and not trigger.correlation_key.startswith("{%"):
            found.append(
                EventInterest(
                    topic=trigger.topic,
                    types=tuple(_types(trigger.event_type)),
                    key_path=trigger.correlation_key,
                    type_path=trigger.type_path,
                    buffer_seconds=trigger.buffer_seconds,
                    from_trigger=True,
                    id_path=trigger.event_id,
                )
            )
    for state in _all_states(definition):
        if isinstance(state, TaskState) and state.resource == EVENT_WAIT:
            template = state.arguments if state.arguments is not None else state.parameters
            for spec in event_wait_specs(template):
                interest = _interest(spec)
                if interest is not None:
                    found.append(interest)
    return found


def _interest(spec: dict[str, JSON]) -> EventInterest | None:
    topic, types, key_path = spec.get("Topic"), spec.get("EventType"), spec.get("KeyPath")
    if not isinstance(topic, str) or not isinstance(key_path, str):
        return None
    if not (isinstance(types, str) or (isinstance(types, list) and types)):
        return None
    buffer = spec.get("BufferSeconds")
    return EventInterest(
        topic=topic,
        types=tuple(_types(types)),
        key_path=key_path,
        type_path=str(spec.get("TypePath", "$.type")),
        buffer_seconds=buffer if isinstance(buffer, int) else None,
        id_path=spec["EventId"] if isinstance(spec.get("EventId"), str) else None,
    )


def map_state_names(machine: Definition | Machine) -> frozenset[str]:
    """The names of the Map states anywhere in ``machine`` (state names are unique in a whole
    definition)."""
    return frozenset(name for name, state in _named_states(machine) if isinstance(state, MapState))


def _named_states(machine: Definition | Machine) -> Iterator[tuple[str, object]]:
    for name, state in machine.states.items():
        yield name, state
        if isinstance(state, ParallelState):
            for branch in state.branches:
                yield from _named_states(branch)
        if isinstance(state, MapState):
            yield from _named_states(state.processor)


def _all_states(machine: Definition | Machine) -> Iterator[object]:
    for _, state in _named_states(machine):
        yield state


Machine.model_rebuild()
ItemProcessor.model_rebuild()
ParallelState.model_rebuild()
MapState.model_rebuild()
Definition.model_rebuild()


def parse_definition(document: Mapping[str, JSON], name: str, version: int = 1) -> Definition:
    """Parse and validate; raise ``DefinitionError`` naming every problem's state and field.

    Every problem is reported in one pass: states that do not parse are set aside (a stand-in
    takes their place) so that the checks of the whole machine still run on the rest.
    """
    if not isinstance(document, Mapping):
        raise DefinitionError(["the definition must be a JSON object"])
    # Imported here, not at the top: validation reads the node classes above, so it imports
    # this module.
    from bridge.asl.validation import semantic_problems

    try:
        definition = Definition.model_validate({**document, "name": name, "version": version})
    except ValidationError as exc:
        failures = exc.errors()
        problems = describe_errors(failures)
        stand_ins = _stand_ins(document, failures)
        if stand_ins is not None:
            try:
                patched = Definition.model_validate(
                    {**document, "States": stand_ins[0], "name": name, "version": version}
                )
            except ValidationError:
                pass
            else:
                # A state reached only through a set-aside state's Catch or Choices would look
                # unreachable: that check waits until every state parses.
                problems += [
                    problem
                    for problem in semantic_problems(patched)
                    if not problem.endswith("is not reachable from StartAt")
                ]
        raise DefinitionError(problems) from None
    problems = list(semantic_problems(definition))
    if problems:
        raise DefinitionError(problems)
    return definition


def _stand_ins(
    document: Mapping[str, JSON], failures: list[Any]
) -> tuple[dict[str, JSON], set[str]] | None:
    """The document's States with each top-level state that failed to parse replaced by a Pass
    that ends, and those states' names; None when something outside the states failed."""
    states = document.get("States")
    if not isinstance(states, Mapping):
        return None
    broken: set[str] = set()
    for failure in failures:
        location = failure["loc"]
        if len(location) < 2 or location[0] != "States" or location[1] not in states:
            return None
        broken.add(str(location[1]))
    patched = {key: value for key, value in states.items()}
    for state in broken:
        # The stand-in keeps where the state goes, so that its transitions are checked too.
        original = states[state] if isinstance(states[state], Mapping) else {}
        stand_in: dict[str, JSON] = {"Type": "Pass"}
        for field in ("Next", "End"):
            if field in original and isinstance(original[field], str | bool):
                stand_in[field] = original[field]
        if "Next" not in stand_in and "End" not in stand_in:
            stand_in["End"] = True
        patched[state] = stand_in
    return patched, broken


def describe_errors(failures: list[Any]) -> list[str]:
    """Pydantic's errors in the user's words: one line per field, naming the state and field,
    without pydantic's internals (union members, constraint names, regular expressions)."""
    by_place: dict[str, list[Mapping[str, Any]]] = {}
    for failure in failures:
        place = ".".join(str(part) for part in failure["loc"] if not _is_internal(part))
        by_place.setdefault(place, []).append(failure)
    return [_describe(place, found) for place, found in by_place.items()]


def _describe(place: str, failures: list[Mapping[str, Any]]) -> str:
    kinds = {failure["type"] for failure in failures}
    first = failures[0]
    if "union_tag_invalid" in kinds:
        tag = str(first.get("ctx", {}).get("tag", ""))
        close = difflib.get_close_matches(tag, STATE_TYPES, n=1)
        hint = f"did you mean '{close[0]}'?" if close else f"one of {', '.join(STATE_TYPES)}"
        return f"{place}.Type: '{tag}' is not a state type; {hint}"
    if "union_tag_not_found" in kinds:
        return f"{place}.Type: missing; one of {', '.join(STATE_TYPES)}"
    if kinds == {"extra_forbidden"}:
        types = [part for part in first["loc"] if part in STATE_TYPES]
        owner = f"a {types[-1]} state" if types else "this object"
        return f"{place}: is not a field of {owner}"
    if "missing" in kinds:
        return f"{place}: is required"
    # A field that takes a number or a {% JSONata %} expression fails once per kind: say what
    # the number had to be, which is what the user meant to give.
    messages = [_message(failure) for failure in failures if "str" not in failure["type"]]
    messages = messages or [_message(failures[0])]
    text = "; ".join(dict.fromkeys(messages))
    if any(failure["type"] == "string_pattern_mismatch" for failure in failures):
        text += " (or a {% JSONata %} expression)"
    return f"{place}: {text}" if place else text


_PLAIN = {
    "int_parsing": "must be a whole number",
    "int_type": "must be a whole number",
    "int_from_float": "must be a whole number",
    "float_parsing": "must be a number",
    "float_type": "must be a number",
    "string_type": "must be a string",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "dict_type": "must be an object",
    "list_type": "must be a list",
    "model_type": "must be an object",
    "model_attributes_type": "must be an object",
    "literal_error": "must be one of {expected}",
    "greater_than_equal": "must be at least {ge}",
    "greater_than": "must be more than {gt}",
    "less_than_equal": "must be at most {le}",
    "less_than": "must be less than {lt}",
    "too_short": "needs at least {min_length}",
    "too_long": "may have at most {max_length}",
    "string_too_short": "must not be empty",
    "string_pattern_mismatch": "has the wrong form",
}


def _message(failure: Mapping[str, Any]) -> str:
    template = _PLAIN.get(failure["type"])
    if template is None:
        return str(failure["msg"])
    context = {key: str(value) for key, value in (failure.get("ctx") or {}).items()}
    try:
        return template.format(**context)
    except KeyError:
        return str(failure["msg"])


STATE_TYPES = ("Pass", "Task", "Choice", "Wait", "Succeed", "Fail", "Parallel", "Map")


def _is_internal(part: object) -> bool:
    """A part of pydantic's error location that names its own machinery, not the user's field:
    the state type it tried, a union member, a constraint."""
    return part in STATE_TYPES or (
        isinstance(part, str)
        and (part.startswith(("constrained-", "function-")) or part in _MEMBERS)
    )


_MEMBERS = frozenset({"int", "str", "float", "bool", "list[str]", "str-enum"})
