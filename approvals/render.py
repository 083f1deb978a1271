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
