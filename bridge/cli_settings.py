"""Settings for the command line: read once per command, a bad value a usage error."""

from __future__ import annotations

from typing import Any

import click
from pydantic import ValidationError

from bridge.settings import Settings


def settings_of(**overrides: Any) -> Settings:
    """The settings from the environment, with the command's options (None: not given) over
    them; an invalid value is a usage error naming its variable."""
    try:
        return Settings(**{key: value for key, value in overrides.items() if value is not None})
    except ValidationError as exc:
        problems = "; ".join(
            f"BRIDGE_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors()
        )
        raise click.UsageError(f"invalid configuration: {problems}") from None


def bootstrap_of(settings: Settings) -> str:
    """The cluster BRIDGE_KAFKA_BOOTSTRAP names, else the broker ``bridge dev`` starts (as the
    other commands default to its web endpoint)."""
    return settings.kafka_bootstrap or f"127.0.0.1:{settings.embedded_broker_port}"
