"""Schedules over HTTP: list and show them with their next runs; make, change, pause, resume
and delete them (admins); and their pages."""

from __future__ import annotations

import re

from aiohttp import web

from approvals import access
from approvals.access import wants_html
from approvals.api import query_of
from approvals.guard import body_of, form_of
from approvals.keys import ENGINE
from approvals.problems import problem
from approvals.render import refused_form, render
from approvals.schemas import (
    PauseBody,
    ScheduleBody,
    ScheduleList,
    ScheduleQuery,
    ScheduleRun,
    ScheduleView,
)
from bridge import schedules
from bridge.engine import Engine
from bridge.schedule_policy import CatchUp, Overlap
from bridge.schedule_setup import Request, ScheduleRefused
from bridge.store.schedules import Schedule

routes = web.RouteTableDef()

#: The ids the API makes (a definition's are DEFINITION.NAME).
API_ID = re.compile(schedules.SCHEDULE_ID)
MAX_ID = 200


def view_of(engine: Engine, schedule: Schedule) -> ScheduleView:
    spec = schedule.spec
    last = schedule.last_process_id
    return ScheduleView(
        id=schedule.id,
        definition=schedule.definition,
        declared_by=schedule.declared_by,
        description=schedule.description,
        cron=spec.cron,
        time_zone=spec.time_zone if spec.cron is not None else None,
        rate_seconds=spec.rate_seconds,
        at=spec.at,
        when=spec.describe(),
        input=schedule.input,
        overlap=schedule.overlap.value,
        catch_up=schedule.catch_up.value,
        paused=schedule.paused,
        paused_note=schedule.paused_note,
        next_run_at=None if schedule.paused else schedule.next_at,
        next_runs=schedules.next_runs(schedule),
        buffered_at=schedule.buffered_at,
        last_run=None
        if schedule.last_tick_at is None
        else ScheduleRun(
            scheduled_at=schedule.last_tick_at,
            result=schedule.last_result,  # type: ignore[arg-type]
            note=schedule.last_note,
        ),
        last_process_id=last,
        last_process_url=None if last is None else f"{engine.base_url}/processes/{last}",
        started=schedule.started,
        skipped=schedule.skipped,
        missed=schedule.missed,
        created_at=schedule.created_at,
        updated_at=schedule.updated_at,
    )


def _not_found(request: web.Request, schedule_id: str) -> web.Response:
    if wants_html(request):
        return render(
            request,
            "message.html",
            404,
            title="Schedule not found",
            detail=f"No schedule {schedule_id}.",
            links=[("/schedules", "All schedules")],
        )
    return problem(404, "Schedule not found", f"no schedule {schedule_id[:MAX_ID]!r}")


@routes.get("/schedules")
async def list_them(request: web.Request) -> web.StreamResponse:
    engine = request.app[ENGINE]
    query = query_of(request, ScheduleQuery)
    if isinstance(query, web.Response):
        return query
    found = await schedules.listing(engine, query.definition)
    views = [view_of(engine, schedule) for schedule in found]
    if wants_html(request):
        return render(request, "schedules.html", schedules=views)
    return web.json_response(ScheduleList(items=views).dump())


@routes.get("/schedules/{id}")
async def show_one(request: web.Request) -> web.StreamResponse:
    engine = request.app[ENGINE]
    schedule_id = request.match_info["id"]
    schedule = await schedules.get(engine, schedule_id)
    if schedule is None:
        return _not_found(request, schedule_id)
    view = view_of(engine, schedule)
    if wants_html(request):
        admin = request.get(access.ROLE) == "admin"
        action = "resume" if schedule.paused else "pause"
        nonce = access.form_nonce(request, schedule.id, action) if admin else None
        return render(request, "schedule.html", schedule=view, action=action, nonce=nonce)
    return web.json_response(view.dump())


@routes.put("/schedules/{id}")
async def put_one(request: web.Request) -> web.Response:
    """Make (201) or change (200) the schedule; a changed time takes effect from now."""
    engine = request.app[ENGINE]
    schedule_id = request.match_info["id"]
    if len(schedule_id) > MAX_ID or not API_ID.fullmatch(schedule_id):
        return problem(
            400,
            "Invalid schedule id",
            f"a schedule's id is 1 to {MAX_ID} letters, digits, '_' and '-', starting with a "
            "letter or digit (ids with a dot are a definition's schedules)",
        )
    body = await body_of(request, ScheduleBody)
    asked = Request(
        definition=body.definition,
        cron=body.cron,
        time_zone=body.time_zone,
        rate_seconds=body.rate_seconds,
        at=body.at,
        input=body.input,
        overlap=Overlap(body.overlap),
        catch_up=CatchUp(body.catch_up),
        paused=body.paused,
        description=body.description,
    )
    try:
        schedule, made = await schedules.put(engine, schedule_id, asked)
    except ScheduleRefused as exc:
        declared = any("declared by definition" in text for text in exc.problems)
        if declared:
            return problem(409, "Declared by a definition", str(exc))
        return problem(400, "Invalid schedule", str(exc), problems=exc.problems)
    view = view_of(engine, schedule)
    location = f"{engine.base_url}/schedules/{schedule.id}"
    return web.json_response(
        view.dump(), status=201 if made else 200, headers={"Location": location}
    )


async def _pause(request: web.Request, *, paused: bool, note: str | None) -> web.Response:
    engine = request.app[ENGINE]
    schedule_id = request.match_info["id"]
    try:
        schedule = await schedules.set_paused(engine, schedule_id, paused=paused, note=note)
    except schedules.ScheduleNotFound:
        return _not_found(request, schedule_id)
    return web.json_response(view_of(engine, schedule).dump())


@routes.post("/schedules/{id}/pause")
async def pause_one(request: web.Request) -> web.Response:
    """Pause: no tick starts anything until it is resumed."""
    body = await body_of(request, PauseBody)
    return await _pause(request, paused=True, note=body.note)


@routes.post("/schedules/{id}/resume")
async def resume_one(request: web.Request) -> web.Response:
    """Resume from the next tick after now (ticks that fell while paused are not owed)."""
    return await _pause(request, paused=False, note=None)


@routes.delete("/schedules/{id}")
async def delete_one(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    schedule_id = request.match_info["id"]
    try:
        await schedules.delete(engine, schedule_id)
    except schedules.ScheduleNotFound:
        return _not_found(request, schedule_id)
    except ScheduleRefused as exc:
        return problem(409, "Declared by a definition", str(exc))
    return web.Response(status=204)


@routes.post("/ui/schedules/{id}/{action:pause|resume}")
async def pause_from_the_page(request: web.Request) -> web.StreamResponse:
    """The schedule page's pause or resume button (admins; the nonce binds it to this page)."""
    engine = request.app[ENGINE]
    schedule_id, action = request.match_info["id"], request.match_info["action"]
    form = await form_of(request)
    refused = refused_form(request, form, schedule_id, action)
    if refused is not None:
        return refused
    note = str(form.get("note", "")).strip()[:500] or None
    try:
        await schedules.set_paused(engine, schedule_id, paused=action == "pause", note=note)
    except schedules.ScheduleNotFound:
        return _not_found(request, schedule_id)
    raise web.HTTPSeeOther(f"/schedules/{schedule_id}")
