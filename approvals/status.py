"""The status pages: the process list for people, and the admins' stop and redrive forms.

``GET /processes`` answers JSON to API clients (approvals/api.py); a browser asking for HTML gets
the list page from ``approvals.html_pages`` instead, with the same filters as the API (definition,
version, status, correlation key, start time, search attributes: one ``where`` field per filter,
repeated in the URL as the API takes them) and an "older" link that follows the cursor.

The process page (approvals/inbox.py) shows admins a Stop or Redrive form. Each posts to
``/ui/processes/{id}/stop|redrive`` with a nonce bound to the session, the process and the action;
the guard (approvals/guard.py) refuses posts from other sites. The action then takes the same
engine path as the API's (``StopRequested``, ``RedriveRequested``) and the browser is sent back
to the process page.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote, urlencode

from aiohttp import web
from pydantic import ValidationError

from approvals import access, bulk
from approvals.api import apply_now, find_processes, page_cursor
from approvals.guard import form_of
from approvals.keys import ENGINE
from approvals.render import render
from approvals.schemas import ProcessQuery, page_times_in_utc
from bridge.asl.process import ProcessStatus
from bridge.engine import RedriveRequested, StopRequested

routes = web.RouteTableDef()
PAGE_SIZE = 50
FILTERS = ("definition", "version", "status", "correlationKey", "startedAfter", "startedBefore")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def process_list(request: web.Request) -> web.Response:
    """Processes, newest first, filtered as the API filters them; ``PAGE_SIZE`` a page unless
    ``limit`` says otherwise."""
    engine = request.app[ENGINE]
    # An empty form field means "any", not an invalid value.
    given = {key: value.strip() for key, value in request.query.items() if value.strip()}
    filters = {key: given.get(key, "") for key in FILTERS}
    where = [value.strip() for value in request.query.getall("where", []) if value.strip()]
    context: dict[str, Any] = {
        "filters": filters,
        "where": where,
        "statuses": [status.value for status in ProcessStatus],
        "definitions": engine.registry.names(),
        "processes": [],
        "older": None,
        "newest": None,
        "error": None,
    }
    try:
        query = ProcessQuery.model_validate(
            {"limit": PAGE_SIZE, **page_times_in_utc(given), "where": where}
        )
    except ValidationError as exc:
        context["error"] = _first_problem(exc)
        return render(request, "processes.html", 400, **context)
    found = await find_processes(engine, query)
    if found is None:
        context["error"] = "cursor: use the link to older processes"
        return render(request, "processes.html", 400, **context)
    kept = [(key, value) for key, value in filters.items() if value]
    kept += [("where", expression) for expression in where]
    if "limit" in given:
        kept.append(("limit", given["limit"]))
    if len(found) == query.limit:
        context["older"] = "/processes?" + urlencode([*kept, ("cursor", page_cursor(found[-1]))])
    if query.cursor is not None:
        context["newest"] = "/processes?" + urlencode(kept)
    context["processes"] = found
    context["bulk"] = bulk.form_for(request, filters, where)
    return render(request, "processes.html", **context)


def _first_problem(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"])
        return f"{where}: {first['msg']}" if where else str(first["msg"])
    return str(exc)


def actions(request: web.Request, status: ProcessStatus, process_id: str) -> dict[str, str]:
    """Action name -> form nonce, for the actions this viewer may take on this process now."""
    if request.get(access.ROLE) != "admin":
        return {}
    if status is ProcessStatus.RUNNING:
        return {"stop": access.form_nonce(request, process_id, "stop")}
    if status in (ProcessStatus.FAILED, ProcessStatus.TIMED_OUT, ProcessStatus.ABORTED):
        return {"redrive": access.form_nonce(request, process_id, "redrive")}
    return {}


def _refused(request: web.Request, status: int, title: str, detail: str) -> web.Response:
    return render(request, "message.html", status, title=title, detail=detail)


@routes.get("/")
async def home(request: web.Request) -> web.StreamResponse:
    """The address the banner shows: the process list, where a newcomer starts."""
    raise web.HTTPFound("/processes")


@routes.post(r"/ui/processes/{id}/{action:stop|redrive}")
async def act(request: web.Request) -> web.StreamResponse:
    """Stop or redrive from the process page; answered with the process page again."""
    engine = request.app[ENGINE]
    process_id, action = request.match_info["id"], request.match_info["action"]
    form = await form_of(request)
    if not access.form_nonce_ok(request, str(form.get("csrf", "")), process_id, action):
        return _refused(request, 403, "Not accepted", "Open the process page again and retry.")
    if request.get(access.ROLE) != "admin":
        return _refused(request, 403, "Not allowed", "Your token may only read.")
    if action == "stop":
        # PostgreSQL cannot keep NUL characters; nothing else in the cause matters.
        cause = str(form.get("cause") or "").replace("\x00", "").strip()[:4000]
        cause = cause or "Stopped on the status page"
        result = await apply_now(engine, StopRequested(process_id, "Process.Stopped", cause))
    else:
        result = await apply_now(engine, RedriveRequested(process_id))
    if result.status == "not_found":
        return _refused(request, 404, "Process not found", f"No process {process_id}.")
    if not result.ok:
        title = "Not stopped" if action == "stop" else "Not redriven"
        return _refused(request, 409, title, result.reason)
    raise web.HTTPSeeOther(f"/processes/{quote(process_id, safe='')}")


def setup(app: web.Application) -> None:
    app.add_routes(routes)
