"""Builds the aiohttp application from an engine and settings."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp_jinja2
import jinja2
from aiohttp import web

from approvals import (
    access,
    api,
    bulk,
    diagrams,
    guard,
    html_pages,
    inbox,
    openapi,
    pages,
    publishing,
    schedules,
    seats,
    status,
)
from approvals.access import access_control
from approvals.guard import guard_requests
from approvals.identity import ProxyIdentity
from approvals.keys import ENGINE, IDENTITY, PRODUCER, PUBLIC_ORIGIN, SECRET
from approvals.problems import problems_for_errors
from approvals.tracing import trace_requests
from bridge.asl.search import SearchValue
from bridge.asl.search_filter import equal_to
from bridge.engine import Engine
from bridge.event_producer import EventProducer

HERE = Path(__file__).resolve().parent


def build_app(
    engine: Engine,
    secret_key: str,
    *,
    admin_tokens: Sequence[str] = (),
    read_tokens: Sequence[str] = (),
    kafka_bootstrap: str | None = None,
    identity: ProxyIdentity | None = None,
) -> web.Application:
    """``kafka_bootstrap``: where ``POST /events`` produces (None: it answers 503).
    ``identity``: whose word on a person's name counts (None: nobody's)."""
    app = web.Application(
        client_max_size=guard.MAX_BODY + 1024,
        # Tracing outermost: refused requests are in the caller's trace too.
        middlewares=[
            trace_requests,
            problems_for_errors,
            # Before access control: a cross-site write is refused before any session counts.
            guard_requests,
            access_control(admin_tokens, read_tokens),
            # Inside access control: browsers get pages where API clients get JSON.
            html_pages.html_pages,
        ],
    )
    app[ENGINE] = engine
    app[IDENTITY] = identity or ProxyIdentity()
    app[PRODUCER] = EventProducer(kafka_bootstrap)
    app.on_cleanup.append(publishing.close_producer)
    app[SECRET] = secret_key.encode()
    public = urlsplit(engine.base_url)
    app[PUBLIC_ORIGIN] = f"{public.scheme}://{public.netloc}"
    access.setup(app, admin_tokens, read_tokens)
    diagrams.setup(app)
    status.setup(app)
    environment = aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=jinja2.select_autoescape(default=True),
    )
    environment.filters["when"] = when
    environment.filters["attribute_filter"] = attribute_filter
    app.add_routes(api.routes)
    app.add_routes(pages.routes)
    app.add_routes(inbox.routes)
    app.add_routes(publishing.routes)
    app.add_routes(bulk.routes)
    app.add_routes(schedules.routes)
    app.add_routes(seats.routes)
    app.add_routes(openapi.routes)
    app.router.add_static("/static", HERE / "static")
    return app


def attribute_filter(name: str, value: SearchValue) -> str:
    """A search attribute as the filter that finds it (``customerId=abc``, ``zip="01000"``)."""
    return equal_to(name, value).text()


def when(moment: datetime | str | None) -> str:
    """Every page writes a time the same way: date and time to the second, in UTC."""
    if moment is None or moment == "":
        return ""
    if isinstance(moment, str):
        try:
            moment = datetime.fromisoformat(moment.replace("Z", "+00:00"))
        except ValueError:
            return str(moment)
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")
