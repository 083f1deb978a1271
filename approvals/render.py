"""A status page rendered for a person: the template with who is looking, and the headers
every page carries."""

from __future__ import annotations

from typing import Any

import aiohttp_jinja2
from aiohttp import web

from approvals import access
from approvals.pages import PAGE_HEADERS


def render(request: web.Request, template: str, status: int = 200, **context: Any) -> web.Response:
    response = aiohttp_jinja2.render_template(
        template, request, {**context, "viewer": access.viewer(request)}, status=status
    )
    response.headers.update(PAGE_HEADERS)
    return response


def refused_form(request: web.Request, form: Any, *bound: str) -> web.Response | None:
    """The page that answers a status page's form post this viewer may not make (a stale or
    foreign nonce, a read-only token); None when it may."""
    if not access.form_nonce_ok(request, str(form.get("csrf", "")), *bound):
        return render(
            request, "message.html", 403, title="Not accepted", detail="Open the page again."
        )
    if request.get(access.ROLE) != "admin":
        return render(
            request, "message.html", 403, title="Not allowed", detail="Your token may only read."
        )
    return None
