"""Trace context from HTTP requests (W3C ``traceparent``/``tracestate`` headers).

A request that brings a trace context is served in a server span under it, and the engine applies
what the request asks (a start, a task callback, an approval decision) in that span's context. A
request without one starts nothing here, so that a callback or decision without a header
continues its process's trace, and a start begins a new one.

The span is named by the route's template (``POST /tasks/{token}/{outcome}``), never by the path:
paths of callbacks and approval links carry tokens, which are secrets.
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler
from opentelemetry import context, trace
from opentelemetry.trace import SpanKind, StatusCode

from approvals.keys import ENGINE
from bridge import tracing


def route_of(request: web.Request) -> str:
    """The template of the route a request matched, without any value from its path."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def trace_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
    parent = tracing.from_mapping(request.headers)
    if parent is None:
        return await handler(request)
    route = route_of(request)
    span = request.app[ENGINE].tracing.start(
        f"{request.method} {route}",
        parent,
        kind=SpanKind.SERVER,
        attributes={"http.request.method": request.method, "http.route": route},
    )
    attached = context.attach(trace.set_span_in_context(span))
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        _status(span, exc.status)
        raise
    except Exception as exc:
        if span.is_recording():
            span.record_exception(exc)
            span.set_status(StatusCode.ERROR, type(exc).__name__)
        raise
    else:
        _status(span, response.status)
        return response
    finally:
        context.detach(attached)
        span.end()


def _status(span: trace.Span, status: int) -> None:
    if span.is_recording():
        span.set_attribute("http.response.status_code", status)
        if status >= 500:
            span.set_status(StatusCode.ERROR)
