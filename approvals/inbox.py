"""The approvals inbox and the read-only pages: pending approvals, one approval, one process.

The same paths answer JSON to API clients and HTML to browsers (by the Accept header). These
pages never decide: deciding takes the link an approver received.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp_jinja2
from aiohttp import web

from approvals import access, diagrams, status
from approvals.access import wants_html as wants_html
from approvals.api import process_json, query_of
from approvals.keys import ENGINE, IDENTITY
from approvals.pages import PAGE_HEADERS
from approvals.problems import problem
from approvals.schemas import ApprovalQuery
from bridge.asl.approvals import ApprovalStatus
from bridge.store import approval_views, waits
from bridge.store import processes as store
from bridge.store.database import reading

routes = web.RouteTableDef()
STATUSES = tuple(status.value for status in ApprovalStatus)


def _page(request: web.Request, template: str, **context: Any) -> web.Response:
    context.setdefault("viewer", access.viewer(request))
    response = aiohttp_jinja2.render_template(template, request, context)
    response.headers.update(PAGE_HEADERS)
    return response


def _status_in_capitals(query: dict[str, str]) -> dict[str, str]:
    """``?status=pending`` reads as well."""
    return {**query, "status": query["status"].upper()} if "status" in query else query


@routes.get("/approvals")
async def list_approvals(request: web.Request) -> web.Response:
    """Approvals (pending by default), filtered by assignee, group, definition and age."""
    engine = request.app[ENGINE]
    query = query_of(request, ApprovalQuery, _status_in_capitals)
    if isinstance(query, web.Response):
        return query
    status, min_age = query.status, query.min_age_minutes
    created_before = datetime.now(UTC) - timedelta(minutes=min_age) if min_age else None
    assignee, group = query.assignee, query.group
    seat = f"user:{assignee}" if assignee else f"group:{group}" if group else None
    async with reading(engine.db) as conn:
        found = await waits.list_approvals(
            conn,
            status=None if status == "ALL" else status,
            definition=query.definition,
            created_before=created_before,
            seat=seat,
        )
    if assignee and group:
        found = [a for a in found if f"group:{group}" in a.seats]
    me = request.app[IDENTITY].who(request)
    if query.mine:
        if me is None:
            return problem(
                400,
                "Who you are is unknown",
                "mine needs a trusted reverse proxy's identity header (BRIDGE_IDENTITY_HEADER "
                "from BRIDGE_TRUSTED_PROXIES)",
            )
        found = [a for a in found if _yours(a, me, request.app[IDENTITY].groups(request))]
    if query.sort == "deadline":
        # The soonest deadline first; those without one after them, oldest first.
        found.sort(key=lambda a: (a.expires_at is None, a.expires_at or a.created_at, a.created_at))
    if wants_html(request):
        return _page(
            request,
            "inbox.html",
            approvals=found,
            status=status,
            assignee=assignee or "",
            group=group or "",
            definition=query.definition or "",
            min_age=min_age or "",
            now=datetime.now(UTC),
            mine=query.mine,
            me=me,
            sort=query.sort,
        )
    return web.json_response({"items": [a.as_json(engine.base_url) for a in found]})


def _yours(approval: waits.Approval, me: str, groups: tuple[str, ...]) -> bool:
    """Whether ``me`` has an undecided seat of ``approval``: held, their user's, their group's
    (unless another member holds it)."""
    voted = {vote["seat"] for vote in approval.votes}
    for seat in approval.seats:
        if seat in voted:
            continue
        holder = approval.holder(seat)
        if holder is not None:
            if holder == me:
                return True
            continue
        kind, _, name = seat.partition(":")
        if (kind == "user" and name == me) or (kind == "group" and name in groups):
            return True
    return False


@routes.get("/approvals/{id}")
async def get_approval(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    async with reading(engine.db) as conn:
        approval = await waits.get_approval(conn, request.match_info["id"])
        views = await approval_views.of_approval(conn, approval.id) if approval else []
    if approval is None:
        return problem(404, "Approval not found", f"no approval {request.match_info['id']!r}")
    if wants_html(request):
        data = json.dumps(approval.data, indent=2, ensure_ascii=False, sort_keys=True)
        return _page(request, "approval_view.html", approval=approval, data=data, views=views)
    shown = approval.as_json(engine.base_url)
    shown["views"] = [view.as_json() for view in views]
    return web.json_response(shown)


async def process_page(request: web.Request, process_id: str) -> web.Response:
    """The process with its history and decisions, for people."""
    engine = request.app[ENGINE]
    async with reading(engine.db) as conn:
        process = await store.get(conn, process_id)
        if process is None:
            return problem(404, "Process not found", f"no process {process_id!r}")
        history = await store.read_history(conn, process_id, limit=2000)
        decisions = await waits.approvals_of_process(conn, process_id)
        children = await store.children_of(conn, process_id)
    pairs = [(entry["type"], entry["state"]) for entry in history]
    if len(history) == 2000:
        pairs = await diagrams.history_pairs(engine, process_id)
    for entry in history:
        details = entry["details"]
        # One short line per entry; the whole payload opens on demand.
        entry["details_json"] = (
            json.dumps(details, ensure_ascii=False, sort_keys=True) if details else ""
        )
        entry["details_pretty"] = (
            json.dumps(details, ensure_ascii=False, sort_keys=True, indent=2)[:20_000]
            if details
            else ""
        )
    return _page(
        request,
        "process.html",
        process=process_json(engine, process, children),
        history=history,
        approvals=decisions,
        actions=status.actions(request, process.status, process.id),
        viewer=access.viewer(request),
        **await diagrams.page_context(request, process, pairs),
    )
