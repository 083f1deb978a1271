"""Errors over HTTP as RFC 9457 problem+json; the only place HTTP errors exist."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

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
