"""The faust app: one agent for domain events, one for task replies, both feeding the engine.

Records are read raw and parsed here, so a poison message becomes a logged, skipped input (a
dead letter in a later version) and never a dead agent. A batch is applied in one transaction;
faust acknowledges (and later commits) the offsets only after ``apply`` returns.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import structlog
from faust.types import EventT
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bridge import faults
from bridge.engine import (
    CallbackReceived,
    Engine,
    EngineInput,
    EventReceived,
    Outcome,
    PoisonInput,
)
from bridge.events import KafkaRecord
from bridge.settings import Settings
from processors.transport import BridgeApp, PromptTableManager, transport_class

log = logging.getLogger(__name__)


class Reply(BaseModel):
    """A task reply on the replies topic: output, or error and cause, or a heartbeat."""

    model_config = ConfigDict(extra="ignore")

    task_token: str = Field(alias="taskToken", min_length=1, max_length=512)
    output: Any = None
    error: str | None = Field(default=None, max_length=256)
    cause: str | None = Field(default=None, max_length=32_768)
    heartbeat: bool = False


def record_of(event: EventT[Any]) -> KafkaRecord:
    message = event.message
    raw_headers: Any = message.headers or ()
    if isinstance(raw_headers, dict):
        raw_headers = raw_headers.items()
    headers = tuple(
        (str(name), value if isinstance(value, bytes) else str(value or "").encode())
        for name, value in raw_headers
    )
    return KafkaRecord(
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        key=message.key,
        value=message.value,
        headers=headers,
        timestamp_ms=int(message.timestamp * 1000) if message.timestamp else None,
    )


def reply_input(record: KafkaRecord) -> CallbackReceived | None:
    """The callback a reply record carries; None (logged) when it is not a valid reply."""
    try:
        reply = Reply.model_validate_json(record.value or b"")
    except ValidationError as exc:
        log.warning("invalid reply at %s: %s", record.position, _short(exc))
        return None
    # The reply's trace context goes in as it came; the engine checks it.
    headers = {name.lower(): value for name, value in record.headers}
    trace = {
        "traceparent": _latin1(headers.get("traceparent")),
        "tracestate": _latin1(headers.get("tracestate")),
    }
    if reply.heartbeat:
        return CallbackReceived(reply.task_token, "heartbeat", via="kafka", **trace)
    if reply.error is not None:
        return CallbackReceived(
            reply.task_token, "failure", error=reply.error, cause=reply.cause, via="kafka", **trace
        )
    return CallbackReceived(reply.task_token, "success", output=reply.output, via="kafka", **trace)


def _latin1(value: bytes | None) -> str | None:
    return value.decode("latin-1") if value else None


def _short(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())


#: How often one input is tried before it is given up on (dead-lettered, its processes failed).
MAX_ATTEMPTS = 3


async def apply_batch(engine: Engine, inputs: Sequence[EngineInput]) -> list[Outcome]:
    """Apply ``inputs``; keep retrying while the database is away, so no offset moves past them.

    An input whose processing raises is isolated (the batch is applied without it, one input at
    a time), tried ``MAX_ATTEMPTS`` times, then dead-lettered with its reason and the processes
    it was stepping are failed, so that the partition keeps flowing.
    """
    if not inputs:
        return []
    delay = 0.1
    attempts = 0
    while True:
        try:
            return await engine.apply(inputs)
        except PoisonInput as poison:
            if len(inputs) > 1:
                log.warning("a batch failed (%r); applying its inputs one by one", poison.cause)
                return [outcome for item in inputs for outcome in await apply_batch(engine, [item])]
            attempts += 1
            if attempts >= MAX_ATTEMPTS:
                reason = f"processing failed {attempts} times: {poison.cause!r}"[:2000]
                log.error("giving up on an input: %s", reason)
                await _quarantine(engine, inputs[0], reason, poison.process_ids)
                return [Outcome("invalid", reason, poison.process_ids)]
            log.warning("an input failed (attempt %d): %r", attempts, poison.cause)
        except Exception as exc:
            # The database away, or a failure outside any one input: retry, never lose the batch.
            if _is_connection_problem(exc) or isinstance(exc, OSError):
                log.warning("database unreachable (%s); retrying in %.1fs", exc, delay)
            else:
                log.exception("applying a batch failed; retrying in %.1fs", delay)
        await asyncio.sleep(delay)
        delay = min(delay * 2, 5.0)


async def _quarantine(
    engine: Engine, item: EngineInput, reason: str, process_ids: Sequence[str]
) -> None:
    delay = 0.1
    while True:
        try:
            await engine.quarantine(item, reason, process_ids)
            return
        except Exception as exc:
            log.warning("could not dead-letter an input yet (%r); retrying", exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


def _is_connection_problem(exc: BaseException) -> bool:
    text = f"{type(exc).__name__} {exc}".lower()
    return any(
        word in text
        for word in ("connection", "connect", "closed", "terminat", "cannot_connect", "shutdown")
    )


def build_app(
    settings: Settings,
    engine: Engine,
    bootstrap: str,
    topics: Sequence[str],
    *,
    embedded_broker: bool = False,
) -> BridgeApp:
    """The faust app consuming ``topics`` (domain events) and the replies topic.

    ``embedded_broker``: the broker is the one ``bridge dev`` started, which changes the default
    consumer group timing (see ``Settings.consumer_group_timing``).
    """
    datadir = Path(tempfile.gettempdir()) / "bridge-faust" / settings.kafka_group_id
    datadir.parent.mkdir(parents=True, exist_ok=True)
    session_ms, heartbeat_ms, rebalance_ms = settings.consumer_group_timing(
        embedded_broker=embedded_broker
    )
    app = BridgeApp(
        settings.kafka_group_id,
        broker=[f"kafka://{server.strip()}" for server in bootstrap.split(",")],
        web_enabled=False,
        consumer_auto_offset_reset="earliest",
        topic_partitions=settings.kafka_topic_partitions,
        topic_replication_factor=1,
        broker_commit_every=settings.batch_max_events,
        broker_commit_interval=0.2,
        # A worker that died without leaving holds its partitions until its session times out;
        # with a static instance id, a restarted worker takes them back at once (Apache Kafka).
        broker_session_timeout=session_ms / 1000,
        broker_heartbeat_interval=heartbeat_ms / 1000,
        broker_rebalance_timeout=rebalance_ms / 1000,
        consumer_group_instance_id=settings.consumer_instance_id(),
        # No faust tables here: start consuming without faust's one-second table pause.
        TableManager=PromptTableManager,
        datadir=datadir,
    )
    app.transport_cls = transport_class(settings.kafka_fetch_max_wait_ms)
    within = settings.batch_max_wait_ms / 1000
    if topics:
        event_topic = app.topic(*topics, value_serializer="raw", key_serializer="raw")

        @app.agent(event_topic, name="bridge-events")
        async def events(stream: Any) -> None:
            async for batch in stream.take_events(settings.batch_max_events, within=within):
                inputs = [EventReceived(record_of(event)) for event in batch]
                first = inputs[0].record
                with structlog.contextvars.bound_contextvars(
                    topic=first.topic, partition=first.partition, offset=first.offset
                ):
                    await apply_batch(engine, inputs)
                faults.point("after-commit-before-offset")

    reply_topic = app.topic(
        settings.kafka_replies_topic, value_serializer="raw", key_serializer="raw"
    )

    @app.agent(reply_topic, name="bridge-replies")
    async def replies(stream: Any) -> None:
        async for batch in stream.take_events(settings.batch_max_events, within=within):
            inputs = [found for event in batch if (found := reply_input(record_of(event)))]
            outcomes = await apply_batch(engine, inputs)
            for outcome in outcomes:
                if not outcome.ok:
                    log.warning("reply not applied: %s (%s)", outcome.status, outcome.reason)

    return app
