"""Bulk operations over HTTP: ask for one (admins), follow its progress, cancel it; and the pages
(the list page's "stop/redrive every matching process" form, the operation's own page)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

from aiohttp import web
from pydantic import ValidationError

from approvals import access
from approvals.access import wants_html
from approvals.guard import body_of, first_error, form_of
from approvals.keys import ENGINE
from approvals.problems import problem
from approvals.render import refused_form, render
from approvals.schemas import (
    BulkBody,
    BulkFilter,
    BulkLinks,
    BulkList,
    BulkView,
    page_times_in_utc,
)
from bridge import bulk
from bridge.asl.search_filter import parse_all
from bridge.engine import Engine
from bridge.store import bulk as store
from bridge.store.bulk import BulkOperation, ProcessFilter
from bridge.store.database import database_now, reading

routes = web.RouteTableDef()


def _filter_of(given: BulkFilter) -> ProcessFilter:
    return ProcessFilter(
        definition=given.definition,
        version=given.version,
        statuses=(given.status,) if given.status else (),
        correlation_key=given.correlation_key,
        started_after=given.started_after,
        started_before=given.started_before,
        attributes=parse_all(given.where),
    )


def view_of(engine: Engine, operation: BulkOperation) -> BulkView:
    wanted = operation.filter
    shown = {
        "definition": wanted.definition,
        "version": wanted.version,
        "correlationKey": wanted.correlation_key,
        "startedAfter": wanted.started_after.isoformat() if wanted.started_after else None,
        "startedBefore": wanted.started_before.isoformat() if wanted.started_before else None,
    }
    listed: list[tuple[str, Any]] = [
        (key, value) for key, value in shown.items() if value is not None
    ]
    if len(wanted.statuses) == 1:
        listed.append(("status", wanted.statuses[0]))
    where = [found.text() for found in wanted.attributes]
    listed += [("where", expression) for expression in where]
    return BulkView(
        id=operation.id,
        action=operation.action,  # type: ignore[arg-type]
        filter={**shown, "statuses": list(wanted.statuses), "where": list(where)},
        reason=operation.reason,
        rate_per_second=operation.rate_per_second,
        status=operation.status,  # type: ignore[arg-type]
        total=operation.total,
        applied=operation.applied,
        skipped=operation.skipped,
        created_at=operation.created_at,
        updated_at=operation.updated_at,
        finished_at=operation.finished_at,
        links=BulkLinks(
            self=f"{engine.base_url}/bulk-operations/{operation.id}",
            processes=f"{engine.base_url}/processes?{urlencode(listed)}",
        ),
    )


async def _ask(engine: Engine, body: BulkBody) -> BulkOperation:
    """Raises ``bulk.BulkRefused``."""
    if not body.filter.narrows():
        raise bulk.BulkRefused(
            "name at least one of definition, version, correlationKey, startedAfter, "
            "startedBefore, where: a status alone would take every process"
        )
    return await bulk.ask(
        engine, body.action, _filter_of(body.filter), body.reason, body.rate_per_second
    )


@routes.post("/bulk-operations")
async def ask_for_one(request: web.Request) -> web.Response:
    """Stop or redrive every process the filter names, at the rate given; 202 with the
    operation, which a worker carries out."""
    engine = request.app[ENGINE]
    body = await body_of(request, BulkBody)
    try:
        operation = await _ask(engine, body)
    except bulk.BulkRefused as exc:
        return problem(400, "Invalid bulk operation", str(exc))
    view = view_of(engine, operation)
    return web.json_response(view.dump(), status=202, headers={"Location": view.links.self})


@routes.get("/bulk-operations")
async def list_them(request: web.Request) -> web.StreamResponse:
    engine = request.app[ENGINE]
    async with reading(engine.db) as conn:
        found = await store.newest(conn)
    views = [view_of(engine, operation) for operation in found]
    if wants_html(request):
        return render(request, "bulk_operations.html", operations=views)
    return web.json_response(BulkList(items=views).dump())


@routes.get("/bulk-operations/{id}")
async def show_one(request: web.Request) -> web.StreamResponse:
    engine = request.app[ENGINE]
    operation_id = request.match_info["id"]
    async with reading(engine.db) as conn:
        operation = await store.get(conn, operation_id)
    if operation is None:
        if wants_html(request):
            return render(
                request,
                "message.html",
                404,
                title="Bulk operation not found",
                detail=f"No bulk operation {operation_id}.",
                links=[("/bulk-operations", "All bulk operations")],
            )
        return problem(404, "Bulk operation not found", f"no bulk operation {operation_id!r}")
    view = view_of(engine, operation)
    if wants_html(request):
        cancel = (
            access.form_nonce(request, operation.id, "cancel")
            if operation.status == "RUNNING" and request.get(access.ROLE) == "admin"
            else None
        )
        return render(request, "bulk_operation.html", operation=view, cancel=cancel)
    return web.json_response(view.dump())


async def _cancel(engine: Engine, operation_id: str) -> tuple[int, BulkOperation | None]:
    async with engine.db.begin() as conn:
        cancelled = await store.cancel(conn, operation_id, await database_now(conn))
        operation = await store.get(conn, operation_id)
    if operation is None:
        return 404, None
    return (200 if cancelled else 409), operation


@routes.post("/bulk-operations/{id}/cancel")
async def cancel_one(request: web.Request) -> web.Response:
    """Stop a running operation between two chunks; what it did stays done."""
    engine = request.app[ENGINE]
    status, operation = await _cancel(engine, request.match_info["id"])
    if operation is None:
        return problem(404, "Bulk operation not found", "no such bulk operation")
    if status == 409:
        return problem(409, "Not running", f"the operation is {operation.status} already")
    return web.json_response(view_of(engine, operation).dump())


# ----------------------------------------------------------------------------------- pages


def form_for(
    request: web.Request, filters: dict[str, str], where: list[str] | None = None
) -> dict[str, Any] | None:
    """The list page's bulk form for admins: the actions the page's filter (and its search
    attribute filters, ``where``) allows, each with its nonce; None for others, or without a
    filter that narrows the set."""
    if request.get(access.ROLE) != "admin":
        return None
    narrowing = ("definition", "version", "correlationKey", "startedAfter", "startedBefore")
    if not any(filters.get(key) for key in narrowing) and not where:
        return None
    status = filters.get("status") or ""
    shown = [
        action for action, statuses in bulk.APPLIES_TO.items() if not status or status in statuses
    ]
    return {action: access.form_nonce(request, "bulk", action) for action in shown} or None


TIMES = ("startedAfter", "startedBefore")


@routes.post("/ui/bulk-operations")
async def ask_from_the_page(request: web.Request) -> web.StreamResponse:
    engine = request.app[ENGINE]
    form = await form_of(request)
    action = str(form.get("action", ""))
    refused = refused_form(request, form, "bulk", action)
    if refused is not None:
        return refused
    fields = page_times_in_utc(
        {
            key: str(form[key]).strip()
            for key in ("definition", "version", "status", "correlationKey", *TIMES)
            if str(form.get(key, "")).strip()
        }
    )
    where = [str(value).strip() for value in form.getall("where", []) if str(value).strip()]
    reason = str(form.get("reason") or "").replace("\x00", "").strip()[:2000]
    try:
        body = BulkBody.model_validate(
            {
                "action": action,
                "filter": {**fields, "where": where},
                "reason": reason or f"{action} on the status page",
                "ratePerSecond": str(form.get("ratePerSecond") or 50),
            }
        )
        operation = await _ask(engine, body)
    except ValidationError as exc:
        return render(request, "message.html", 400, title="Not started", detail=first_error(exc))
    except bulk.BulkRefused as exc:
        return render(request, "message.html", 400, title="Not started", detail=str(exc))
    raise web.HTTPSeeOther(f"/bulk-operations/{quote(operation.id, safe='')}")


@routes.post("/ui/bulk-operations/{id}/cancel")
async def cancel_from_the_page(request: web.Request) -> web.StreamResponse:
    engine = request.app[ENGINE]
    operation_id = request.match_info["id"]
    form = await form_of(request)
    refused = refused_form(request, form, operation_id, "cancel")
    if refused is not None:
        return refused
    await _cancel(engine, operation_id)
    raise web.HTTPSeeOther(f"/bulk-operations/{quote(operation_id, safe='')}")
