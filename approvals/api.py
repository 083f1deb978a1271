"""JSON API: process status and history, task callbacks, health."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from approvals.guard import body_of, first_error, json_body
from approvals.keys import ENGINE
from approvals.problems import STATUS_OF, problem
from approvals.schemas import (
    AliasBody,
    AliasView,
    DefinitionDeployed,
    DefinitionDocument,
    DefinitionLinks,
    DefinitionList,
    DefinitionView,
    EventExplained,
    EventExplanations,
    HistoryEntry,
    HistoryPage,
    HistoryQuery,
    ProcessPage,
    ProcessQuery,
    ProcessView,
    StartBody,
    StartQuery,
    StateTestAnswer,
    StateTestBody,
    StopBody,
    TaskAccepted,
    TaskFailure,
    VersionQuery,
    utc,
)
from bridge.aliases import ALIAS_NAME, DEFINITION_NAME, Route
from bridge.asl import json_text, limits, search_filter
from bridge.asl.errors import DefinitionError
from bridge.asl.loading import parse_definition
from bridge.asl.model import Definition
from bridge.asl.process import Process
from bridge.definitions import deploy, set_alias
from bridge.engine import (
    CallbackReceived,
    Engine,
    EngineInput,
    Outcome,
    RedriveRequested,
    StartRequested,
    StopRequested,
)
from bridge.retention import days_of, retained_until
from bridge.store import aliases as aliases_store
from bridge.store import definitions as definitions_store
from bridge.store import inbox
from bridge.store import processes as store
from bridge.store.aliases import Alias
from bridge.store.database import reading
from bridge.test_state import Mock, StateTestError, run_test_state

#: How long a request waits for an unavailable database before it is answered 503.
DATABASE_PATIENCE_SECONDS = 10.0


async def apply_now(engine: Engine, item: EngineInput) -> Outcome:
    """Apply a request's input through the engine's one runner; a request does not wait for the
    database longer than ``DATABASE_PATIENCE_SECONDS`` (then ``Unavailable``: 503)."""
    return await engine.apply_one(item, patience=DATABASE_PATIENCE_SECONDS)


BaseModelT = TypeVar("BaseModelT", bound=BaseModel)
routes = web.RouteTableDef()


def process_view(
    engine: Engine, process: Process, children: list[dict[str, Any]] | None = None
) -> ProcessView:
    """The process as the API shows it, with when retention deletes it."""
    days = days_of(engine.registry.latest(process.definition), engine.config.retention_days)
    return ProcessView.of(
        process, engine.base_url, children, retained_until(process.ended_at, days)
    )


def process_json(
    engine: Engine, process: Process, children: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    return process_view(engine, process, children).dump()


async def _one_process(engine: Engine, process_id: str) -> dict[str, Any] | None:
    """One process as the API shows it alone: with its children's links."""
    async with reading(engine.db) as conn:
        process = await store.get(conn, process_id)
        if process is None:
            return None
        children = await store.children_of(conn, process_id)
    return process_json(engine, process, children)


def query_of(
    request: web.Request,
    model: type[BaseModelT],
    adjust: Callable[[dict[str, str]], dict[str, str]] | None = None,
) -> BaseModelT | web.Response:
    """The query string validated by ``model``, or a 400 problem naming the parameter."""
    query = dict(request.query)
    if "text/html" in request.headers.get("Accept", ""):
        # A browser's filter form sends its blank fields: blank means "no filter" there.
        query = {key: value for key, value in query.items() if value != ""}
    values: dict[str, Any] = dict(adjust(query) if adjust else query)
    for name, field in model.model_fields.items():
        # A repeatable parameter (``?where=a&where=b``) is a list of every value given.
        key = field.alias or name
        if field.annotation == list[str] and key in request.query:
            values[key] = request.query.getall(key)
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        return problem(400, "Invalid query parameter", first_error(exc))


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    try:
        async with reading(engine.db) as conn:
            await conn.exec_driver_sql("SELECT 1")
    except Exception as exc:
        return web.json_response({"status": "unavailable", "database": str(exc)}, status=503)
    return web.json_response({"status": "ok", "definitions": engine.registry.names()})


@routes.get("/processes/{id}")
async def get_process(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    found = await _one_process(engine, request.match_info["id"])
    if found is None:
        return problem(404, "Process not found", f"no process {request.match_info['id']!r}")
    return web.json_response(found)


def page_cursor(last: Process) -> str:
    """An opaque, URL-safe mark of the last row of a page."""
    return base64.urlsafe_b64encode(f"{last.started_at.isoformat()}|{last.id}".encode()).decode()


def _read_cursor(cursor: str) -> tuple[datetime, str] | None:
    try:
        text = base64.urlsafe_b64decode(cursor.encode()).decode()
        moment, _, process_id = text.partition("|")
        if not process_id:
            return None
        return utc(datetime.fromisoformat(moment)), process_id
    except ValueError:  # bad base64, bad UTF-8, bad time
        return None


async def find_processes(engine: Engine, query: ProcessQuery) -> list[Process] | None:
    """A page of processes as ``query`` asks, newest first; None when its cursor is not one of
    ours. The API and the list page both read through here."""
    before = None
    if query.cursor:
        before = _read_cursor(query.cursor)
        if before is None:
            return None
    async with reading(engine.db) as conn:
        return await store.find(
            conn,
            correlation_key=query.correlation_key,
            status=query.status,
            definition=query.definition,
            version=query.version,
            started_after=query.started_after,
            started_before=query.started_before,
            attributes=search_filter.parse_all(query.where),
            limit=query.limit,
            before=before,
        )


@routes.get("/processes")
async def list_processes(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    query = query_of(request, ProcessQuery)
    if isinstance(query, web.Response):
        return query
    found = await find_processes(engine, query)
    if found is None:
        return problem(400, "Invalid cursor", "use the nextCursor of a previous page")
    next_cursor = page_cursor(found[-1]) if len(found) == query.limit else None
    page = ProcessPage(items=[process_view(engine, p) for p in found], next_cursor=next_cursor)
    return web.json_response(page.dump())


@routes.get("/processes/{id}/history")
async def get_history(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    process_id = request.match_info["id"]
    query = query_of(request, HistoryQuery)
    if isinstance(query, web.Response):
        return query
    async with reading(engine.db) as conn:
        if await store.get(conn, process_id) is None:
            return problem(404, "Process not found", f"no process {process_id!r}")
        entries = await store.read_history(
            conn, process_id, after_seq=query.after, limit=query.limit
        )
    page = HistoryPage(
        process_id=process_id,
        items=[
            HistoryEntry(
                seq=entry["seq"],
                at=entry["at"],
                type=entry["type"],
                state=entry["state"],
                details=entry["details"] or None,
            )
            for entry in entries
        ],
        next_after=entries[-1]["seq"] if len(entries) == query.limit else None,
    )
    return web.json_response(page.dump())


@routes.post("/tasks/{token}/{outcome}")
async def task_callback(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    outcome = request.match_info["outcome"]
    token = request.match_info["token"]
    if outcome not in ("success", "failure", "heartbeat"):
        return problem(404, "Not found", "use /tasks/{token}/success, /failure or /heartbeat")
    if outcome == "failure":
        failure = await body_of(request, TaskFailure, "Invalid failure body")
        item = CallbackReceived(token, "failure", error=failure.error, cause=failure.cause)
    elif outcome == "success":
        output = await json_body(request)
        item = CallbackReceived(token, "success", output={} if output is None else output)
    else:
        item = CallbackReceived(token, "heartbeat")
    result = await apply_now(engine, item)
    if not result.ok:
        titles = {
            "not_found": "Unknown task token",
            "conflict": "Task token no longer valid",
            "invalid": "Invalid callback",
        }
        return problem(
            STATUS_OF.get(result.status, 400), titles.get(result.status, "Refused"), result.reason
        )
    return web.json_response(
        TaskAccepted(status="accepted", process_id=result.process_ids[0]).dump()
    )


@routes.get("/events/{id:.+}")
async def explain_event(request: web.Request) -> web.Response:
    """What became of an event: by CloudEvents id, configured event id, identity key or
    ``topic/partition/offset``."""
    engine = request.app[ENGINE]
    ident = request.match_info["id"]
    async with reading(engine.db) as conn:
        rows = await inbox.find(conn, ident)
    if not rows:
        return problem(
            404,
            "Event not found",
            f"no event {ident!r} was received (or it is older than the dedupe retention)",
        )
    explained = EventExplanations(events=[_explained(row) for row in rows])
    return web.json_response(explained.dump())


def _explained(row: dict[str, Any]) -> EventExplained:
    details = dict(row.get("details") or {})
    return EventExplained(
        key=row["key"],
        event_id=row["event_id"],
        source=row["source"],
        type=row["event_type"],
        topic=row["topic"],
        partition=row["partition"],
        offset=row["offset"],
        received_at=row["received_at"],
        outcome=row["outcome"],
        correlation_keys=details.pop("correlationKeys", []),
        wait_keys=details.pop("keys", []),
        started=details.pop("started", []),
        delivered=details.pop("delivered", []),
        ignored=details.pop("ignored", []),
        buffered_until=details.pop("bufferedUntil", None),
        dead_letter=details.pop("deadLetter", None),
        duplicates=row["duplicates"],
        last_duplicate_at=row["last_duplicate_at"],
        details=details or None,
    )


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    """Prometheus text exposition: this process's counters and the database's gauges."""
    engine = request.app[ENGINE]
    body = await engine.metrics.scrape(engine.db)
    return web.Response(body=body, content_type="text/plain", charset="utf-8")


@routes.post("/processes")
async def start_process(request: web.Request) -> web.Response:
    """Start a process; ``?wait=SECONDS`` answers with its result when it ends in time."""
    engine = request.app[ENGINE]
    query = query_of(request, StartQuery)
    if isinstance(query, web.Response):
        return query
    wait = query.wait
    body = await body_of(request, StartBody)
    start = StartRequested(
        body.definition, body.input, body.name, body.version, body.correlation_key
    )
    result = await apply_now(engine, start)
    if result.status == "not_found":
        # Perhaps deployed through another replica since this one last looked.
        await engine.registry.refresh(engine.db)
        result = await apply_now(engine, start)
    if result.status == "invalid":
        return problem(400, "Invalid start", result.reason)
    if result.status == "not_found":
        return problem(404, "Definition not found", result.reason)
    if not result.process_ids:
        return problem(409, "Not started", result.reason)
    process_id = result.process_ids[0]
    process = await _until_ended(engine, process_id, wait)
    assert process is not None
    if wait:
        status = 200 if process.status.ended else 202
    else:
        status = 200 if result.status == "duplicate" else 201
    location = f"{engine.base_url}/processes/{process_id}"
    found = await _one_process(engine, process_id)
    assert found is not None
    return web.json_response(found, status=status, headers={"Location": location})


async def _until_ended(engine: Engine, process_id: str, wait: float) -> Process | None:
    deadline = asyncio.get_running_loop().time() + wait
    while True:
        async with reading(engine.db) as conn:
            process = await store.get(conn, process_id)
        if process is None or process.status.ended:
            return process
        if asyncio.get_running_loop().time() >= deadline:
            return process
        await asyncio.sleep(0.02)


@routes.post("/processes/{id}/stop")
async def stop_process(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    body = await body_of(request, StopBody)
    result = await apply_now(
        engine, StopRequested(request.match_info["id"], body.error, body.cause)
    )
    return await _after_action(engine, request.match_info["id"], result, "Not stopped")


@routes.post("/processes/{id}/redrive")
async def redrive_process(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    result = await apply_now(engine, RedriveRequested(request.match_info["id"]))
    return await _after_action(engine, request.match_info["id"], result, "Not redriven")


async def _after_action(
    engine: Engine, process_id: str, result: Outcome, title: str
) -> web.Response:
    if result.status == "not_found":
        return problem(404, "Process not found", f"no process {process_id!r}")
    if not result.ok:
        return problem(409, title, result.reason)
    found = await _one_process(engine, process_id)
    assert found is not None
    return web.json_response(found)


def _definition_view(definition: Definition, base_url: str) -> dict[str, Any]:
    url = f"{base_url}/definitions/{definition.name}"
    return DefinitionView(
        name=definition.name,
        version=definition.version,
        process_type=definition.process_type,
        comment=definition.comment,
        start_at=definition.start_at,
        states=sorted(definition.states),
        triggers=[
            trigger.model_dump(mode="json", by_alias=True) for trigger in definition.triggers
        ],
        links=DefinitionLinks(self=url, aliases=f"{url}/aliases"),
    ).dump()


@routes.post("/test-state")
async def test_state(request: web.Request) -> web.Response:
    """Run one state on its own (AWS's TestState); nothing is stored, nothing is sent."""
    body = await body_of(request, StateTestBody)
    try:
        definition = _json_text(body.definition, "definition")
        variables = _json_text(body.variables, "variables")
        mock = None
        if body.mock is not None and body.mock.error_output is not None:
            mock = Mock(error=body.mock.error_output.error, cause=body.mock.error_output.cause)
        elif body.mock is not None:
            mock = Mock(result=_json_text(body.mock.result, "mock.result"))
        context = _json_text(body.context, "context")
        for field, value in (("variables", variables), ("context", context)):
            if value is not None and not isinstance(value, dict):
                raise StateTestError([f"{field}: must be a JSON object"])
        configuration = body.state_configuration
        # The state runs in a thread: a long JSONata evaluation must not hold other requests.
        answer = await asyncio.to_thread(
            run_test_state,
            definition,
            state_name=body.state_name,
            input=_json_text(body.input, "input"),
            variables=variables,
            mock=mock,
            inspection_level=body.inspection_level,
            context=context,
            retrier_retry_count=configuration.retrier_retry_count if configuration else 0,
        )
    except StateTestError as exc:
        return problem(400, "Invalid test", "; ".join(exc.problems), problems=exc.problems)
    view = StateTestAnswer.model_validate(answer.to_dict())
    return web.json_response(view.model_dump(mode="json", by_alias=True, exclude_none=True))


def _json_text(value: Any, field: str) -> Any:
    """A field AWS takes as JSON text: a string is parsed, any other value taken as it is."""
    if not isinstance(value, str):
        return value
    try:
        return json_text.loads(value)
    except ValueError as exc:
        raise StateTestError([f"{field}: not valid JSON text ({exc})"]) from None


@routes.get("/definitions")
async def list_definitions(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    await engine.registry.refresh(engine.db)
    items = [engine.registry.latest(name) for name in engine.registry.names()]
    listed = DefinitionList.model_validate(
        {"items": [_definition_view(d, engine.base_url) for d in items if d is not None]}
    )
    return web.json_response(listed.dump())


@routes.get("/definitions/{name}")
async def get_definition(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    query = query_of(request, VersionQuery)
    if isinstance(query, web.Response):
        return query
    await engine.registry.refresh(engine.db)
    name = request.match_info["name"]
    definition = (
        engine.registry.latest(name)
        if query.version is None
        else engine.registry.get(name, query.version)
    )
    if definition is None:
        return problem(404, "Definition not found", f"no definition {name!r}")
    async with reading(engine.db) as conn:
        stored = await definitions_store.get_version(conn, name, definition.version)
    view = DefinitionDocument.model_validate(
        {**_definition_view(definition, engine.base_url), "document": stored}
    )
    return web.json_response(view.dump())


@routes.put("/definitions/{name}")
async def deploy_definition(request: web.Request) -> web.Response:
    """Deploy the body (an ASL document) as the next version of ``name``, once it validates."""
    engine = request.app[ENGINE]
    name = request.match_info["name"]
    document = await json_body(
        request, what="the definition", max_depth=limits.MAX_DEFINITION_DEPTH
    )
    if not DEFINITION_NAME.match(name):
        return problem(
            400,
            "Invalid definition name",
            "letters, digits, '_', '.' and '-', starting with a letter or digit, 200 at most",
        )
    if not isinstance(document, dict):
        return problem(400, "Invalid definition", "the body must be a JSON object")
    try:
        parse_definition(document, name)
    except DefinitionError as exc:
        return problem(422, "Invalid definition", "; ".join(exc.problems), problems=exc.problems)
    [deployed] = await deploy(engine.db, [(name, document)])
    await engine.registry.refresh(engine.db)
    definition = engine.registry.get(name, deployed.version)
    assert definition is not None
    view = DefinitionDeployed.model_validate(
        {**_definition_view(definition, engine.base_url), "new": deployed.new}
    )
    return web.json_response(view.dump(), status=201 if deployed.new else 200)


def _alias_view(alias: Alias) -> dict[str, Any]:
    return AliasView(
        definition=alias.definition,
        name=alias.name,
        description=alias.description,
        routes=[{"version": r.version, "weight": r.weight} for r in alias.routes],
        updated_at=alias.updated_at,
    ).dump()


async def _known_definition(engine: Engine, name: str) -> bool:
    async with reading(engine.db) as conn:
        return bool(await definitions_store.versions_of(conn, name))


@routes.get("/definitions/{name}/aliases")
async def list_aliases(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    name = request.match_info["name"]
    if not await _known_definition(engine, name):
        return problem(404, "Definition not found", f"no definition {name!r}")
    async with reading(engine.db) as conn:
        found = await aliases_store.of_definition(conn, name)
    return web.json_response({"items": [_alias_view(alias) for alias in found]})


@routes.get("/definitions/{name}/aliases/{alias}")
async def get_alias(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    name, alias_name = request.match_info["name"], request.match_info["alias"]
    async with reading(engine.db) as conn:
        alias = await aliases_store.get(conn, name, alias_name)
    if alias is None:
        return problem(404, "Alias not found", f"no alias {alias_name!r} of {name!r}")
    return web.json_response(_alias_view(alias))


@routes.put("/definitions/{name}/aliases/{alias}")
async def put_alias(request: web.Request) -> web.Response:
    """Route starts of ``NAME:ALIAS`` to one version, or to two by weight."""
    engine = request.app[ENGINE]
    name, alias_name = request.match_info["name"], request.match_info["alias"]
    if not ALIAS_NAME.match(alias_name):
        return problem(
            400,
            "Invalid alias name",
            "a letter, then letters, digits, '_', '.' or '-', 80 at most",
        )
    body = await body_of(request, AliasBody)
    if not await _known_definition(engine, name):
        return problem(404, "Definition not found", f"no definition {name!r}")
    routes_ = [Route(route.version, route.weight) for route in body.routes]
    alias = await set_alias(engine.db, name, alias_name, body.description, routes_)
    if isinstance(alias, list):
        return problem(422, "Invalid routes", "; ".join(alias), problems=alias)
    await engine.registry.refresh(engine.db)
    return web.json_response(_alias_view(alias))


@routes.delete("/definitions/{name}/aliases/{alias}")
async def delete_alias(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    name, alias_name = request.match_info["name"], request.match_info["alias"]
    async with engine.db.begin() as conn:
        removed = await aliases_store.remove(conn, name, alias_name)
    if not removed:
        return problem(404, "Alias not found", f"no alias {alias_name!r} of {name!r}")
    return web.Response(status=204)
