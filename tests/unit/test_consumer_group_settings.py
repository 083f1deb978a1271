"""The fail-over settings (session timeout, heartbeat, static instance id) reach the consumer the
faust app builds for its workers. No broker: the consumer is built, not started."""

from __future__ import annotations

import socket
from typing import Any, cast

import pytest
from aiokafka import AIOKafkaConsumer
from pydantic import ValidationError

from bridge.engine import Engine
from bridge.settings import Settings
from processors.app import build_app
from processors.transport import PromptTableManager


def worker_consumer(settings: Settings, *, embedded_broker: bool = False) -> AIOKafkaConsumer:
    # The agents only use the engine when records arrive; none do here.
    app = build_app(
        settings,
        cast(Engine, None),
        "127.0.0.1:9",
        ["orders.events"],
        embedded_broker=embedded_broker,
    )
    thread: Any = app.consumer._new_consumer_thread()
    consumer: AIOKafkaConsumer = thread._create_worker_consumer(app.transport)
    return consumer


def timing(consumer: AIOKafkaConsumer) -> tuple[int, int, int, str | None, int]:
    c: Any = consumer
    return (
        c._session_timeout_ms,
        c._heartbeat_interval_ms,
        c._rebalance_timeout_ms,
        c._group_instance_id,
        c._fetch_max_wait_ms,
    )


def settings(**values: Any) -> Settings:
    return Settings(kafka_group_id="test-group-settings", **values)


@pytest.fixture(autouse=True)
def _no_bridge_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "BRIDGE_KAFKA_SESSION_TIMEOUT_MS",
        "BRIDGE_KAFKA_HEARTBEAT_INTERVAL_MS",
        "BRIDGE_KAFKA_INSTANCE_ID",
        "BRIDGE_KAFKA_FETCH_MAX_WAIT_MS",
    ):
        monkeypatch.delenv(name, raising=False)


async def test_embedded_broker_defaults_to_a_short_session() -> None:
    consumer = worker_consumer(settings(), embedded_broker=True)
    assert timing(consumer) == (2000, 666, 4000, None, 10)


async def test_a_named_cluster_keeps_the_ten_second_session() -> None:
    consumer = worker_consumer(settings())
    assert timing(consumer) == (10_000, 3333, 20_000, None, 10)


async def test_explicit_settings_and_the_static_instance_id() -> None:
    chosen = settings(
        kafka_session_timeout_ms=6000,
        kafka_heartbeat_interval_ms=1500,
        kafka_instance_id="worker-{hostname}",
        kafka_fetch_max_wait_ms=500,
    )
    consumer = worker_consumer(chosen, embedded_broker=True)
    assert timing(consumer) == (6000, 1500, 12_000, f"worker-{socket.gethostname()}", 500)


async def test_the_app_registers_its_tables_without_faust_s_pause() -> None:
    app = build_app(settings(), cast(Engine, None), "127.0.0.1:9", [])
    assert isinstance(app.tables, PromptTableManager)


def test_an_empty_instance_id_means_dynamic_membership() -> None:
    assert settings(kafka_instance_id="  ").consumer_instance_id() is None
    assert settings().consumer_instance_id() is None


def test_the_heartbeat_must_be_below_the_session_timeout() -> None:
    with pytest.raises(ValidationError, match="below"):
        settings(kafka_session_timeout_ms=3000, kafka_heartbeat_interval_ms=3000)


@pytest.mark.parametrize(
    ("environment", "refused"),
    [
        ({}, False),
        ({"BRIDGE_HTTP_HOST": "::1"}, False),
        ({"BRIDGE_HTTP_HOST": "localhost"}, False),
        ({"BRIDGE_HTTP_HOST": "0.0.0.0"}, True),
        ({"BRIDGE_HTTP_HOST": "10.1.2.3"}, True),
        ({"BRIDGE_HTTP_HOST": "web.example.com"}, True),
        ({"BRIDGE_HTTP_HOST": "0.0.0.0", "BRIDGE_API_ADMIN_TOKENS": "t"}, False),
        ({"BRIDGE_HTTP_HOST": "0.0.0.0", "BRIDGE_API_OPEN": "true"}, False),
    ],
)
def test_web_refuses_an_open_api_beyond_this_machine(
    environment: dict[str, str], refused: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    for variable in ("BRIDGE_HTTP_HOST", "BRIDGE_API_ADMIN_TOKENS", "BRIDGE_API_OPEN"):
        monkeypatch.delenv(variable, raising=False)
    for variable, value in environment.items():
        monkeypatch.setenv(variable, value)
    refusal = Settings().open_api_refusal()
    assert (refusal is not None) == refused
    if refused:
        assert refusal is not None and "BRIDGE_API_ADMIN_TOKENS" in refusal
