"""Pages for people where the API answers JSON: a browser asking for HTML (``Accept``) at
``/processes``, ``/processes/{id}`` or a definition's address gets the page, everyone else the
JSON API. One middleware in front of the handlers, so that no API handler imports a page module.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

from aiohttp import web

from approvals import definition_pages, inbox, status
from approvals.access import wants_html

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
#: A process's own address (not its history, not an action).
PROCESS_PAGE = re.compile(r"^/processes/(?P<id>[^/]+)$")


@web.middleware
async def html_pages(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.method in ("GET", "HEAD") and wants_html(request):
        if request.path == "/processes":
            return await status.process_list(request)
        one = PROCESS_PAGE.match(request.path)
        if one is not None:
            return await inbox.process_page(request, one.group("id"))
        page = definition_pages.page_for(request.path)
        if page is not None:
            response: web.StreamResponse = await page(request)
            return response
    return await handler(request)
