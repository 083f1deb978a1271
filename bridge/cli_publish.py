"""``bridge publish``: events to a topic, through Kafka or through the bridge's web endpoint."""

from __future__ import annotations

import asyncio
import json
import sys

import click

from bridge.cli_settings import bootstrap_of, settings_of


@click.command("publish")
@click.argument("topic")
@click.argument("event", required=False)
@click.option("--key", help="The record key (e.g. the correlation key).")
@click.option(
    "--header",
    "headers",
    multiple=True,
    metavar="NAME=VALUE",
    help="A record header (with --http: an HTTP header, e.g. ce-id=... for a CloudEvent).",
)
@click.option(
    "--http",
    "over_http",
    is_flag=True,
    help="Post to the bridge's web endpoint (POST /events at BRIDGE_URL, with BRIDGE_TOKEN) "
    "instead of talking to Kafka.",
)
def publish(
    topic: str, event: str | None, key: str | None, headers: tuple[str, ...], over_http: bool
) -> None:
    """Publish EVENT (JSON), or one JSON event per line of standard input, to TOPIC.

    A Kafka client for trying things out: it talks to BRIDGE_KAFKA_BOOTSTRAP, else to the broker
    `bridge dev` starts. Any Kafka producer does the same in production. With --http it needs no
    Kafka access: the bridge's web endpoint produces each event and says where to follow it.
    """
    lines = [event] if event is not None else [line for line in sys.stdin if line.strip()]
    values: list[bytes] = []
    for number, line in enumerate(lines, start=1):
        try:
            json.loads(line)
        except ValueError as exc:
            where = "EVENT" if event is not None else f"line {number}"
            raise click.UsageError(f"{where} is not JSON: {exc}") from None
        values.append(line.strip().encode())
    pairs: list[tuple[str, str]] = []
    for header in headers:
        name, sep, value = header.partition("=")
        if not sep or not name:
            raise click.UsageError(f"--header {header!r}: write NAME=VALUE")
        pairs.append((name, value))
    if over_http:
        _publish_over_http(topic, values, key, dict(pairs))
    else:
        _publish_to_kafka(topic, values, key, [(name, value.encode()) for name, value in pairs])


def _publish_over_http(
    topic: str, values: list[bytes], key: str | None, headers: dict[str, str]
) -> None:
    from urllib.parse import urlencode

    from bridge.client import ApiError, Client

    client = Client()
    query = urlencode({"topic": topic, **({"key": key} if key else {})})
    for value in values:
        try:
            accepted = client.call("POST", f"/events?{query}", json.loads(value), headers)
        except ApiError as exc:
            raise click.ClickException(str(exc)) from None
        except OSError as exc:
            raise click.ClickException(f"no bridge answers at {client.url}: {exc}") from None
        click.echo(f"{accepted['eventId']}  {accepted['explanation']}")
    click.echo(f"published {len(values)} event(s) to {topic} through {client.url}")


def _publish_to_kafka(
    topic: str, values: list[bytes], key: str | None, pairs: list[tuple[str, bytes]]
) -> None:
    from aiokafka import AIOKafkaProducer
    from aiokafka.errors import KafkaConnectionError

    bootstrap = bootstrap_of(settings_of())

    async def send() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False)
        try:
            await producer.start()
        except KafkaConnectionError:
            await producer.stop()
            raise click.ClickException(
                f"no Kafka broker answers at {bootstrap}: start `bridge dev`, or name the "
                "cluster with BRIDGE_KAFKA_BOOTSTRAP"
            ) from None
        try:
            for value in values:
                await producer.send_and_wait(
                    topic, value, key=key.encode() if key else None, headers=pairs or None
                )
        finally:
            await producer.stop()

    asyncio.run(send())
    click.echo(f"published {len(values)} event(s) to {topic} at {bootstrap}")
