"""Definitions as frozen, typed objects: the node classes a state machine document parses into.

Loading a document is ``loading.parse_definition(document) -> Definition``: it parses into these
classes, then checks what they cannot see (``validation``), and raises ``DefinitionError`` listing
every problem with the state and field it concerns. The interpreter only ever sees a valid
``Definition``. This module imports neither: both read the node classes here.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_pascal

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
