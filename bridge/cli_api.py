"""What the commands that talk to the HTTP API share: their options, the call, the output."""

from __future__ import annotations

import json
from typing import Any

import click

url_option = click.option(
    "--url", envvar="BRIDGE_URL", help="The web endpoint (default: 127.0.0.1:8080)."
)
token_option = click.option(
    "--token", envvar="BRIDGE_TOKEN", help="An API token, if the API needs one."
)
json_flag = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


def api_call(url: str | None, token: str | None, method: str, path: str, body: Any = None) -> Any:
    from bridge.client import ApiError, Client

    try:
        return Client(url, token).call(method, path, body)
    except ApiError as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(f"cannot reach the bridge: {exc}") from None


def show(value: Any, as_json: bool, line: Any) -> None:
    if as_json:
        click.echo(json.dumps(value, indent=2))
    else:
        line(value)
