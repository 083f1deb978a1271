"""JSON API: process status and history, task callbacks, health."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from approvals.problems import STATUS_OF, problem
from bridge.asl.errors import DefinitionError
from bridge.asl.model import Definition, parse_definition
from bridge.asl.process import Process, ProcessStatus
from bridge.definitions import deploy
from bridge.engine import (
    CallbackReceived,
    Engine,
    Outcome,
    RedriveRequested,
    StartRequested,
    StopRequested,
)
from bridge.store import definitions as definitions_store
from bridge.store import inbox
from bridge.store import processes as store
from bridge.store.database import reading

ENGINE = web.AppKey("engine", Engine)
BaseModelT = TypeVar("BaseModelT", bound=BaseModel)
routes = web.RouteTableDef()
MAX_BODY = 256 * 1024


class Failure(BaseModel):
    model_config = ConfigDict(extra="forbid")

    error: str = Field(default="", max_length=256)
    cause: str = Field(default="", max_length=32_768)


def process_json(process: Process, base_url: str = "") -> dict[str, Any]:
    return {
        "id": process.id,
        "definition": process.definition,
        "version": process.version,
        "correlationKey": process.correlation_key,
        "status": process.status.value,
        "currentState": process.current_state if process.status is ProcessStatus.RUNNING else None,
        "lastState": process.current_state,
        "input": process.input,
        "output": process.output,
        "error": process.error,
        "cause": process.cause,
        "startedAt": process.started_at.isoformat(),
        "endedAt": process.ended_at.isoformat() if process.ended_at else None,
        "links": {
            "self": f"{base_url}/processes/{process.id}",
            "history": f"{base_url}/processes/{process.id}/history",
        },
    }


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
    from approvals.inbox import process_page, wants_html

    if wants_html(request):
        return await process_page(request, request.match_info["id"])
    async with reading(engine.db) as conn:
        process = await store.get(conn, request.match_info["id"])
    if process is None:
        return problem(404, "Process not found", f"no process {request.match_info['id']!r}")
    return web.json_response(process_json(process, engine.base_url))


@routes.get("/processes")
async def list_processes(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    query = request.query
    status = query.get("status")
    if status is not None and status not in ProcessStatus.__members__:
        return problem(400, "Invalid status", f"status must be one of {', '.join(ProcessStatus)}")
    try:
        limit = int(query.get("limit", "100"))
        if not 1 <= limit <= 1000:
            raise ValueError
    except ValueError:
        return problem(400, "Invalid limit", "limit must be an integer from 1 to 1000")
    before = None
    if cursor := query.get("cursor"):
        try:
            moment, _, process_id = cursor.partition("|")
            before = (datetime.fromisoformat(moment), process_id)
        except ValueError:
            return problem(400, "Invalid cursor", "use the nextCursor of a previous page")
    async with reading(engine.db) as conn:
        found = await store.find(
            conn,
            correlation_key=query.get("correlationKey"),
            status=status,
            definition=query.get("definition"),
            limit=limit,
            before=before,
        )
    next_cursor = (
        f"{found[-1].started_at.isoformat()}|{found[-1].id}" if len(found) == limit else None
    )
    return web.json_response(
        {"items": [process_json(p, engine.base_url) for p in found], "nextCursor": next_cursor}
    )


@routes.get("/processes/{id}/history")
async def get_history(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    process_id = request.match_info["id"]
    try:
        after = int(request.query.get("after", "0"))
        limit = int(request.query.get("limit", "1000"))
        if after < 0 or not 1 <= limit <= 10_000:
            raise ValueError
    except ValueError:
        return problem(400, "Invalid paging", "after >= 0 and 1 <= limit <= 10000")
    async with reading(engine.db) as conn:
        if await store.get(conn, process_id) is None:
            return problem(404, "Process not found", f"no process {process_id!r}")
        entries = await store.read_history(conn, process_id, after_seq=after, limit=limit)
    items = [
        {
            "seq": entry["seq"],
            "at": entry["at"].isoformat(),
            "type": entry["type"],
            "state": entry["state"],
            **({"details": entry["details"]} if entry["details"] else {}),
        }
        for entry in entries
    ]
    return web.json_response({"processId": process_id, "items": items})


async def _json_body(request: web.Request) -> Any:
    raw = await request.read()
    if len(raw) > MAX_BODY:
        raise web.HTTPRequestEntityTooLarge(max_size=MAX_BODY, actual_size=len(raw))
    if not raw.strip():
        return None
    return json.loads(raw)


@routes.post("/tasks/{token}/{outcome}")
async def task_callback(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    outcome = request.match_info["outcome"]
    token = request.match_info["token"]
    if outcome not in ("success", "failure", "heartbeat"):
        return problem(404, "Not found", "use /tasks/{token}/success, /failure or /heartbeat")
    try:
        body = await _json_body(request)
    except (ValueError, UnicodeDecodeError) as exc:
        return problem(400, "Invalid JSON body", str(exc))
    if outcome == "failure":
        try:
            failure = Failure.model_validate(body or {})
        except ValidationError as exc:
            return problem(400, "Invalid failure body", exc.errors(include_url=False)[0]["msg"])
        item = CallbackReceived(token, "failure", error=failure.error, cause=failure.cause)
    elif outcome == "success":
        item = CallbackReceived(token, "success", output=body if body is not None else {})
    else:
        item = CallbackReceived(token, "heartbeat")
    result = await engine.apply_one(item)
    if not result.ok:
        titles = {
            "not_found": "Unknown task token",
            "conflict": "Task token no longer valid",
            "invalid": "Invalid callback",
        }
        return problem(
            STATUS_OF.get(result.status, 400), titles.get(result.status, "Refused"), result.reason
        )
    return web.json_response({"status": "accepted", "processId": result.process_ids[0]})


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
    return web.json_response({"events": [_explained(row) for row in rows]})


def _explained(row: dict[str, Any]) -> dict[str, Any]:
    details = dict(row.get("details") or {})
    return {
        "key": row["key"],
        "eventId": row["event_id"],
        "source": row["source"],
        "type": row["event_type"],
        "topic": row["topic"],
        "partition": row["partition"],
        "offset": row["offset"],
        "receivedAt": row["received_at"].isoformat(),
        "outcome": row["outcome"],
        "correlationKeys": details.pop("correlationKeys", []),
        "waitKeys": details.pop("keys", []),
        "started": details.pop("started", []),
        "delivered": details.pop("delivered", []),
        "ignored": details.pop("ignored", []),
        "bufferedUntil": details.pop("bufferedUntil", None),
        "deadLetter": details.pop("deadLetter", None),
        "duplicates": row["duplicates"],
        "lastDuplicateAt": row["last_duplicate_at"].isoformat()
        if row["last_duplicate_at"]
        else None,
        **({"details": details} if details else {}),
    }


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    """Prometheus text exposition: this process's counters and the database's gauges."""
    engine = request.app[ENGINE]
    body = await engine.metrics.scrape(engine.db)
    return web.Response(body=body, content_type="text/plain", charset="utf-8")


class StartBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    definition: str = Field(min_length=1, max_length=200)
    version: int | None = Field(default=None, ge=1)
    input: Any = Field(default_factory=dict)
    name: str | None = Field(default=None, min_length=1, max_length=200)
    correlation_key: str | None = Field(default=None, alias="correlationKey", max_length=500)


class StopBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    error: str = Field(default="Process.Stopped", max_length=256)
    cause: str = Field(default="", max_length=32_768)


#: The longest ``?wait=`` a start may ask for; past it the answer is 202 and a status URL.
MAX_WAIT_SECONDS = 60.0


async def _body_of(request: web.Request, model: type[BaseModelT]) -> BaseModelT | web.Response:
    try:
        body = await _json_body(request)
        return model.model_validate(body if body is not None else {})
    except (ValueError, UnicodeDecodeError) as exc:
        if isinstance(exc, ValidationError):
            first = exc.errors(include_url=False)[0]
            where = ".".join(str(part) for part in first["loc"])
            return problem(
                400, "Invalid body", f"{where}: {first['msg']}" if where else first["msg"]
            )
        return problem(400, "Invalid JSON body", str(exc))


@routes.post("/processes")
async def start_process(request: web.Request) -> web.Response:
    """Start a process; ``?wait=SECONDS`` answers with its result when it ends in time."""
    engine = request.app[ENGINE]
    try:
        wait = float(request.query.get("wait", "0"))
        if not 0 <= wait <= MAX_WAIT_SECONDS:
            raise ValueError
    except ValueError:
        return problem(
            400, "Invalid wait", f"wait is a number of seconds from 0 to {MAX_WAIT_SECONDS:g}"
        )
    body = await _body_of(request, StartBody)
    if isinstance(body, web.Response):
        return body
    result = await engine.apply_one(
        StartRequested(body.definition, body.input, body.name, body.version, body.correlation_key)
    )
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
    return web.json_response(
        process_json(process, engine.base_url), status=status, headers={"Location": location}
    )


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
    body = await _body_of(request, StopBody)
    if isinstance(body, web.Response):
        return body
    result = await engine.apply_one(StopRequested(request.match_info["id"], body.error, body.cause))
    return await _after_action(engine, request.match_info["id"], result, "Not stopped")


@routes.post("/processes/{id}/redrive")
async def redrive_process(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    result = await engine.apply_one(RedriveRequested(request.match_info["id"]))
    return await _after_action(engine, request.match_info["id"], result, "Not redriven")


async def _after_action(
    engine: Engine, process_id: str, result: Outcome, title: str
) -> web.Response:
    if result.status == "not_found":
        return problem(404, "Process not found", f"no process {process_id!r}")
    if not result.ok:
        return problem(409, title, result.reason)
    async with reading(engine.db) as conn:
        process = await store.get(conn, process_id)
    assert process is not None
    return web.json_response(process_json(process, engine.base_url))


def _definition_json(definition: Definition, base_url: str) -> dict[str, Any]:
    return {
        "name": definition.name,
        "version": definition.version,
        "comment": definition.comment,
        "startAt": definition.start_at,
        "states": sorted(definition.states),
        "triggers": [trigger.model_dump(by_alias=True) for trigger in definition.triggers],
        "links": {"self": f"{base_url}/definitions/{definition.name}"},
    }


@routes.get("/definitions")
async def list_definitions(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    await engine.registry.refresh(engine.db)
    items = [engine.registry.latest(name) for name in engine.registry.names()]
    return web.json_response(
        {"items": [_definition_json(d, engine.base_url) for d in items if d is not None]}
    )


@routes.get("/definitions/{name}")
async def get_definition(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    await engine.registry.refresh(engine.db)
    name = request.match_info["name"]
    version = request.query.get("version")
    definition = (
        engine.registry.latest(name)
        if version is None
        else engine.registry.get(name, int(version) if version.isdigit() else -1)
    )
    if definition is None:
        return problem(404, "Definition not found", f"no definition {name!r}")
    async with reading(engine.db) as conn:
        stored = await definitions_store.get_version(conn, name, definition.version)
    return web.json_response({**_definition_json(definition, engine.base_url), "document": stored})


@routes.put("/definitions/{name}")
async def deploy_definition(request: web.Request) -> web.Response:
    """Deploy the body (an ASL document) as the next version of ``name``, once it validates."""
    engine = request.app[ENGINE]
    name = request.match_info["name"]
    try:
        document = await _json_body(request)
    except (ValueError, UnicodeDecodeError) as exc:
        return problem(400, "Invalid JSON body", str(exc))
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
    return web.json_response(
        {**_definition_json(definition, engine.base_url), "new": deployed.new},
        status=201 if deployed.new else 200,
    )
