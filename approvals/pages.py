"""Approval links: GET shows what is to be decided, POST decides.

A GET never changes anything (mail scanners open links). A browser decides through the page's
form, which carries a nonce bound to the link; a machine POSTs JSON or an empty body to the link.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import aiohttp_jinja2
from aiohttp import web
from multidict import MultiDictProxy
from pydantic import ValidationError

from approvals.api import apply_now
from approvals.guard import FORM_TYPES, first_error, form_of, json_body
from approvals.identity import MAX_NAME
from approvals.keys import ENGINE, IDENTITY, SECRET
from approvals.problems import STATUS_OF, problem
from approvals.schemas import DecisionBody
from bridge.asl.approvals import ApprovalStatus, SeatChange
from bridge.asl.forms import Form, check_values, from_text
from bridge.asl.limits import clean_text
from bridge.asl.task_tokens import token_hash
from bridge.engine import DecisionReceived, SeatChangeRequested
from bridge.store import approval_views, waits
from bridge.store import processes as store
from bridge.store.database import database_now, reading

routes = web.RouteTableDef()
log = logging.getLogger(__name__)

PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}


def csrf_nonce(secret: bytes, token: str) -> str:
    return hmac.new(secret, b"csrf:" + token_hash(token).encode(), hashlib.sha256).hexdigest()


def seat_nonce(secret: bytes, token: str) -> str:
    """The nonce of the page's claim and delegate forms (not the decision's)."""
    digest = token_hash(token).encode()
    return hmac.new(secret, b"seat:" + digest, hashlib.sha256).hexdigest()


def _render(request: web.Request, template: str, status: int = 200, **context: Any) -> web.Response:
    response = aiohttp_jinja2.render_template(template, request, context, status=status)
    response.headers.update(PAGE_HEADERS)
    return response


def _refused(request: web.Request, status: int, title: str, detail: str) -> web.Response:
    return _render(request, "message.html", status=status, title=title, detail=detail)


#: One answer for unknown, forged and wrong-path tokens, so that guessing reveals nothing.
NOT_VALID = "This approval link is unknown or no longer valid."


async def _link(request: web.Request) -> tuple[str, bool, waits.LinkTarget | None]:
    approve = request.match_info["action"] == "approve"
    token = request.match_info["token"]
    async with reading(request.app[ENGINE].db) as conn:
        link = await waits.find_link(conn, token)
    if link is not None and link.approve != approve:
        link = None  # an approve token on the reject path is no link at all
    return token, approve, link


@routes.get(r"/{action:approve|reject}/{token}")
async def show(request: web.Request) -> web.Response:
    """The decision page. Viewing is audited (apart from the process: no lock, no version); it
    never decides (mail scanners open links)."""
    token, approve, link = await _link(request)
    if link is None:
        return _refused(request, 404, "Link not valid", NOT_VALID)
    engine = request.app[ENGINE]
    async with reading(engine.db) as conn:
        process = await store.get(conn, link.process_id)
        now = await database_now(conn)
    try:
        # The audit of views, beside the process: a GET takes no lock on it.
        await approval_views.record(
            engine.db,
            approval_id=link.approval_id,
            process_id=link.process_id,
            seat=link.seat,
            action="approve" if approve else "reject",
            viewer=_who(request),
            now=now,
        )
    except Exception:  # the page is still worth showing; the view is lost, and said so
        log.warning("could not record a view of approval %s", link.approval_id, exc_info=True)
    return _decision_page(request, token, approve, link, process)


def _decision_page(
    request: web.Request,
    token: str,
    approve: bool,
    link: waits.LinkTarget,
    process: Any,
    *,
    status: int = 200,
    errors: Mapping[str, str] | None = None,
    entered: Mapping[str, Any] | None = None,
) -> web.Response:
    approval = link.approval
    return _render(
        request,
        "approval.html",
        status=status,
        approval=approval,
        seat=link.seat,
        approve=approve,
        process=process,
        data=json.dumps(approval.data, indent=2, ensure_ascii=False, sort_keys=True),
        csrf=csrf_nonce(request.app[SECRET], token),
        pending=ApprovalStatus(approval.status).open
        and not any(vote["seat"] == link.seat for vote in approval.votes),
        form=Form.from_json(approval.form),
        holder=approval.holder(link.seat),
        viewer=_who(request),
        seat_nonce=seat_nonce(request.app[SECRET], token),
        path=f"/{'approve' if approve else 'reject'}/{token}",
        errors=errors or {},
        entered=entered or {},
    )


def _given(
    form: Form, posted: MultiDictProxy[Any] | None, values: Mapping[str, Any] | None
) -> tuple[dict[str, Any], dict[str, str]]:
    """The values a decision gives: a page's fields read as their types, or a JSON body's."""
    if posted is None:
        return dict(values or {}), {}
    given: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for field in form.fields:
        text = posted.get(f"values.{field.name}")
        try:
            given[field.name] = from_text(field, None if text is None else str(text))
        except ValueError as exc:
            errors[field.name] = str(exc)
    return given, errors


def _who(request: web.Request) -> str | None:
    """Who acts, when a trusted proxy in front of the bridge authenticated them."""
    return request.app[IDENTITY].who(request)


def decider(
    verified: str | None, seat: str, claimed: str | None, holder: str | None = None
) -> str | None:
    """Who decided, as the approval records it: the user a trusted proxy named; else who holds
    the seat (a claim, a delegation); else the user whose seat the link is; else the name the
    request gives, marked as unverified (a link of a group's seat, or anyone's, says nothing of
    who holds it)."""
    if verified:
        return verified
    if holder:
        return holder
    kind, _, name = seat.partition(":")
    if kind == "user" and name:
        return clean_text(name, MAX_NAME)
    if claimed and claimed.strip():
        return clean_text(f"{claimed.strip()} (unverified)", MAX_NAME)
    return None


@routes.post(r"/{action:approve|reject}/{token}")
async def decide(request: web.Request) -> web.Response:
    """A decision: a form from the decision page (with its nonce), or JSON (or nothing) from a
    machine. The guard (approvals/guard.py) has refused posts from other sites and bodies of
    other types already."""
    token, approve, link = await _link(request)
    is_form = request.content_type in FORM_TYPES
    if is_form:
        form = await form_of(request)
        nonce = str(form.get("csrf", ""))
        if not hmac.compare_digest(nonce, csrf_nonce(request.app[SECRET], token)):
            if link is not None:
                await apply_now(
                    request.app[ENGINE],
                    DecisionReceived(token, decided_by=_who(request), forged=True),
                )
            return _refused(
                request, 403, "Not accepted", "Open the link again and decide on its page."
            )
        choice = str(form.get("decision") or ("approve" if approve else "reject"))
        fields = {"decision": choice, "comment": str(form.get("comment") or "") or None}
        posted: MultiDictProxy[Any] | None = form
    else:
        fields = await json_body(request, {})
        posted = None
    try:
        decision = DecisionBody.model_validate(fields)
    except ValidationError as exc:
        return problem(400, "Invalid decision body", first_error(exc))
    if link is None:
        if is_form:
            return _refused(request, 404, "Link not valid", NOT_VALID)
        return problem(404, "Unknown approval link", "the link is unknown or no longer valid")
    task_form = Form.from_json(link.approval.form)
    choice = decision.decision or ("approve" if approve else "reject")
    custom = task_form.outcome(choice)
    if choice not in ("approve", "reject") and custom is None:
        detail = f"{choice!r} is not a decision of this approval"
        if is_form:
            return _refused(request, 400, "Not recorded", detail)
        return problem(400, "Invalid decision", detail)
    values: dict[str, Any] | None = None
    if task_form.fields and choice != "reject":
        # A rejection needs no form; anything else fills it in, checked as the page shows it.
        given, errors = _given(task_form, posted, decision.values)
        if not errors:
            values, errors = check_values(task_form, given)
        if errors:
            if posted is not None:
                async with reading(request.app[ENGINE].db) as conn:
                    process = await store.get(conn, link.process_id)
                entered = {
                    key.removeprefix("values."): posted.get(key)
                    for key in posted
                    if key.startswith("values.")
                }
                entered["comment"] = decision.comment
                return _decision_page(
                    request,
                    token,
                    approve,
                    link,
                    process,
                    status=400,
                    errors=errors,
                    entered=entered,
                )
            return problem(400, "Invalid form values", "see errors", errors=errors)
    holder = link.approval.holder(link.seat)
    verified = _who(request)
    if holder is not None and verified is not None and verified != holder:
        # Someone else claimed the seat (or it was handed to someone else).
        detail = f"{link.seat} is held by {holder}"
        if is_form:
            return _refused(request, 409, "Not recorded", detail)
        return problem(409, "Decision refused", detail)
    approved = choice == "approve"
    result = await apply_now(
        request.app[ENGINE],
        DecisionReceived(
            token,
            comment=decision.comment,
            decided_by=decider(verified, link.seat, decision.decided_by, holder),
            approve=approved,
            outcome=custom.name if custom is not None else None,
            values=values,
        ),
    )
    outcome = custom.label.lower() if custom is not None else "approved" if approved else "rejected"
    if is_form:
        if not result.ok:
            return _refused(
                request, STATUS_OF.get(result.status, 409), "Not recorded", result.reason
            )
        return _render(
            request,
            "message.html",
            title=f"Thank you: {outcome}",
            detail=f"Your decision on “{link.title}” is recorded: {outcome}.",
            links=[
                (f"/processes/{quote(link.process_id, safe='')}", "The process"),
                ("/approvals", "Your approvals"),
            ],
        )
    if not result.ok:
        return problem(STATUS_OF.get(result.status, 409), "Decision refused", result.reason)
    return web.json_response(
        {
            "status": outcome,
            "approvalId": link.approval_id,
            "processId": link.process_id,
            "seat": link.seat,
        }
    )


#: What the decision page offers the holder of a link (reassigning is an admin's, in the API).
_PAGE_SEAT_CHANGES = frozenset({SeatChange.CLAIM, SeatChange.UNCLAIM, SeatChange.DELEGATE})


@routes.post(r"/{action:approve|reject}/{token}/seat")
async def change_seat(request: web.Request) -> web.Response:
    """The decision page's claim, unclaim and delegate buttons: whoever holds the link acts for
    its seat; a trusted proxy's user is who they are, else the name typed is kept as
    unverified."""
    token, _, link = await _link(request)
    form = await form_of(request)
    if link is None:
        return _refused(request, 404, "Link not valid", NOT_VALID)
    given = str(form.get("seat_nonce", ""))
    if not hmac.compare_digest(given, seat_nonce(request.app[SECRET], token)):
        return _refused(request, 403, "Not accepted", "Open the link again and use its page.")
    action = SeatChange.parse(str(form.get("change", "")))
    if action is None or action not in _PAGE_SEAT_CHANGES:
        return _refused(request, 400, "Not recorded", "claim, unclaim or delegate")
    verified = _who(request)
    typed = clean_text(str(form.get("name", "")).strip(), MAX_NAME) or None
    held = link.approval.holder(link.seat)
    kind, _, owner = link.seat.partition(":")
    if action is SeatChange.CLAIM:
        holder = verified or (f"{typed} (unverified)"[:MAX_NAME] if typed else None)
        by = holder
    elif action is SeatChange.DELEGATE:
        holder = typed
        by = verified or held or (owner if kind == "user" else None)
    else:
        holder, by = None, verified or held
    result = await apply_now(
        request.app[ENGINE],
        SeatChangeRequested(link.approval_id, link.seat, action, holder, by),
    )
    if not result.ok:
        return _refused(request, STATUS_OF.get(result.status, 409), "Not recorded", result.reason)
    raise web.HTTPSeeOther(str(request.url.path).removesuffix("/seat"))
