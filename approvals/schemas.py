"""The HTTP API's bodies as pydantic models: requests are validated with them, responses are built
from them, and the OpenAPI document (approvals/openapi.py) is generated from them, so the three
cannot drift apart."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from bridge.asl import search_filter
from bridge.asl.process import Process, ProcessStatus
from bridge.asl.search import SearchValue
from bridge.asl.types import JSON

JSONValue = JSON
Status = Literal["RUNNING", "SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"]


class View(BaseModel):
    """A response body: camelCase on the wire."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)

    def dump(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)


class Request(BaseModel):
    """A request body: camelCase on the wire, unknown fields refused. Bodies are read through
    approvals/guard.py, which has refused NUL characters and deep nesting already."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


# ------------------------------------------------------------------------------------ errors


class Problem(View):
    """RFC 9457 problem details."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None


# --------------------------------------------------------------------------------- processes


class ProcessLinks(View):
    self: str
    history: str
    parent: str | None = Field(default=None, description="The parent process, for a child")


class ChildLinks(View):
    self: str


class ChildView(View):
    """A child process started by a ``bridge:process:start`` task of this one."""

    id: str
    state: str | None = Field(description="The parent's state that started it")
    definition: str | None
    version: int | None
    name: str | None = Field(description="The Name the task gave it")
    sync: bool = Field(description="Whether the parent waited for its end (.sync)")
    status: Status | None
    started_at: datetime | None
    links: ChildLinks


class ProcessView(View):
    id: str
    definition: str
    version: int
    correlation_key: str | None
    status: Status
    current_state: str | None = Field(description="The state it waits in, while RUNNING")
    last_state: str | None = Field(description="The state it was last in")
    input: JSONValue
    output: JSONValue
    error: str | None
    cause: str | None
    started_at: datetime
    ended_at: datetime | None
    retained_until: datetime | None = Field(
        default=None,
        description="When retention deletes the finished process and its history (null while "
        "it runs, or when it is kept for good)",
    )
    links: ProcessLinks
    parent_id: str | None = Field(
        default=None, description="The process that started this one (bridge:process:start)"
    )
    parent_state: str | None = Field(default=None, description="The parent's state that did")
    children: list[ChildView] | None = Field(
        default=None,
        description="The child processes it started, oldest first (null in process lists)",
    )
    search_attributes: dict[str, SearchValue] = Field(
        default_factory=dict,
        description="The business fields it is listed and filtered by (SearchAttributes)",
    )

    @classmethod
    def of(
        cls,
        process: Process,
        base_url: str = "",
        children: list[dict[str, Any]] | None = None,
        retained_until: datetime | None = None,
    ) -> ProcessView:
        """``children``: rows of ``bridge.store.processes.children_of``, or None to leave out;
        ``retained_until``: when retention deletes it (bridge.retention)."""
        parent = process.parent
        return cls(
            id=process.id,
            definition=process.definition,
            version=process.version,
            correlation_key=process.correlation_key,
            status=process.status.value,
            current_state=process.current_state
            if process.status is ProcessStatus.RUNNING
            else None,
            last_state=process.current_state,
            input=process.input,
            output=process.output,
            error=process.error,
            cause=process.cause,
            started_at=process.started_at,
            ended_at=process.ended_at,
            retained_until=retained_until,
            links=ProcessLinks(
                self=f"{base_url}/processes/{process.id}",
                history=f"{base_url}/processes/{process.id}/history",
                parent=f"{base_url}/processes/{parent.id}" if parent else None,
            ),
            parent_id=parent.id if parent else None,
            parent_state=parent.state if parent else None,
            search_attributes=process.search_attributes,
            children=None
            if children is None
            else [
                ChildView(
                    **child,
                    links=ChildLinks(self=f"{base_url}/processes/{child['id']}"),
                )
                for child in children
            ],
        )


class ProcessPage(View):
    items: list[ProcessView]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next (older) page")


class HistoryEntry(View):
    seq: int
    at: datetime
    type: str
    state: str | None
    details: dict[str, JSONValue] | None = None


class HistoryPage(View):
    process_id: str
    items: list[HistoryEntry]
    next_after: int | None = Field(description="Pass as ?after= for the next page")


class StartBody(Request):
    definition: str = Field(
        min_length=1,
        max_length=200,
        description="A definition name, or NAME:ALIAS to route by an alias, or NAME:VERSION",
    )
    version: int | None = Field(default=None, ge=1, le=2**31 - 1)
    input: JSONValue = Field(default_factory=dict)
    name: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="Makes the start idempotent: a second start with this name answers the first",
    )
    correlation_key: str | None = Field(default=None, max_length=500)


class StopBody(Request):
    error: str = Field(default="Process.Stopped", max_length=256)
    cause: str = Field(default="", max_length=32_768)


# -------------------------------------------------------------------------------- test state


class StateTestErrorOutput(Request):
    error: str = Field(min_length=1, max_length=256)
    cause: str | None = Field(default=None, max_length=32_768)


class StateTestMock(Request):
    result: JSONValue = Field(
        default=None, description="The Task's result: JSON text (as AWS takes it) or a value"
    )
    error_output: StateTestErrorOutput | None = None


class StateTestConfiguration(Request):
    retrier_retry_count: int = Field(
        default=0, ge=0, le=1000, description="Retries the state's retriers made already"
    )


class StateTestBody(Request):
    """AWS Step Functions' TestState request: the fields AWS takes as JSON text (definition,
    input, variables, mock.result) may also be given as JSON values."""

    definition: JSONValue = Field(description="A state, or a state machine with stateName")
    state_name: str | None = Field(default=None, min_length=1, max_length=200)
    input: JSONValue = None
    variables: JSONValue = None
    inspection_level: Literal["INFO", "DEBUG", "TRACE"] = "INFO"
    mock: StateTestMock | None = None
    context: JSONValue = Field(default=None, description="Context object fields ($$)")
    state_configuration: StateTestConfiguration | None = None


class StateTestAnswer(View):
    status: Literal["SUCCEEDED", "FAILED", "RETRIABLE", "CAUGHT_ERROR"]
    output: str | None = Field(default=None, description="The state's output as JSON text")
    error: str | None = None
    cause: str | None = None
    next_state: str | None = None
    inspection_data: dict[str, JSONValue] | None = Field(
        default=None,
        description="At DEBUG and TRACE: each stage of the data flow as JSON text "
        "(afterInputPath, afterParameters, result, ...), and errorDetails",
    )


# ------------------------------------------------------------------------------------- tasks


class TaskFailure(Request):
    error: str = Field(default="", max_length=256)
    cause: str = Field(default="", max_length=32_768)


class TaskAccepted(View):
    status: Literal["accepted"]
    process_id: str


# ------------------------------------------------------------------------------------ events


class EventExplained(View):
    key: str
    event_id: str | None
    source: str | None
    type: str | None
    topic: str | None
    partition: int | None
    offset: int | None
    received_at: datetime
    outcome: str
    correlation_keys: list[str]
    wait_keys: list[str]
    started: list[dict[str, JSONValue]] = Field(
        description="Processes the event started: processId, definition"
    )
    delivered: list[dict[str, JSONValue]] = Field(
        description="Waits the event was delivered to: processId, waitId, key or fromBuffer"
    )
    ignored: list[dict[str, JSONValue]] = Field(
        description="Triggers that did not start a process, and why"
    )
    buffered_until: str | None
    dead_letter: str | None
    duplicates: int
    last_duplicate_at: datetime | None
    details: dict[str, JSONValue] | None = None


class EventExplanations(View):
    events: list[EventExplained]


class EventAccepted(View):
    event_id: str = Field(
        description="The CloudEvents id, or TOPIC/PARTITION/OFFSET for an event without one"
    )
    source: str | None = Field(description="The CloudEvents source, for a CloudEvent")
    type: str | None = Field(description="The CloudEvents type, for a CloudEvent")
    topic: str
    partition: int
    offset: int
    explanation: str = Field(
        description="GET it for what became of the event (404 until a worker has read it)"
    )


# ------------------------------------------------------------------------------- definitions


class DefinitionLinks(View):
    self: str
    aliases: str


class DefinitionView(View):
    name: str
    version: int
    process_type: Literal["STANDARD", "EXPRESS"]
    comment: str | None
    start_at: str
    states: list[str]
    triggers: list[dict[str, JSONValue]]
    links: DefinitionLinks


class DefinitionList(View):
    items: list[DefinitionView]


class DefinitionDocument(DefinitionView):
    document: dict[str, JSONValue] | None


class DefinitionDeployed(DefinitionView):
    new: bool = Field(description="False when the body equals the newest version")


class AliasRoute(Request):
    version: int = Field(ge=1, le=2**31 - 1)
    weight: int = Field(ge=0, le=100)


class AliasBody(Request):
    description: str = Field(default="", max_length=1000)
    routes: list[AliasRoute] = Field(
        min_length=1,
        max_length=2,
        description="One or two versions whose weights add up to 100 (Step Functions' rule)",
    )


class AliasView(View):
    definition: str
    name: str
    description: str
    routes: list[dict[str, int]]
    updated_at: datetime


class AliasList(View):
    items: list[AliasView]


# ---------------------------------------------------------------------------------- approvals


class ApprovalLinks(View):
    self: str
    process: str


class ApprovalOpened(View):
    seat: str
    action: Literal["approve", "reject"]
    viewer: str | None = Field(description="Who, as a trusted proxy said; null when unknown")
    views: int
    first_at: datetime
    last_at: datetime


class ApprovalView(View):
    id: str
    process_id: str
    definition: str | None
    state: str
    title: str
    description: str | None
    data: JSONValue
    status: str
    created_at: datetime
    decided_at: datetime | None
    expires_at: datetime | None
    on_expiry: str | None
    rule: str | int | None
    seats: list[str]
    votes: list[dict[str, JSONValue]]
    pending: list[str]
    links: ApprovalLinks
    holders: dict[str, str] = Field(
        default_factory=dict,
        description="Who holds which seat besides its own user (claims, delegations)",
    )
    form: JSONValue = Field(default=None, description="The form and outcomes of its own")
    views: list[ApprovalOpened] | None = Field(
        default=None,
        description="Who opened each link's page, how often, first and last (GET /approvals/{id})",
    )


class ApprovalList(View):
    items: list[ApprovalView]


class DecisionBody(Request):
    decision: str | None = Field(
        default=None,
        pattern=r"^(approve|reject|[A-Z][A-Z0-9_]{0,39})$",
        description="approve, reject, or one of the approval's own outcomes (its form's "
        "outcomes, e.g. REQUEST_CHANGES); none: the link's own",
    )
    comment: str | None = Field(default=None, max_length=4000)
    decided_by: str | None = Field(default=None, max_length=200)
    values: dict[str, JSONValue] | None = Field(
        default=None,
        description="The approval form's fields (see its form): checked as the page checks "
        "them, 400 with errors by field",
    )


class SeatChangeBody(Request):
    to: str | None = Field(
        default=None, min_length=1, max_length=200, description="Who holds the seat after it"
    )
    by: str | None = Field(
        default=None, max_length=200, description="Who asks (a trusted proxy's user wins)"
    )


class DecisionRecorded(View):
    status: Literal["approved", "rejected"]
    approval_id: str
    process_id: str
    seat: str


# ------------------------------------------------------------------------------------- health


class Health(View):
    status: Literal["ok"]
    definitions: list[str]


# ------------------------------------------------------------------------------ query strings


class Query(BaseModel):
    """Query parameters: camelCase, strings coerced, unknown parameters ignored. The guard
    (approvals/guard.py) has refused NUL characters already."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


def utc(moment: datetime) -> datetime:
    """A moment from a query string in UTC; one without a zone is read as UTC."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError as exc:
        raise ValueError("the moment is out of range") from exc


RFC3339 = re.compile(r"^\d{4}-\d\d-\d\d[Tt]\d\d:\d\d:\d\d(\.\d+)?([Zz]|[+-]\d\d:\d\d)$")


def rfc3339(value: object) -> datetime:
    """A query string's moment: RFC 3339 with a zone (``2026-11-22T10:00:00Z``), in UTC."""
    if isinstance(value, datetime):
        return utc(value)
    if not isinstance(value, str) or not RFC3339.match(value):
        raise ValueError("use RFC 3339 with a zone, like 2026-11-22T10:00:00Z")
    return utc(datetime.fromisoformat(value.upper()))


Moment = Annotated[datetime, BeforeValidator(rfc3339)]


def _filters(given: list[str]) -> list[str]:
    try:
        search_filter.parse_all(given)
    except search_filter.FilterError as exc:
        raise PydanticCustomError("attribute_filter", str(exc)) from None
    return [expression for expression in given if expression.strip()]


#: Search attribute filters, each ``NAME OPERATOR VALUE`` (bridge.asl.search_filter).
Where = Annotated[
    list[str],
    AfterValidator(_filters),
    Field(
        default_factory=list,
        description="Search attribute filters, repeatable, all of which a process passes: "
        "NAME OPERATOR VALUE with = != < <= > >= or ^= (starts with), e.g. "
        "customerId=abc, amount>=100, customerId^=ab. A bare number compares numerically, "
        'other values and "quoted" ones as text; at most '
        f"{search_filter.MAX_FILTERS}",
        json_schema_extra={"maxItems": search_filter.MAX_FILTERS},
    ),
]


class ProcessQuery(Query):
    definition: str | None = Field(default=None, max_length=200)
    version: int | None = Field(default=None, ge=1, le=2**31 - 1)
    status: Status | None = None
    correlation_key: str | None = Field(default=None, max_length=500)
    started_after: Moment | None = Field(default=None, description="Started at or after")
    started_before: Moment | None = Field(default=None, description="Started before")
    where: Where
    limit: int = Field(default=100, ge=1, le=1000)
    cursor: str | None = Field(
        default=None, max_length=300, description="The nextCursor of the previous page"
    )


class HistoryQuery(Query):
    after: int = Field(default=0, ge=0, le=2**31 - 1, description="Entries after this seq")
    limit: int = Field(default=1000, ge=1, le=10_000)


class StartQuery(Query):
    wait: float = Field(
        default=0,
        ge=0,
        le=60,
        description="Seconds to wait for the end; the answer is 202 when it runs longer",
    )


class PublishQuery(Query):
    topic: str | None = Field(
        default=None,
        max_length=249,
        description="The topic to produce to: one that a deployed definition reads (required)",
    )
    key: str | None = Field(
        default=None,
        max_length=500,
        description="The Kafka key (default: a CloudEvent's partitionkey, else none)",
    )


class VersionQuery(Query):
    version: int | None = Field(default=None, ge=1, le=2**31 - 1)


class ApprovalQuery(Query):
    status: Literal["PENDING", "APPROVED", "REJECTED", "EXPIRED", "CLOSED", "DECIDED", "ALL"] = (
        "PENDING"
    )
    assignee: str | None = Field(default=None, max_length=200)
    group: str | None = Field(default=None, max_length=200)
    definition: str | None = Field(default=None, max_length=200)
    min_age_minutes: int = Field(default=0, ge=0, le=10_000_000)
    mine: bool = Field(
        default=False,
        description="Only those with an undecided seat of yours: your user's, your groups', or "
        "one you hold (who you are comes from a trusted proxy's identity headers)",
    )
    sort: Literal["deadline", "requested"] = Field(
        default="deadline",
        description="deadline: the soonest deadline first (those without one last); "
        "requested: the oldest first",
    )


# --------------------------------------------------------------------------- bulk operations


class BulkFilter(Request):
    """Which processes: each field given narrows the set. At least one besides ``status``."""

    definition: str | None = Field(default=None, max_length=200)
    version: int | None = Field(default=None, ge=1, le=2**31 - 1)
    status: Status | None = Field(
        default=None, description="Default: every status the action applies to"
    )
    correlation_key: str | None = Field(default=None, max_length=500)
    started_after: Moment | None = Field(default=None, description="Started at or after")
    started_before: Moment | None = Field(default=None, description="Started before")
    where: Where

    def narrows(self) -> bool:
        return bool(self.where) or any(
            value is not None
            for value in (
                self.definition,
                self.version,
                self.correlation_key,
                self.started_after,
                self.started_before,
            )
        )


class BulkBody(Request):
    action: Literal["stop", "redrive"]
    filter: BulkFilter
    reason: str = Field(min_length=1, max_length=2000, description="Why: kept with the operation")
    rate_per_second: int = Field(default=50, ge=1, le=1000, description="Processes a second")


class BulkLinks(View):
    self: str
    processes: str = Field(description="The processes the filter names, on the list")


class BulkView(View):
    id: str
    action: Literal["stop", "redrive"]
    filter: dict[str, JSONValue] = Field(
        description="The filter it runs with: the statuses of its action, and startedBefore at "
        "the latest the time it was asked for"
    )
    reason: str
    rate_per_second: int
    status: Literal["RUNNING", "DONE", "CANCELLED"]
    total: int = Field(description="Processes that matched when it was asked for")
    applied: int = Field(description="Processes stopped or redriven so far")
    skipped: int = Field(description="Processes that no longer qualified when their turn came")
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    links: BulkLinks


class BulkList(View):
    items: list[BulkView]


# --------------------------------------------------------------------------------- schedules


class ScheduleBody(Request):
    """A schedule made or changed through the API: exactly one of cron, rateSeconds and at."""

    definition: str = Field(
        min_length=1,
        max_length=300,
        description="What each tick starts: NAME, NAME:VERSION or NAME:ALIAS",
    )
    cron: str | None = Field(
        default=None,
        max_length=200,
        description="Five fields (minute hour day-of-month month day-of-week) or a nickname "
        "such as @daily, in timeZone",
    )
    time_zone: str | None = Field(
        default=None, max_length=100, description="IANA zone of a cron schedule (UTC when absent)"
    )
    rate_seconds: int | None = Field(
        default=None,
        ge=1,
        le=10 * 366 * 86_400,
        description="Every so many seconds, counted from 1970-01-01T00:00Z",
    )
    at: str | None = Field(
        default=None, max_length=100, description="Once, at this RFC 3339 timestamp"
    )
    input: JSONValue = Field(default=None, description="Each process's input ({} when absent)")
    overlap: Literal["Skip", "Allow", "BufferOne"] = Field(
        default="Skip",
        description="When the previous process still runs: skip the tick, start another, or "
        "keep one tick until it ends",
    )
    catch_up: Literal["Skip", "RunOnce"] = Field(
        default="RunOnce",
        description="Ticks that fell while no worker ran (more than 60 s late): start one "
        "process for the latest, or none",
    )
    paused: bool = Field(default=False, description="Made paused (a change keeps its pause)")
    description: str = Field(default="", max_length=1000)


class PauseBody(Request):
    note: str | None = Field(default=None, max_length=500, description="Why, shown with it")


class ScheduleRun(View):
    scheduled_at: datetime = Field(description="The tick")
    result: Literal["started", "skipped", "buffered", "missed", "failed"]
    note: str | None


class ScheduleView(View):
    id: str
    definition: str
    declared_by: str | None = Field(
        description="The definition whose Schedules declare it (changed by deploying it)"
    )
    description: str
    cron: str | None
    time_zone: str | None
    rate_seconds: int | None
    at: datetime | None
    when: str = Field(description="cron, rate or time in a few words")
    input: JSONValue
    overlap: Literal["Skip", "Allow", "BufferOne"]
    catch_up: Literal["Skip", "RunOnce"]
    paused: bool
    paused_note: str | None
    next_run_at: datetime | None
    next_runs: list[datetime] = Field(description="The next five ticks (none while paused)")
    buffered_at: datetime | None = Field(description="A tick kept until the previous ends")
    last_run: ScheduleRun | None
    last_process_id: str | None
    last_process_url: str | None
    started: int = Field(description="Processes started")
    skipped: int = Field(description="Ticks skipped because the previous process still ran")
    missed: int = Field(description="Ticks that fell while no worker ran, without a process")
    created_at: datetime
    updated_at: datetime


class ScheduleList(View):
    items: list[ScheduleView]


class ScheduleQuery(Query):
    definition: str | None = Field(
        default=None, max_length=200, description="Those of this definition (or declared by it)"
    )


#: What a browser's ``datetime-local`` field sends: no zone, seconds optional.
LOCAL_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d(\.\d+)?)?$")


def page_times_in_utc(given: dict[str, str]) -> dict[str, str]:
    """The page's time fields are UTC (their labels say so): give them the zone the API wants."""
    found = dict(given)
    for key in ("startedAfter", "startedBefore"):
        value = found.get(key)
        if value is not None and LOCAL_TIME.match(value):
            found[key] = (value if value.count(":") == 2 else value + ":00") + "Z"
    return found
