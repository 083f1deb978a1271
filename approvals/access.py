"""Who may call what: management endpoints take API bearer tokens (read-only or admin).

Approval links and task callbacks carry their own secrets in the path and need no API token;
health and static files are public. With no API token configured, everything is open, which suits
``bridge dev`` on a laptop; production sets ``BRIDGE_API_ADMIN_TOKENS`` (and read tokens).
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Sequence

from aiohttp import web
from aiohttp.typedefs import Middleware

from approvals.problems import problem

PUBLIC_PREFIXES = ("/healthz", "/static/", "/approve/", "/reject/", "/tasks/")
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _matches(token: str, known: Sequence[str]) -> bool:
    # Compare with every known token, always, so timing tells nothing.
    found = False
    for candidate in known:
        found |= hmac.compare_digest(token.encode(), candidate.encode())
    return found


def access_control(admin: Sequence[str], read: Sequence[str]) -> Middleware:
    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not admin and not read:
            return await handler(request)
        if request.path.startswith(PUBLIC_PREFIXES):
            return await handler(request)
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            response = problem(401, "API token needed", "send Authorization: Bearer <token>")
            response.headers["WWW-Authenticate"] = 'Bearer realm="bridge"'
            return response
        is_admin = _matches(token, admin)
        if request.method in READ_METHODS and (is_admin or _matches(token, read)):
            return await handler(request)
        if is_admin:
            return await handler(request)
        return problem(403, "Not allowed", "this token may not do that")

    return check
