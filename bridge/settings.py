"""Typed settings, read once at start from environment variables prefixed ``BRIDGE_``.

Every process (``bridge dev``, ``bridge worker``, ``bridge web``) builds one ``Settings`` and hands
it to the bootstrap; nothing else reads the environment.
"""

from __future__ import annotations

import ipaddress
import socket
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from bridge.asl.http_task import url_problem
from bridge.asl.notify import address_problem


class Settings(BaseSettings):
    """The bridge's whole configuration; see the README's configuration table."""

    model_config = SettingsConfigDict(
        env_prefix="BRIDGE_", env_nested_delimiter="__", extra="ignore", frozen=True
    )

    kafka_bootstrap: str | None = Field(
        default=None,
        description="Kafka bootstrap servers (host:port,...). Unset under `bridge dev`: an "
        "embedded broker is started.",
    )
    embedded_broker_port: int = Field(
        default=9092,
        ge=1,
        le=65535,
        description="Port of the broker `bridge dev` starts on 127.0.0.1 when no cluster is named.",
    )
    kafka_fetch_max_wait_ms: int = Field(
        default=10,
        ge=0,
        le=10_000,
        description="Consumer fetch wait while records flow. Real Kafka answers as soon as data "
        "arrives; brokers that only answer at the end of the wait need a small value.",
    )
    kafka_fetch_idle_wait_ms: int = Field(
        default=250,
        ge=0,
        le=10_000,
        description="Consumer fetch wait after a second without records (at least the fetch "
        "wait above): fewer round trips while idle. On a broker that answers only at the end of "
        "the wait, the first record after a quiet second may wait this long.",
    )
    kafka_commit_interval_ms: int = Field(
        default=1000,
        ge=10,
        le=60_000,
        description="How often a worker commits the offsets of what it applied (also after "
        "every `batch_max_events` inputs). After a crash the inputs since the last commit come "
        "again and are recognised as seen; a shorter interval wakes an idle worker more often.",
    )
    kafka_session_timeout_ms: int | None = Field(
        default=None,
        ge=1000,
        le=300_000,
        description="Consumer session timeout: how soon the partitions of a worker that died "
        "move on. Unset: 2000 with the embedded broker of `bridge dev`, 10000 with a named "
        "cluster (Apache Kafka refuses values below its group.min.session.timeout.ms, 6000 by "
        "default). Workers pointed at a Tansu broker should set 2000.",
    )
    kafka_heartbeat_interval_ms: int | None = Field(
        default=None,
        ge=100,
        le=100_000,
        description="Consumer heartbeat interval; below the session timeout. Unset: a third of "
        "the session timeout.",
    )
    kafka_instance_id: str | None = Field(
        default=None,
        max_length=200,
        description="Static group membership (Apache Kafka >= 2.3): a stable id per worker, so "
        "that a restarted worker takes its partitions back without a rebalance. `{hostname}` "
        "is replaced by the host name. Unset or empty: dynamic membership. Leave it unset with "
        "the embedded broker (it makes joins slower there).",
    )
    kafka_group_id: str = Field(default="bridge", description="Consumer group of the workers.")
    kafka_replies_topic: str = "bridge.replies"
    kafka_approvals_topic: str = "bridge.approvals"
    kafka_dlq_topic: str = Field(
        default="bridge.dlq", description="Dead letters: invalid and unmatched events."
    )
    kafka_lifecycle_topic: str = Field(
        default="bridge.lifecycle",
        description="Process lifecycle events (started, succeeded, ...); empty turns them off.",
    )
    lifecycle_steps: bool = Field(
        default=False, description="Also publish a lifecycle event for every state entered/left."
    )
    event_buffer_seconds: int = Field(
        default=3600,
        ge=0,
        description="How long an early event waits for its wait, unless the wait says.",
    )
    dedupe_retention_hours: int = Field(
        default=168, ge=1, description="How long event identities are remembered."
    )
    retention_days: int = Field(
        default=90,
        ge=0,
        le=36_500,
        description="Days a finished process and its history are kept (0: for good); a "
        "definition's RetentionDays overrides it.",
    )
    kafka_topic_partitions: int = Field(
        default=1, ge=1, description="Partitions for topics the bridge creates."
    )
    database_url: str = Field(
        default="sqlite+aiosqlite:///bridge.db",
        description="SQLAlchemy async URL: sqlite+aiosqlite:///FILE or "
        "postgresql+asyncpg://USER@HOST:PORT/DB.",
    )
    database_migrate: bool = Field(
        default=True, description="Upgrade the database schema to the newest version at start."
    )
    worker_http_host: str = Field(
        default="127.0.0.1",
        description="Where `bridge worker` serves its probes and metrics (/livez, /readyz, "
        "/metrics).",
    )
    worker_http_port: int = Field(
        default=8081, ge=0, le=65535, description="Their port; 0 serves none."
    )
    ready_max_outbox_age_seconds: float = Field(
        default=60.0,
        gt=0,
        description="A worker is not ready while a message has waited longer than this to be "
        "published (the broker is away, or the relay is stuck).",
    )
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8080, ge=0, le=65535)
    public_url: str | None = Field(
        default=None,
        description="Base URL that approval links and status URLs point to; defaults to "
        "http://HTTP_HOST:HTTP_PORT.",
    )
    definitions_dir: Path | None = Field(
        default=None,
        description="Folder of process definitions (*.asl.json, *.asl.yaml). Unset: ./definitions "
        "when it exists, else the shipped examples.",
    )
    batch_max_events: int = Field(
        default=100,
        ge=1,
        description="Most events applied in one transaction. Larger batches cost fewer "
        "statements per event, but hold more in memory; past about 100 they stop paying.",
    )
    batch_max_wait_ms: int = Field(
        default=1,
        ge=0,
        description="How long an idle worker's batch waits to fill after its first record. A "
        "fetch's records arrive together anyway; a longer wait gathers the next fetch's too, "
        "which saves CPU at moderate load and costs every input that long.",
    )
    gc_young_threshold: int = Field(
        default=10_000,
        ge=700,
        description="Python's young-generation collection threshold in a worker, web or dev "
        "process once it serves (Python's own is 700): about 8 % less of a worker's CPU flat "
        "out; a lower one collects cyclic garbage sooner, a higher one saves a little more.",
    )
    relay_poll_ms: int = Field(
        default=1000,
        ge=1,
        description="How often the relay, timer scanner and HTTP invoker look for work nothing "
        "woke them for (commits wake them, and the scanner wakes when the next timer is due).",
    )
    relay_batch_size: int = Field(default=500, ge=1)
    max_event_bytes: int = Field(
        default=256 * 1024,
        ge=1024,
        description="Largest event value taken; a larger one is dead-lettered (its letter "
        "carries the first 128 KiB).",
    )
    max_event_depth: int = Field(
        default=64,
        ge=2,
        le=100,
        description="Deepest nesting of objects and arrays in an event (and an HTTP body); a "
        "deeper one is refused: dead-lettered, or answered with 400.",
    )
    secret_key: SecretStr = Field(
        default=SecretStr("dev-only-secret-change-me"),
        description="Signs CSRF nonces. Set a long random value in production.",
    )
    api_admin_tokens: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="Bearer tokens (comma-separated) for every management call. With no tokens "
        "at all, the management API is open (fine on your laptop, not in production).",
    )
    api_read_tokens: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="Bearer tokens (comma-separated) that may only read.",
    )
    log_processes: bool = Field(
        default=False,
        description="A log line each time a process starts, waits or ends (on under `bridge "
        "dev`, where it shows the flow; at volume it is noise).",
    )
    api_open: bool = Field(
        default=False,
        description="Let `bridge web` listen beyond this machine with no API tokens (everyone "
        "is admin): only where nothing else reaches it, e.g. a container port published on "
        "127.0.0.1.",
    )
    http_allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Hosts that bridge:http:invoke tasks may call (comma-separated): host, "
        "host:port, *.domain, *.domain:port, or * for any. Unset: any host (fine for `bridge "
        "dev`; set it in production). A call to another host fails with Http.Forbidden.",
    )
    identity_header: str | None = Field(
        default=None,
        description="The header a reverse proxy in front of `bridge web` sets to the "
        "authenticated user's name (e.g. X-Forwarded-User): who views and decides approvals. "
        "Believed only from BRIDGE_TRUSTED_PROXIES.",
    )
    identity_groups_header: str | None = Field(
        default=None,
        description="The header with the authenticated user's groups, comma-separated (e.g. "
        "X-Forwarded-Groups): the inbox's \"mine\" lists their groups' approvals too. Believed "
        "only from BRIDGE_TRUSTED_PROXIES, with BRIDGE_IDENTITY_HEADER.",
    )
    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Addresses or networks (comma-separated: 10.0.0.5, 10.1.0.0/16) of the "
        "proxies whose BRIDGE_IDENTITY_HEADER counts; from any other peer it is ignored.",
    )
    http_concurrency: int = Field(
        default=32, ge=1, le=10_000, description="HTTP calls a worker makes at once."
    )
    http_lease_seconds: int = Field(
        default=10,
        ge=1,
        le=3600,
        description="How long a worker's claim on an HTTP call lasts unless renewed: the calls of "
        "a worker that died are made again after it.",
    )
    smtp_host: str | None = Field(
        default=None,
        description="SMTP server that approval mails go through. Unset: mail deliveries fail "
        "with that reason (webhooks and the approvals topic still work).",
    )
    smtp_port: int = Field(default=25, ge=1, le=65535, description="Its port (587: STARTTLS).")
    smtp_security: Literal["auto", "starttls", "tls", "none"] = Field(
        default="auto",
        description="auto: STARTTLS when the server offers it; starttls: required; tls: TLS from "
        "the first byte (port 465); none: plain text.",
    )
    smtp_username: str | None = Field(default=None, description="SMTP login, if it needs one.")
    smtp_password: SecretStr | None = Field(default=None, description="SMTP password.")
    smtp_from: str = Field(
        default="bridge@localhost", max_length=320, description="The From address of the mails."
    )
    smtp_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        le=300,
        description="Bounds each SMTP conversation and webhook post: a server that hangs fails "
        "that try, which is retried later.",
    )
    notify_webhook_urls: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Webhooks (comma-separated URLs) told of every approval, besides those a "
        "step names. Their hosts must be allowed by BRIDGE_HTTP_ALLOWED_HOSTS.",
    )
    notify_webhook_format: Literal["slack", "teams", "json"] = Field(
        default="json", description="The body those webhooks get."
    )
    delivery_max_attempts: int = Field(
        default=8,
        ge=1,
        le=100,
        description="Tries of a mail or webhook post before it ends as failed (in the process "
        "history, the metrics and the dead-letter topic).",
    )
    delivery_backoff_seconds: float = Field(
        default=5.0, gt=0, le=3600, description="The pause after a first failed try; it doubles."
    )
    delivery_backoff_max_seconds: float = Field(
        default=900.0, gt=0, le=86_400, description="The longest pause between two tries."
    )
    delivery_concurrency: int = Field(
        default=8, ge=1, le=1000, description="Mails and webhook posts a worker sends at once."
    )
    log_level: str = "INFO"
    log_format: Literal["text", "json"] = Field(
        default="text", description="text for people, json for log collectors."
    )
    tracing_exporter: Literal["auto", "otlp", "console", "none"] = Field(
        default="auto",
        description="Where OpenTelemetry spans go. auto: OTLP over HTTP when "
        "OTEL_EXPORTER_OTLP_ENDPOINT (or ..._TRACES_ENDPOINT) is set, else none. With none, "
        "trace context is still passed on from events and requests to the commands.",
    )
    otlp_endpoint: str | None = Field(
        default=None,
        validation_alias=AliasChoices(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"
        ),
        description="The standard OpenTelemetry variable; the exporter reads the other "
        "OTEL_EXPORTER_OTLP_* variables (headers, timeout, certificates) itself.",
    )

    @field_validator("api_admin_tokens", "api_read_tokens", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return [token.strip() for token in value.split(",") if token.strip()]
        return value

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _networks(cls, value: object) -> object:
        if isinstance(value, str):
            value = [item.strip() for item in value.split(",") if item.strip()]
        if isinstance(value, list):
            for item in value:
                try:
                    ipaddress.ip_network(str(item), strict=False)
                except ValueError:
                    raise ValueError(
                        f"{item!r} is not an IP address or network (10.0.0.5, 10.1.0.0/16)"
                    ) from None
        return value

    @field_validator("http_allowed_hosts", mode="before")
    @classmethod
    def _host_patterns(cls, value: object) -> object:
        if isinstance(value, str):
            value = [pattern.strip() for pattern in value.split(",") if pattern.strip()]
        if isinstance(value, list):
            for pattern in value:
                if not isinstance(pattern, str) or any(c in pattern for c in "/@ ?#"):
                    raise ValueError(
                        f"{pattern!r} is not a host pattern (host, host:port, *.domain or *)"
                    )
        return value

    @field_validator("notify_webhook_urls", mode="before")
    @classmethod
    def _webhook_urls(cls, value: object) -> object:
        if isinstance(value, str):
            value = [url.strip() for url in value.split(",") if url.strip()]
        if isinstance(value, list):
            for url in value:
                problem = url_problem(url)
                if problem is not None:
                    raise ValueError(f"a webhook URL {problem}")
        return value

    @field_validator("smtp_from")
    @classmethod
    def _sender(cls, value: str) -> str:
        problem = address_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value

    @field_validator("kafka_instance_id")
    @classmethod
    def _instance_id(cls, value: str | None) -> str | None:
        return (value.strip() or None) if value is not None else None

    @model_validator(mode="after")
    def _heartbeat_below_session(self) -> Settings:
        session = self.kafka_session_timeout_ms
        heartbeat = self.kafka_heartbeat_interval_ms
        if session is not None and heartbeat is not None and heartbeat >= session:
            raise ValueError(
                f"kafka_heartbeat_interval_ms ({heartbeat}) must be below "
                f"kafka_session_timeout_ms ({session})"
            )
        return self

    @field_validator("database_url")
    @classmethod
    def _known_driver(cls, value: str) -> str:
        if not value.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError(
                "database_url must start with sqlite+aiosqlite:// or postgresql+asyncpg://"
            )
        return value

    def consumer_group_timing(self, *, embedded_broker: bool) -> tuple[int, int, int]:
        """Session timeout, heartbeat interval and rebalance timeout (ms) of the workers'
        consumer.

        The embedded broker (Tansu) holds a JoinGroup for about half the session timeout
        (rounded up to whole seconds) and only notices a dead member once its session ran out,
        so a short session is what makes fail-over fast there; Apache Kafka needs at least its
        ``group.min.session.timeout.ms``.
        """
        session = self.kafka_session_timeout_ms or (2000 if embedded_broker else 10_000)
        heartbeat = self.kafka_heartbeat_interval_ms or max(100, session // 3)
        if heartbeat >= session:
            heartbeat = max(100, session // 3)
        return session, heartbeat, 2 * session

    def consumer_instance_id(self) -> str | None:
        """The static membership id, ``{hostname}`` filled in; None for dynamic membership."""
        if not self.kafka_instance_id:
            return None
        return self.kafka_instance_id.replace("{hostname}", socket.gethostname())

    def open_api_refusal(self) -> str | None:
        """Why ``bridge web`` must not start as configured: listening beyond this machine with
        no API tokens would let anyone who reaches it start, stop and redrive processes."""
        if self.api_admin_tokens or self.api_open or _loopback(self.http_host):
            return None
        return (
            f"bridge web would listen on {self.http_host} with no API tokens: anyone who "
            "reaches it could start, stop and redrive processes and deploy definitions. Set "
            "BRIDGE_API_ADMIN_TOKENS (and BRIDGE_API_READ_TOKENS), listen on 127.0.0.1 "
            "(BRIDGE_HTTP_HOST), or set BRIDGE_API_OPEN=true where nothing else can reach it."
        )

    @property
    def base_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        host = "127.0.0.1" if self.http_host in ("0.0.0.0", "::") else self.http_host
        return f"http://{host}:{self.http_port}"

    def masked(self) -> dict[str, Any]:
        """The effective configuration, secrets masked, for printing at start. Webhook URLs
        show their host only: a Slack or Teams webhook's path is its secret."""
        found = self.model_dump(mode="json")
        found["notify_webhook_urls"] = [
            f"{urlsplit(url).scheme}://{urlsplit(url).hostname}/…"
            for url in self.notify_webhook_urls
        ]
        return found


def _loopback(host: str) -> bool:
    """Whether ``host`` is this machine only (a name that resolves elsewhere counts as not)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
