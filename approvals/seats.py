"""Who holds an approval's seats, over the API (admins): claim a group's seat for a member, give
it back, delegate or reassign any seat. Approvers do the same on the decision page of their
link (approvals/pages.py)."""

from __future__ import annotations

from aiohttp import web

from approvals.api import apply_now
from approvals.guard import body_of
from approvals.identity import MAX_NAME
from approvals.keys import ENGINE, IDENTITY
from approvals.problems import STATUS_OF, problem
from approvals.schemas import SeatChangeBody
from bridge.asl.approvals import SeatChange
from bridge.asl.limits import clean_text
from bridge.engine import SeatChangeRequested
from bridge.store import waits
from bridge.store.database import reading

routes = web.RouteTableDef()


@routes.post(r"/approvals/{id}/seats/{seat}/{change:claim|unclaim|delegate|reassign}")
async def change_seat(request: web.Request) -> web.Response:
    """Claim (``to``: the member), give back, delegate or reassign (``to``: the new holder) a
    seat; audited in the process history with who asked (the proxy's user, else ``by``)."""
    engine = request.app[ENGINE]
    approval_id, seat = request.match_info["id"], request.match_info["seat"]
    # The route admits only the four words; any other path is the router's 404.
    action = SeatChange(request.match_info["change"])
    body = await body_of(request, SeatChangeBody)
    if action is not SeatChange.UNCLAIM and not body.to:
        return problem(400, "Invalid seat change", f"{action} needs `to`: who holds the seat")
    by = request.app[IDENTITY].who(request) or (clean_text(body.by, MAX_NAME) if body.by else None)
    result = await apply_now(
        engine,
        SeatChangeRequested(approval_id, seat, action, body.to, by or "admin", admin=True),
    )
    if not result.ok:
        return problem(STATUS_OF.get(result.status, 409), "Seat not changed", result.reason)
    async with reading(engine.db) as conn:
        approval = await waits.get_approval(conn, approval_id)
    assert approval is not None
    return web.json_response(approval.as_json(engine.base_url))
