"""``POST /events``: an event posted over HTTP, produced to Kafka for the workers to read."""

from __future__ import annotations

from urllib.parse import quote

from aiohttp import web
from pydantic import ValidationError

from approvals.guard import first_error, raw_body
from approvals.keys import ENGINE, PRODUCER
from approvals.problems import problem
from approvals.schemas import EventAccepted, PublishQuery
from bridge import tracing
from bridge.event_producer import ProducerUnavailable
from bridge.http_events import EventRefused, outgoing_event, traced

routes = web.RouteTableDef()
#: How long a client should wait before posting again when no broker took the event.
RETRY_AFTER_SECONDS = 5


@routes.post("/events")
async def publish_event(request: web.Request) -> web.Response:
    """Produce the posted event (plain JSON, or a CloudEvent in binary or structured mode) to
    ``?topic=``, keyed by ``?key=``; 202 once the broker has it."""
    engine = request.app[ENGINE]
    counted = engine.metrics.http_events
    try:
        query = PublishQuery.model_validate(dict(request.query))
    except ValidationError as exc:
        counted.labels("refused").inc()
        return problem(400, "Invalid query", first_error(exc))
    body = await raw_body(request)
    if query.topic not in engine.registry.topics():
        # A definition deployed by another process may read it: look again before refusing.
        await engine.registry.refresh(engine.db)
    try:
        event = outgoing_event(
            topic=query.topic,
            key=query.key,
            content_type=request.headers.get("Content-Type", ""),
            headers=request.headers,
            body=body,
            topics=engine.registry.topics(),
            max_bytes=engine.config.max_event_bytes,
            max_depth=engine.config.max_event_depth,
        )
    except EventRefused as refused:
        counted.labels("refused").inc()
        return problem(refused.status, refused.title, refused.detail)
    context = tracing.current()
    if context is not None:
        event = traced(
            event, tracing.format_traceparent(context), tracing.format_tracestate(context)
        )
    try:
        produced = await request.app[PRODUCER].send(event)
    except ProducerUnavailable as exc:
        counted.labels("unavailable").inc()
        response = problem(503, "Broker unavailable", str(exc))
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response
    counted.labels("accepted").inc()
    # A CloudEvent is found by its id (a retried post included); another event by its position.
    ident = event.event_id if event.event_id is not None else produced.position
    safe = "/" if event.event_id is None else ""
    explanation = f"{engine.base_url}/events/{quote(ident, safe=safe)}"
    accepted = EventAccepted(
        event_id=ident,
        source=event.source,
        type=event.type,
        topic=produced.topic,
        partition=produced.partition,
        offset=produced.offset,
        explanation=explanation,
    )
    return web.json_response(accepted.dump(), status=202, headers={"Location": explanation})


async def close_producer(app: web.Application) -> None:
    await app[PRODUCER].close()
