"""The operations of the HTTP API, one entry each: path, method, models, answers and the words
the OpenAPI document (approvals/openapi.py) shows for them.

Each operation is declared once here; the handlers validate their input with the same pydantic
models (approvals/schemas.py), and tests/integration/test_openapi_fuzz.py runs schemathesis
against the running server to hold the two together.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel

from approvals import schemas as s
from approvals.diagrams import DiagramQuery
from bridge import aliases as naming

JSON = "application/json"
PROBLEM = "application/problem+json"
STRUCTURED_EVENT = "application/cloudevents+json"
HTML = "text/html"

Access = Literal["public", "read", "admin", "token"]


@dataclass(frozen=True)
class Answer:
    description: str
    model: type[BaseModel] | None = None
    media: str = JSON
    also_html: bool = False
    #: Other media types the same answer may come in (text formats, schema: a string).
    more_media: tuple[str, ...] = ()


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    id: str
    summary: str
    tag: str
    answers: Mapping[int, Answer]
    access: Access = "read"
    body: type[BaseModel] | Literal["any", "definition", "form-or-json", "event"] | None = None
    query: type[BaseModel] | None = None
    params: Mapping[str, str] = field(default_factory=dict)
    description: str = ""


_PROBLEMS = {
    400: "The request is malformed: the problem names the parameter or field",
    401: "An API token is needed (only when API tokens are configured)",
    403: "The token may not do that",
    404: "Not found",
    409: "Refused in the resource's present state",
    413: "The body is too large (256 KiB at most)",
    415: "The body is not JSON (`Content-Type: application/json`, or a JSON type such as "
    "`application/cloudevents+json`), nor a form where a page posts one",
    422: "The definition does not validate: `problems` lists each finding",
}
#: What the guard (approvals/guard.py) may answer to any request, and to any write.
_ANY_REQUEST = {400: "A path parameter or query string holds a NUL character or is too long"}
_ANY_WRITE = {
    403: "A write from another site (a present Origin that is not the bridge's, or "
    "Sec-Fetch-Site: cross-site or same-site), or one the token may not do",
    415: _PROBLEMS[415],
    503: "The database (or, for `POST /events`, the broker) is unavailable: try again later "
    "(`Retry-After`)",
}
WRITES = frozenset({"post", "put", "patch", "delete"})


def _problems(*statuses: int) -> dict[int, Answer]:
    return {status: Answer(_PROBLEMS[status], s.Problem, PROBLEM) for status in statuses}


def answers_of(op: Operation) -> dict[int, Answer]:
    """The operation's own answers, and the guard's refusals it may meet too."""

    def refusals(texts: Mapping[int, str]) -> dict[int, Answer]:
        return {status: Answer(text, s.Problem, PROBLEM) for status, text in texts.items()}

    writes = refusals(_ANY_WRITE) if op.method in WRITES else {}
    return {**refusals(_ANY_REQUEST), **op.answers, **writes}


PROCESS_ID = {"id": "The process id"}
#: Path parameters whose values follow a pattern (others are any non-empty string).
PATTERNS = {
    "name": naming.DEFINITION_NAME.pattern,
    "alias": naming.ALIAS_NAME.pattern,
}
_TASK_OUTCOMES: tuple[tuple[str, str, type[BaseModel] | Literal["any"] | None], ...] = (
    ("success", "Complete a waiting task: the body is its result", "any"),
    ("failure", "Fail a waiting task with an error and cause", s.TaskFailure),
    ("heartbeat", "Tell a waiting task its worker is alive", None),
)
DEFINITION_NAME = {"name": "The definition's name"}

OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "get",
        "/healthz",
        "health",
        "Health: the database answers",
        "service",
        {200: Answer("Healthy", s.Health), 503: Answer("The database is away", s.Problem, PROBLEM)},
        access="public",
    ),
    Operation(
        "post",
        "/processes",
        "startProcess",
        "Start a process",
        "processes",
        {
            200: Answer("Ended within ?wait=, or started before under this name", s.ProcessView),
            201: Answer("Started", s.ProcessView),
            202: Answer("Still running after ?wait= seconds: follow Location", s.ProcessView),
            **_problems(400, 401, 403, 404, 409, 413),
        },
        access="admin",
        body=s.StartBody,
        query=s.StartQuery,
        description=(
            "Starts a process of a definition (by name, NAME:ALIAS or NAME:VERSION). With "
            "`?wait=SECONDS` the answer waits for the end, like Step Functions' "
            "StartSyncExecution. A `name` makes the start idempotent."
        ),
    ),
    Operation(
        "get",
        "/processes",
        "listProcesses",
        "List processes, newest first",
        "processes",
        {200: Answer("A page of processes", s.ProcessPage, also_html=True), **_problems(400, 401)},
        query=s.ProcessQuery,
    ),
    Operation(
        "get",
        "/processes/{id}",
        "getProcess",
        "Describe a process",
        "processes",
        {200: Answer("The process", s.ProcessView, also_html=True), **_problems(401, 404)},
        params=PROCESS_ID,
    ),
    Operation(
        "get",
        "/processes/{id}/history",
        "getProcessHistory",
        "A process's history, oldest first",
        "processes",
        {200: Answer("A page of history entries", s.HistoryPage), **_problems(400, 401, 404)},
        query=s.HistoryQuery,
        params=PROCESS_ID,
    ),
    Operation(
        "post",
        "/processes/{id}/stop",
        "stopProcess",
        "Stop a running process (ABORTED with error and cause)",
        "processes",
        {200: Answer("Stopped", s.ProcessView), **_problems(400, 401, 403, 404, 409, 413)},
        access="admin",
        body=s.StopBody,
        params=PROCESS_ID,
    ),
    Operation(
        "post",
        "/processes/{id}/redrive",
        "redriveProcess",
        "Redrive a failed, timed-out or aborted process from the state that failed",
        "processes",
        {200: Answer("Running again", s.ProcessView), **_problems(401, 403, 404, 409)},
        access="admin",
        params=PROCESS_ID,
    ),
    *(
        Operation(
            "post",
            f"/tasks/{{token}}/{outcome}",
            f"task{outcome.title()}",
            summary,
            "tasks",
            {200: Answer("Accepted", s.TaskAccepted), **_problems(400, 404, 409, 413)},
            access="token",
            body=body,
            params={"token": "The task token the command carried"},
        )
        for outcome, summary, body in _TASK_OUTCOMES
    ),
    Operation(
        "get",
        "/events/{id}",
        "explainEvent",
        "What became of an event",
        "events",
        {200: Answer("The event as received", s.EventExplanations), **_problems(401, 404)},
        params={
            "id": "CloudEvents id, the configured event id, or TOPIC/PARTITION/OFFSET",
        },
    ),
    Operation(
        "post",
        "/events",
        "publishEvent",
        "Publish an event to a topic the bridge reads",
        "events",
        {
            202: Answer("The broker has the event", s.EventAccepted),
            **_problems(400, 401, 403, 413),
            422: Answer("No deployed definition reads the topic", s.Problem, PROBLEM),
        },
        access="admin",
        body="event",
        query=s.PublishQuery,
        description=(
            "Produces the body to `?topic=` (a topic a deployed definition reads), keyed by "
            "`?key=` or a CloudEvent's `partitionkey`, as any Kafka producer would: ordered per "
            "key, deduplicated when consumed by its CloudEvents source and id (or the trigger's "
            "`EventId`). The body is plain JSON (`application/json`), a structured CloudEvent "
            "(`application/cloudevents+json`), or a CloudEvent in binary mode (`ce-id`, "
            "`ce-source`, `ce-type`, `ce-specversion: 1.0` headers and JSON data). 202 once the "
            "broker has it, with the explanation URL in `Location`; 503 with `Retry-After` when "
            "no broker takes it."
        ),
    ),
    Operation(
        "post",
        "/bulk-operations",
        "askBulkOperation",
        "Stop or redrive every process a filter matches, as a tracked operation",
        "processes",
        {
            202: Answer("Asked for: a worker carries it out (follow Location)", s.BulkView),
            **_problems(400, 401, 403, 413),
        },
        access="admin",
        body=s.BulkBody,
        description=(
            "Covers the processes that match `filter` and started before it was asked for, "
            "only those its action applies to (stop: RUNNING; redrive: FAILED, TIMED_OUT, "
            "ABORTED). A worker applies it through the same path as one process's stop or "
            "redrive, `ratePerSecond` processes a second at most, and records its progress; "
            "a process that no longer qualifies when its turn comes is skipped. The filter "
            "must name at least one of definition, version, correlationKey, startedAfter, "
            "startedBefore."
        ),
    ),
    Operation(
        "get",
        "/bulk-operations",
        "listBulkOperations",
        "Bulk operations, newest first",
        "processes",
        {200: Answer("The newest 100", s.BulkList, also_html=True), **_problems(401)},
    ),
    Operation(
        "get",
        "/bulk-operations/{id}",
        "getBulkOperation",
        "A bulk operation and its progress",
        "processes",
        {200: Answer("The operation", s.BulkView, also_html=True), **_problems(401, 404)},
        params={"id": "The operation's id"},
    ),
    Operation(
        "post",
        "/bulk-operations/{id}/cancel",
        "cancelBulkOperation",
        "Cancel a running bulk operation (what it did stays done)",
        "processes",
        {200: Answer("Cancelled", s.BulkView), **_problems(401, 403, 404, 409)},
        access="admin",
        params={"id": "The operation's id"},
    ),
    Operation(
        "post",
        "/approvals/{id}/seats/{seat}/{change}",
        "changeApprovalSeat",
        "Claim, give back, delegate or reassign a seat of an approval",
        "approvals",
        {200: Answer("The approval", s.ApprovalView), **_problems(400, 401, 403, 404, 409)},
        access="admin",
        body=s.SeatChangeBody,
        params={
            "id": "The approval id",
            "seat": "The seat (user:NAME, group:NAME, anyone)",
            "change": "claim, unclaim, delegate or reassign",
        },
        description=(
            "A member claims a group's seat (then only they decide it when a trusted proxy "
            "names who decides), gives it back; an assignee or an admin delegates a seat, an "
            "admin reassigns any seat. Each change is in the process history with who asked."
        ),
    ),
    Operation(
        "get",
        "/schedules",
        "listSchedules",
        "Schedules, with their next runs",
        "schedules",
        {200: Answer("The schedules", s.ScheduleList, also_html=True), **_problems(401)},
        query=s.ScheduleQuery,
    ),
    Operation(
        "get",
        "/schedules/{id}",
        "getSchedule",
        "A schedule: when, its policies, its next runs and what its last tick did",
        "schedules",
        {200: Answer("The schedule", s.ScheduleView, also_html=True), **_problems(401, 404)},
        params={"id": "The schedule's id (DEFINITION.NAME for a definition's)"},
    ),
    Operation(
        "put",
        "/schedules/{id}",
        "putSchedule",
        "Make or change a schedule",
        "schedules",
        {
            200: Answer("Changed", s.ScheduleView),
            201: Answer("Made", s.ScheduleView),
            **_problems(400, 401, 403, 409, 413),
        },
        access="admin",
        body=s.ScheduleBody,
        params={"id": "Letters, digits, '_' and '-' (200 at most)"},
        description=(
            "Each tick starts a process of `definition` with `input`; the tick is the start's "
            "identity, so it starts one process however many workers run, before and after a "
            "crash. Exactly one of `cron` (with `timeZone`), `rateSeconds` and `at`. A changed "
            "time takes effect from now; a change keeps the schedule's pause and counts. A "
            "schedule a definition declares (`Schedules`) is changed by deploying it: 409."
        ),
    ),
    Operation(
        "post",
        "/schedules/{id}/pause",
        "pauseSchedule",
        "Pause a schedule: its ticks start nothing until it is resumed",
        "schedules",
        {200: Answer("Paused", s.ScheduleView), **_problems(400, 401, 403, 404)},
        access="admin",
        body=s.PauseBody,
        params={"id": "The schedule's id"},
    ),
    Operation(
        "post",
        "/schedules/{id}/resume",
        "resumeSchedule",
        "Resume a schedule from its next tick after now (paused ticks are not owed)",
        "schedules",
        {200: Answer("Resumed", s.ScheduleView), **_problems(401, 403, 404)},
        access="admin",
        params={"id": "The schedule's id"},
    ),
    Operation(
        "delete",
        "/schedules/{id}",
        "deleteSchedule",
        "Delete a schedule made through the API (its processes stay)",
        "schedules",
        {204: Answer("Deleted", media=""), **_problems(401, 403, 404, 409)},
        access="admin",
        params={"id": "The schedule's id"},
    ),
    Operation(
        "post",
        "/test-state",
        "testState",
        "Run one state on its own, like Step Functions' TestState",
        "definitions",
        {200: Answer("What the state did", s.StateTestAnswer), **_problems(400, 401, 403, 413)},
        access="admin",
        body=s.StateTestBody,
        description=(
            "Runs a state (or the state `stateName` of a state machine) on `input` with "
            "`variables` and, for a Task, `mock.result` or `mock.errorOutput`; answers its "
            "status (SUCCEEDED, FAILED, RETRIABLE, CAUGHT_ERROR), output, error, cause, "
            "nextState and, at inspectionLevel DEBUG or TRACE, the inspection data. Nothing is "
            "stored and nothing is sent."
        ),
    ),
    Operation(
        "get",
        "/definitions",
        "listDefinitions",
        "Definitions, each at its newest version",
        "definitions",
        {200: Answer("The definitions", s.DefinitionList), **_problems(401)},
    ),
    Operation(
        "get",
        "/definitions/{name}",
        "getDefinition",
        "A definition version and its document",
        "definitions",
        {200: Answer("The definition", s.DefinitionDocument), **_problems(400, 401, 404)},
        query=s.VersionQuery,
        params=DEFINITION_NAME,
    ),
    Operation(
        "put",
        "/definitions/{name}",
        "deployDefinition",
        "Deploy the body (an ASL document) as the next version",
        "definitions",
        {
            200: Answer("Equal to the newest version: nothing deployed", s.DefinitionDeployed),
            201: Answer("Deployed as a new version", s.DefinitionDeployed),
            **_problems(400, 401, 403, 413, 422),
        },
        access="admin",
        body="definition",
        params=DEFINITION_NAME,
    ),
    Operation(
        "get",
        "/definitions/{name}/aliases",
        "listAliases",
        "A definition's aliases",
        "definitions",
        {200: Answer("The aliases", s.AliasList), **_problems(401, 404)},
        params=DEFINITION_NAME,
    ),
    Operation(
        "get",
        "/definitions/{name}/aliases/{alias}",
        "getAlias",
        "An alias and its routes",
        "definitions",
        {200: Answer("The alias", s.AliasView), **_problems(401, 404)},
        params={**DEFINITION_NAME, "alias": "The alias's name"},
    ),
    Operation(
        "put",
        "/definitions/{name}/aliases/{alias}",
        "putAlias",
        "Create or change an alias routing starts to one or two versions by weight",
        "definitions",
        {200: Answer("The alias", s.AliasView), **_problems(400, 401, 403, 404, 413, 422)},
        access="admin",
        body=s.AliasBody,
        params={**DEFINITION_NAME, "alias": "The alias's name"},
    ),
    Operation(
        "delete",
        "/definitions/{name}/aliases/{alias}",
        "deleteAlias",
        "Delete an alias",
        "definitions",
        {204: Answer("Deleted", media=""), **_problems(401, 403, 404)},
        access="admin",
        params={**DEFINITION_NAME, "alias": "The alias's name"},
    ),
    Operation(
        "get",
        "/definitions/{name}/diagram",
        "getDefinitionDiagram",
        "A definition version drawn, with a process's visited, current and failed states",
        "definitions",
        {
            200: Answer(
                "The diagram: SVG (by Graphviz when installed, else drawn by the bridge), "
                "Mermaid stateDiagram-v2 text or Graphviz DOT",
                media="image/svg+xml",
                more_media=("text/vnd.mermaid", "text/vnd.graphviz"),
            ),
            **_problems(400, 401, 404),
        },
        query=DiagramQuery,
        params=DEFINITION_NAME,
    ),
    Operation(
        "get",
        "/approvals",
        "listApprovals",
        "Approvals (pending by default)",
        "approvals",
        {200: Answer("The approvals", s.ApprovalList, also_html=True), **_problems(400, 401)},
        query=s.ApprovalQuery,
    ),
    Operation(
        "get",
        "/approvals/{id}",
        "getApproval",
        "An approval with its votes",
        "approvals",
        {200: Answer("The approval", s.ApprovalView, also_html=True), **_problems(401, 404)},
        params={"id": "The approval id"},
    ),
    *(
        Operation(
            "get",
            f"/{action}/{{token}}",
            f"{action}Page",
            f"The page to {action} through an approval link (shows, never decides)",
            "approvals",
            {
                200: Answer("The decision page", media=HTML),
                404: Answer("The link is unknown or no longer valid", media=HTML),
            },
            access="token",
            params={"token": "The link's token"},
        )
        for action in ("approve", "reject")
    ),
    *(
        Operation(
            "post",
            f"/{action}/{{token}}",
            f"{action}Link",
            f"{action.title()} through an approval link (machines POST JSON or nothing)",
            "approvals",
            {200: Answer("Recorded", s.DecisionRecorded), **_problems(400, 404, 409, 413)},
            access="token",
            body="form-or-json",
            params={"token": "The link's token"},
            description="A GET of the same link shows the decision page and never decides.",
        )
        for action in ("approve", "reject")
    ),
    *(
        Operation(
            "post",
            f"/{action}/{{token}}/seat",
            f"{action}LinkSeat",
            "Claim, give back or delegate the link's seat (the decision page's form)",
            "approvals",
            {
                303: Answer("Changed: back to the decision page", media=""),
                400: Answer("Not a change of seat", media=HTML),
                403: Answer("The form's nonce is missing or wrong", media=HTML),
                404: Answer("The link is unknown or no longer valid", media=HTML),
                409: Answer("Refused in the seat's present state", media=HTML),
                413: Answer(_PROBLEMS[413], s.Problem, PROBLEM),
            },
            access="token",
            params={"token": "The link's token"},
            description=(
                "A form with `seat_nonce` (from the page), `change` (claim, unclaim, "
                "delegate) and `name` (a claim's name without a trusted proxy; a "
                "delegation's delegate)."
            ),
        )
        for action in ("approve", "reject")
    ),
    Operation(
        "get",
        "/metrics",
        "metrics",
        "Prometheus metrics",
        "service",
        {200: Answer("Text exposition format", media="text/plain"), **_problems(401)},
    ),
)
