"""The one schema source: SQLAlchemy metadata. Alembic migrations are checked against it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    TypeDecorator,
    false,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out, on SQLite (naive text) and PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


Json: Any = JSON().with_variant(JSONB(), "postgresql")
#: Autoincrementing 64-bit keys; SQLite only autoincrements INTEGER PRIMARY KEY.
Serial: Any = BigInteger().with_variant(Integer(), "sqlite")

definitions = Table(
    "definitions",
    metadata,
    Column("name", String(200), nullable=False),
    Column("version", Integer, nullable=False),
    Column("document", Json, nullable=False),
    Column("digest", String(64), nullable=False),
    Column("deployed_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("name", "version"),
)

definition_aliases = Table(
    "definition_aliases",
    metadata,
    Column("definition", String(200), nullable=False),
    Column("name", String(80), nullable=False),
    Column("description", Text, nullable=False),
    # [{"version": 2, "weight": 90}, {"version": 3, "weight": 10}]
    Column("routes", Json, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("definition", "name"),
)

processes = Table(
    "processes",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("definition", String(200), nullable=False),
    Column("version", Integer, nullable=False),
    Column("correlation_key", String(500), nullable=True),
    Column("status", String(16), nullable=False),
    Column("current_state", String(200), nullable=True),
    Column("state", Json, nullable=False),
    Column("started_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("ended_at", UTCDateTime, nullable=True),
    Column("history_seq", Integer, nullable=False, default=0),
    Column("row_version", Integer, nullable=False, default=1),
    #: W3C trace context the process runs in: inputs without their own continue this trace.
    Column("traceparent", String(55), nullable=True),
    Column("tracestate", String(512), nullable=True),
    #: When the earliest of its pending timers is due (``Process.wake_at``; the timers
    #: themselves are in ``state``): the timer scan's queue. NULL, the common case, is left out
    #: of the index.
    Column("wake_at", UTCDateTime, nullable=True),
    Index(None, "correlation_key"),
    Index(None, "status", "definition"),
    Index(
        None,
        "wake_at",
        postgresql_where=text("wake_at IS NOT NULL"),
        sqlite_where=text("wake_at IS NOT NULL"),
    ),
    Index(None, "started_at"),
    # Retention finds the processes that ended before a cutoff (bridge.store.retention).
    Index(None, "ended_at"),
)

#: Search attributes (``bridge.asl.search``): one row per process and attribute, written only when
#: a process's attributes change. A number is kept in ``number_value``, a string or a boolean in
#: ``text_value``; each column is indexed behind the name, so that equality, ranges and (as a
#: range, ``>= prefix AND < the next prefix``) prefixes are index scans. On PostgreSQL the text
#: compares in byte order (COLLATE "C"), SQLite's own order, so both answer a range alike.
process_search_attributes = Table(
    "process_search_attributes",
    metadata,
    Column("process_id", String(64), ForeignKey("processes.id"), nullable=False),
    Column("name", String(64), nullable=False),
    Column("text_value", Text().with_variant(Text(collation="C"), "postgresql"), nullable=True),
    Column("number_value", Double(), nullable=True),
    PrimaryKeyConstraint("process_id", "name"),
    Index(None, "name", "text_value"),
    Index(None, "name", "number_value"),
)

#: A process's history in chunks: one row per process and batch that added to it, holding its
#: entries ``seq`` to ``last_seq`` (bridge.store.history_chunks packs and unpacks them). Chunks of
#: a process never overlap, so ordering them by ``last_seq`` orders them by ``seq`` too, and a
#: page after some seq starts at the first chunk whose ``last_seq`` is past it, hence the index.
history = Table(
    "history",
    metadata,
    Column("id", Serial, primary_key=True, autoincrement=True),
    Column("process_id", String(64), ForeignKey("processes.id"), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("last_seq", Integer, nullable=False),
    #: [{"at": "2026-12-03T10:00:00.000000+00:00", "type": ..., "state": ..., "details": {...}}]
    Column("entries", Json, nullable=False),
    Index(None, "process_id", "last_seq", unique=True),
)

outbox = Table(
    "outbox",
    metadata,
    Column("id", Serial, primary_key=True, autoincrement=True),
    #: Every message one transaction wrote, in the order they go out: a JSON array of objects
    #: with message_id, process_id, topic, key, value, headers, traceparent and tracestate (the
    #: W3C trace context of the step that wrote the message; the relay sends it as headers).
    #: One row per transaction: one insert and one delete however many messages it wrote.
    Column("messages", Json, nullable=False),
    #: The array's length, so that the relay can bound a round and the backlog can be counted in
    #: messages without reading the messages.
    Column("message_count", Integer, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    #: Set when a message can never be published (too large, an invalid topic...): the relay
    #: moves it to a row of its own, left aside with the reason until an operator retries it, so
    #: a parked row holds exactly one message. A published row is deleted, so that no task token
    #: or approval link it carried stays in the database.
    Column("parked_at", UTCDateTime, nullable=True),
    Column("park_reason", String(2000), nullable=True),
    Index(None, "parked_at", "id"),
)

#: Identities of inputs already applied (the dedupe marks) and, for events, what became of them.
inbox = Table(
    "inbox",
    metadata,
    Column("key", String(600), primary_key=True),
    Column("received_at", UTCDateTime, nullable=False),
    Column("outcome", String(200), nullable=False),
    Column("event_id", String(500), nullable=True),
    Column("source", String(500), nullable=True),
    Column("topic", String(249), nullable=True),
    Column("partition", Integer, nullable=True),
    Column("offset", BigInteger, nullable=True),
    Column("event_type", String(200), nullable=True),
    Column("details", Json, nullable=True),
    Column("duplicates", Integer, nullable=False, server_default="0"),
    Column("last_duplicate_at", UTCDateTime, nullable=True),
    Index(None, "event_id"),
    Index(None, "received_at"),
)

#: Processes waiting for an event: one row per (topic, type, key) a wait listens for.
event_waits = Table(
    "event_waits",
    metadata,
    Column("id", Serial, primary_key=True, autoincrement=True),
    Column("wait_id", String(64), nullable=False),
    Column("process_id", String(64), nullable=False),
    Column("topic", String(249), nullable=False),
    Column("event_type", String(200), nullable=False),
    Column("correlation_key", String(500), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Index(None, "topic", "event_type", "correlation_key"),
    Index(None, "wait_id"),
    # Deleting a process deletes its waits by process id (bridge.store.retention).
    Index(None, "process_id"),
)

#: Events that arrived before anything waited for them, kept until their time to live ends.
buffered_events = Table(
    "buffered_events",
    metadata,
    Column("id", Serial, primary_key=True, autoincrement=True),
    Column("event_key", String(600), nullable=False),
    Column("topic", String(249), nullable=False),
    Column("event_type", String(200), nullable=False),
    Column("correlation_key", String(500), nullable=False),
    Column("event", Json, nullable=False),
    Column("received_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("consumed_at", UTCDateTime, nullable=True),
    Column("consumed_by", String(64), nullable=True),
    Column("expired_at", UTCDateTime, nullable=True),
    Index(None, "topic", "event_type", "correlation_key"),
    Index(None, "expires_at"),
    Index(None, "event_key"),
)

task_tokens = Table(
    "task_tokens",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("process_id", String(64), ForeignKey("processes.id"), nullable=False),
    Column("wait_id", String(64), nullable=False),
    Column("state", String(200), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    # Deleting a process deletes its tokens, and PostgreSQL checks the foreign key, by
    # process id: without it, a scan of a table that only grows, per process.
    Index(None, "process_id"),
)

approvals = Table(
    "approvals",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("process_id", String(64), ForeignKey("processes.id"), nullable=False),
    Column("wait_id", String(64), nullable=False, unique=True),
    Column("state", String(200), nullable=False),
    Column("title", Text, nullable=False),
    Column("description", Text, nullable=True),
    Column("data", Json, nullable=True),
    Column("status", String(16), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("decided_at", UTCDateTime, nullable=True),
    Column("decided_by", String(200), nullable=True),
    Column("comment", Text, nullable=True),
    Column("definition", String(200), nullable=True),
    Column("seats", Json, nullable=True),
    Column("rule", String(20), nullable=True),
    Column("votes", Json, nullable=True),
    Column("expires_at", UTCDateTime, nullable=True),
    Column("on_expiry", String(10), nullable=True),
    #: The form and outcomes of the task's own, if any (bridge.asl.forms.Form.to_json).
    Column("form", Json, nullable=True),
    #: Who holds which seat besides its own user: {"group:ops": "olga"} (claims, delegations).
    Column("holders", Json, nullable=True),
    Index(None, "status", "created_at"),
    Index(None, "process_id"),
)

approval_links = Table(
    "approval_links",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("approval_id", String(64), ForeignKey("approvals.id"), nullable=False),
    Column("approve", Boolean, nullable=False),
    Column("seat", String(210), nullable=True),
    Index(None, "approval_id"),
)

#: Who opened a decision link's page: one row per approval, seat, link and viewer, with how
#: often and when first and last. Kept apart from the process so that a GET takes no lock on it
#: and bumps no version (mail scanners open links, some many times).
approval_views = Table(
    "approval_views",
    metadata,
    Column("id", Serial, primary_key=True, autoincrement=True),
    Column("approval_id", String(64), nullable=False),
    Column("process_id", String(64), nullable=False),
    Column("seat", String(210), nullable=False),
    #: The link's own decision: approve or reject.
    Column("action", String(8), nullable=False),
    #: Who, when a trusted proxy said so; "" when nobody did.
    Column("viewer", String(200), nullable=False),
    Column("views", Integer, nullable=False),
    Column("first_at", UTCDateTime, nullable=False),
    Column("last_at", UTCDateTime, nullable=False),
    Index(None, "approval_id", "seat", "action", "viewer", unique=True),
    Index(None, "process_id"),
)

#: HTTP calls of ``bridge:http:invoke`` tasks, a work queue: a worker claims a call for a while
#: (``claimed_until``, renewed while the call runs), makes it outside any transaction, and the
#: engine marks it done in the transaction that applies its answer. ``id`` is the wait's id.
http_calls = Table(
    "http_calls",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("process_id", String(64), ForeignKey("processes.id"), nullable=False),
    Column("state", String(200), nullable=False),
    #: bridge.asl.http_task.HttpRequest.to_json(); masked once the call is done.
    Column("request", Json, nullable=False),
    Column("timeout_seconds", Integer, nullable=False),
    #: When the call must have been answered: no call starts after it, none runs past it.
    Column("deadline", UTCDateTime, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("claimed_until", UTCDateTime, nullable=True),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("done_at", UTCDateTime, nullable=True),
    #: The status or error of the answer, and whether the process took it.
    Column("outcome", String(200), nullable=True),
    #: W3C trace context of the step that asked for the call; the call continues it.
    Column("traceparent", String(55), nullable=True),
    Column("tracestate", String(512), nullable=True),
    Index(None, "done_at", "created_at"),
    Index(None, "process_id"),
)

#: Notifications of approvals (mails, webhook posts): a work queue between the engine, which adds
#: a row in the transaction of the step that asked, and a worker's deliverer, which claims rows
#: for a lease, sends them outside any transaction and retries with back-off. The id is the
#: stable message id (Message-ID, X-Bridge-Delivery-Id). No link token is ever kept here: the
#: deliverer mints the links of ``seats`` when it sends (see bridge.deliverer).
deliveries = Table(
    "deliveries",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("process_id", String(64), ForeignKey("processes.id"), nullable=False),
    Column("approval_id", String(64), nullable=True),
    Column("state", String(200), nullable=False),
    #: Requested, Reminded, Escalated or Decided.
    Column("event", String(16), nullable=False),
    #: email or webhook; ``format`` is a webhook's (slack, teams, json).
    Column("channel", String(16), nullable=False),
    Column("format", String(16), nullable=True),
    #: The address or URL, as the definition or the data gave it (judged when sent).
    Column("recipient", Text, nullable=False),
    #: The seats whose links the message carries (or that the recipient held, for Decided).
    Column("seats", Json, nullable=False),
    #: The outcome of a Decided notice.
    Column("outcome", String(16), nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    #: No try before this (the back-off after a failed try).
    Column("next_attempt_at", UTCDateTime, nullable=False),
    Column("claimed_until", UTCDateTime, nullable=True),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("last_error", String(500), nullable=True),
    Column("done_at", UTCDateTime, nullable=True),
    #: sent, failed or skipped (the approval was decided before its request went out).
    Column("result", String(16), nullable=True),
    Index(None, "done_at", "next_attempt_at"),
    Index(None, "process_id"),
)

#: Bulk operations: stop or redrive every process matching a filter, as a tracked job. A worker
#: claims one for a while (``claimed_until``), applies it a chunk at a time through the engine
#: and records its progress after each chunk (``cursor``: the last process id handled), so that
#: another worker takes it up where it was after a crash.
bulk_operations = Table(
    "bulk_operations",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("action", String(16), nullable=False),
    #: The filter: definition, version, status, correlationKey, startedAfter, startedBefore.
    Column("filter", Json, nullable=False),
    Column("reason", String(2000), nullable=False),
    Column("rate_per_second", Integer, nullable=False),
    #: RUNNING, DONE or CANCELLED.
    Column("status", String(16), nullable=False),
    Column("total", Integer, nullable=False),
    Column("applied", Integer, nullable=False, server_default="0"),
    Column("skipped", Integer, nullable=False, server_default="0"),
    Column("cursor", String(64), nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("finished_at", UTCDateTime, nullable=True),
    Column("claimed_until", UTCDateTime, nullable=True),
    Index(None, "status", "created_at"),
)

#: Schedules that start processes (bridge.schedules): declared in a definition (``declared_by``
#: names it) or made through the API.
schedules = Table(
    "schedules",
    metadata,
    Column("id", String(200), primary_key=True),
    #: What each tick starts: NAME, NAME:VERSION or NAME:ALIAS.
    Column("definition", String(300), nullable=False),
    #: The definition whose ``Schedules`` declare it; None: made through the API.
    Column("declared_by", String(200), nullable=True),
    #: {"cron", "timeZone"} or {"rateSeconds", "anchor"} or {"at"} (bridge.asl.schedule_times).
    Column("spec", Json, nullable=False),
    Column("input", Json, nullable=True),
    Column("description", String(1000), nullable=False, server_default=""),
    #: Skip, Allow or BufferOne; Skip or RunOnce (bridge.schedule_policy).
    Column("overlap", String(16), nullable=False),
    Column("catch_up", String(16), nullable=False),
    Column("paused", Boolean, nullable=False, server_default=false()),
    Column("paused_note", String(500), nullable=True),
    #: The next tick; None: none left (a one-off time done, or paused for good).
    Column("next_at", UTCDateTime, nullable=True),
    #: The tick kept until the previous process ends (overlap BufferOne).
    Column("buffered_at", UTCDateTime, nullable=True),
    Column("last_tick_at", UTCDateTime, nullable=True),
    Column("last_result", String(16), nullable=True),
    Column("last_note", String(500), nullable=True),
    Column("last_process_id", String(64), nullable=True),
    Column("started", Integer, nullable=False, server_default="0"),
    Column("skipped", Integer, nullable=False, server_default="0"),
    Column("missed", Integer, nullable=False, server_default="0"),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Index(None, "paused", "next_at"),
    Index(None, "declared_by"),
)
