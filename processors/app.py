"""The faust app: one agent for domain events and task replies, feeding the engine.

Records are read raw and parsed here, so a poison message becomes a dead letter, never a dead
agent. A batch goes through the engine's one runner (``Engine.apply``: one transaction, split
around an input that fails); faust acknowledges (and later commits) the offsets only after
``apply`` returns.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from faust.types import EventT
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bridge import faults
from bridge.asl import limits
from bridge.engine import CallbackReceived, Engine, EventReceived, InvalidInput
from bridge.events import KafkaRecord
from bridge.intake import EngineInput
from bridge.settings import Settings
from processors.batching import take_batches
from processors.transport import (
    BridgeApp,
    EventTopics,
    PromptTableManager,
    SharedNamesTopic,
    transport_class,
)

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


def reply_input(
    record: KafkaRecord, max_bytes: int = 256 * 1024, max_depth: int = limits.MAX_DEPTH
) -> CallbackReceived | InvalidInput:
    """The callback a reply record carries; a record that is no valid reply is dead-lettered.
    Replies are bounded like events (``max_bytes``, ``max_depth``)."""
    if record.value is not None and len(record.value) > max_bytes:
        return InvalidInput(record, f"invalid reply: the record is larger than {max_bytes} bytes")
    try:
        body = limits.loads(record.value or b"", "the reply", max_depth=max_depth)
        reply = Reply.model_validate(body)
    except limits.Unstorable as exc:
        log.warning("invalid reply at %s: %s", record.position, exc)
        return InvalidInput(record, f"invalid reply: {exc}")
    except ValidationError as exc:
        log.warning("invalid reply at %s: %s", record.position, _short(exc))
        return InvalidInput(record, f"invalid reply: {_short(exc)}"[:2000])
    # The reply's trace context goes in as it came; the engine checks it.
    headers = {name.lower(): value for name, value in record.headers}
    trace = {
        "traceparent": _latin1(headers.get("traceparent")),
        "tracestate": _latin1(headers.get("tracestate")),
    }
    if reply.heartbeat:
        return CallbackReceived(reply.task_token, "heartbeat", via="kafka", record=record, **trace)
    if reply.error is not None:
        return CallbackReceived(
            reply.task_token,
            "failure",
            error=reply.error,
            cause=reply.cause,
            via="kafka",
            record=record,
            **trace,
        )
    return CallbackReceived(
        reply.task_token, "success", output=reply.output, via="kafka", record=record, **trace
    )


def engine_input(record: KafkaRecord, settings: Settings) -> EngineInput:
    """What a record read by the worker asks of the engine: a reply on the replies topic, a
    domain event on any other."""
    if record.topic == settings.kafka_replies_topic:
        return reply_input(record, settings.max_event_bytes, settings.max_event_depth)
    return EventReceived(record)


def _latin1(value: bytes | None) -> str | None:
    return value.decode("latin-1") if value else None


def _short(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())


#: Seconds between a new topic and the consumer's new subscription.
RESUBSCRIBE_AFTER_SECONDS = 0.5


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
        broker_commit_interval=settings.kafka_commit_interval_ms / 1000,
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
    app.transport_cls = transport_class(
        settings.kafka_fetch_max_wait_ms, settings.kafka_fetch_idle_wait_ms
    )
    within = settings.batch_max_wait_ms / 1000
    replies = settings.kafka_replies_topic
    # One agent reads the domain events and the replies: what one fetch brings goes into one
    # batch, one transaction and one relay round, where an agent per topic wrote two of each.
    # It exists even when no definition reads events yet: one deployed later names the topics
    # it follows (EventTopics.follow), without a restart.
    inputs_topic = SharedNamesTopic(
        app,
        topics=[replies, *(name for name in topics if name != replies)],
        value_serializer="raw",
        key_serializer="raw",
    )
    # A changed subscription is sent after this many seconds (faust waits 45 by default, to
    # gather the changes of agents that restart together).
    conductor: Any = app.topics  # faust.transport.conductor.TopicConductor
    conductor._resubscribe_sleep_lock_seconds = RESUBSCRIBE_AFTER_SECONDS
    app.event_topics = EventTopics(app, inputs_topic, others=(replies,))

    @app.agent(inputs_topic, name="bridge-inputs")
    async def consume(stream: Any) -> None:
        async for batch in take_batches(stream, settings.batch_max_events, within):
            # Each input's log lines carry its own position (bound as it is applied).
            inputs = [engine_input(record_of(event), settings) for event in batch]
            outcomes = await engine.apply(inputs)
            for item, outcome in zip(inputs, outcomes, strict=True):
                if not outcome.ok and not isinstance(item, EventReceived):
                    log.warning("reply not applied: %s (%s)", outcome.status, outcome.reason)
            faults.point("after-commit-before-offset")

    return app
