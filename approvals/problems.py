"""Errors over HTTP as RFC 9457 problem+json; the only place HTTP errors exist."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiohttp import web

from bridge.runner import Unavailable

STATUS_OF = {"not_found": 404, "conflict": 409, "invalid": 400}


def problem(status: int, title: str, detail: str = "", **extra: Any) -> web.Response:
    body = {"type": "about:blank", "title": title, "status": status}
    if detail:
        body["detail"] = detail
    body.update(extra)
    return web.Response(
        status=status,
        text=json.dumps(body),
        content_type="application/problem+json",
        headers={"Cache-Control": "no-store"},
    )


log = structlog.get_logger("bridge.web")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def problems_for_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """aiohttp's own errors (unknown path, wrong method, body too large) and anything unforeseen
    answer as problem details too, so clients parse one error shape."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        text = exc.text or ""
        response = problem(exc.status, exc.reason, text if text != exc.reason else "")
        if isinstance(exc, web.HTTPMethodNotAllowed):
            response.headers["Allow"] = ", ".join(sorted(exc.allowed_methods))
        return response
    except Unavailable as exc:
        log.warning("the database is unavailable", method=request.method, error=str(exc))
        response = problem(503, "Service unavailable", "the database is unavailable; try again")
        response.headers["Retry-After"] = "5"
        return response
    except Exception:
        # The route's pattern, not the path: paths carry task and link tokens.
        route = request.match_info.route.resource
        log.exception(
            "request failed",
            method=request.method,
            route=route.canonical if route is not None else "?",
        )
        return problem(500, "Internal error", "the request failed; the logs say why")
