"""Wiring: opens the database, deploys definitions and builds the engine (``Core``) and the web
endpoint from ``Settings``; bridge.worker builds the worker half on a ``Core``."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from bridge.announce import announce as announce_work
from bridge.asl.errors import DefinitionError
from bridge.asl.notify import Webhook
from bridge.definitions import EXAMPLES_DIR, Registry, definition_files, deploy, load_file
from bridge.engine import Engine, EngineConfig
from bridge.lag import ConsumerLag
from bridge.settings import Settings
from bridge.store.database import is_postgres, open_database
from bridge.store.revision import at_head
from bridge.store.upkeep import check_vacuum
from bridge.tracing import Tracing, from_settings

log = logging.getLogger(__name__)


def definitions_folder(settings: Settings) -> Path:
    """The configured folder, else ./definitions when it exists, else the shipped examples."""
    if settings.definitions_dir is not None:
        return settings.definitions_dir
    local = Path("definitions")
    return local if local.is_dir() else EXAMPLES_DIR


@dataclass
class Core:
    settings: Settings
    db: AsyncEngine
    registry: Registry
    engine: Engine
    problems: list[str] = field(default_factory=list)

    async def close(self) -> None:
        await self.db.dispose()
        # Flushes the spans not exported yet.
        self.engine.tracing.shutdown()


async def open_core(
    settings: Settings, *, deploy_definitions: bool = True, tracing: Tracing | None = None
) -> Core:
    """Open the database (migrating it when configured), deploy definitions, build the engine.

    ``tracing``: the tracer to use; by default the one the settings ask for.
    """
    db = open_database(settings.database_url)
    if settings.database_migrate and not await at_head(db):
        # Imported here: Alembic is needed only when there is something to migrate.
        from bridge.store.migrate import upgrade

        await upgrade(db)
    try:
        warning = await check_vacuum(db)
    except DBAPIError as exc:  # advice only: never a reason not to start
        log.info("could not read the database's vacuum settings: %s", exc)
    else:
        if warning is not None:
            log.warning(warning)
    registry = Registry()
    problems: list[str] = []
    if deploy_definitions:
        folder = definitions_folder(settings)
        documents = []
        for path in definition_files(folder) if folder.is_dir() else []:
            try:
                documents.append(load_file(path))
            except DefinitionError as exc:
                problems.extend(exc.problems)
                log.error("skipping an invalid definition:\n  %s", "\n  ".join(exc.problems))
        await deploy(db, documents)
    await registry.refresh(db)
    config = EngineConfig(
        base_url=settings.base_url,
        approvals_topic=settings.kafka_approvals_topic,
        dlq_topic=settings.kafka_dlq_topic,
        lifecycle_topic=settings.kafka_lifecycle_topic,
        lifecycle_steps=settings.lifecycle_steps,
        max_event_bytes=settings.max_event_bytes,
        max_event_depth=settings.max_event_depth,
        buffer_seconds=settings.event_buffer_seconds,
        log_processes=settings.log_processes,
        retention_days=settings.retention_days,
        notify_webhooks=tuple(
            Webhook(url=url, format=settings.notify_webhook_format)
            for url in settings.notify_webhook_urls
        ),
    )
    if tracing is None:
        tracing = from_settings(settings.tracing_exporter, settings.otlp_endpoint, "bridge")
    engine = Engine(db, registry, config, tracing=tracing)
    return Core(settings, db, registry, engine, problems)


class Web:
    def __init__(
        self,
        core: Core,
        host: str,
        port: int,
        *,
        announce: bool = False,
        kafka_bootstrap: str | None = None,
    ) -> None:
        """``announce``: the pollers that carry out what this process commits run in other
        processes; on PostgreSQL each writing transaction tells them (see bridge.announce).
        ``kafka_bootstrap``: where ``POST /events`` produces (default: the settings' brokers;
        ``bridge dev`` passes its embedded broker)."""
        self.core = core
        if announce and is_postgres(core.db):
            core.engine.announce = announce_work
        self.host = host
        self.port = port
        settings = core.settings
        # Imported here: the pages and the API are the web's, not a worker's.
        from approvals.app import build_app as build_web_app
        from approvals.identity import ProxyIdentity

        self.app = build_web_app(
            core.engine,
            settings.secret_key.get_secret_value(),
            admin_tokens=[token.get_secret_value() for token in settings.api_admin_tokens],
            read_tokens=[token.get_secret_value() for token in settings.api_read_tokens],
            kafka_bootstrap=kafka_bootstrap or settings.kafka_bootstrap,
            identity=ProxyIdentity.of(
                settings.identity_header,
                settings.trusted_proxies,
                settings.identity_groups_header,
            ),
        )
        self.runner = web.AppRunner(self.app, access_log=None)
        #: A web process of its own reads the consumer lag itself, when it knows the brokers.
        self.lag: ConsumerLag | None = None
        metrics = core.engine.metrics
        if metrics.lag_source is None and settings.kafka_bootstrap:
            self.lag = ConsumerLag(
                settings.kafka_bootstrap,
                settings.kafka_group_id,
                lambda: [*core.registry.topics(), settings.kafka_replies_topic],
            )
            metrics.lag_source = self.lag

    async def start(self) -> None:
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.host, self.port)
        await site.start()

    async def stop(self) -> None:
        await self.runner.cleanup()
        if self.lag is not None:
            await self.lag.close()
