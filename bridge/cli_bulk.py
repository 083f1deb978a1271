"""``bridge bulk``: stop or redrive every process a filter matches, and follow the operation."""

from __future__ import annotations

import time
from typing import Any

import click

from bridge.cli_api import api_call, json_flag, show, token_option, url_option


@click.group("bulk")
def bulk() -> None:
    """Bulk operations: stop or redrive every process a filter matches (over the HTTP API)."""


def _line(operation: dict[str, Any]) -> None:
    handled = operation["applied"] + operation["skipped"]
    click.echo(
        f"{operation['id']}  {operation['action']:<7}  {operation['status']:<9}  "
        f"{handled}/{operation['total']} ({operation['applied']} applied, "
        f"{operation['skipped']} skipped)  {operation['reason']}"
    )


def _filter_options(command: Any) -> Any:
    for option in reversed(
        [
            click.option("--definition", help="A definition name."),
            click.option("--version", type=int, help="A definition version."),
            click.option("--status", help="Only this status (default: all the action applies to)."),
            click.option("--key", "correlation_key", help="A correlation key."),
            click.option("--since", help="Started at or after (RFC 3339)."),
            click.option("--until", help="Started before (RFC 3339)."),
            click.option(
                "--where",
                multiple=True,
                help="A search attribute filter, repeatable: customerId=abc, amount>=100.",
            ),
            click.option("--reason", required=True, help="Why: kept with the operation."),
            click.option("--rate", type=int, default=50, show_default=True, help="Per second."),
            click.option("--wait", is_flag=True, help="Follow it until it ends."),
        ]
    ):
        command = option(command)
    return command


def _ask(action: str, options: dict[str, Any]) -> None:
    given = {
        "definition": options["definition"],
        "version": options["version"],
        "status": options["status"],
        "correlationKey": options["correlation_key"],
        "startedAfter": options["since"],
        "startedBefore": options["until"],
        "where": list(options["where"]) or None,
    }
    body = {
        "action": action,
        "filter": {key: value for key, value in given.items() if value is not None},
        "reason": options["reason"],
        "ratePerSecond": options["rate"],
    }
    url, token = options["url"], options["token"]
    operation = api_call(url, token, "POST", "/bulk-operations", body)
    while options["wait"] and operation["status"] == "RUNNING":
        time.sleep(1)
        operation = api_call(url, token, "GET", f"/bulk-operations/{operation['id']}")
        if not options["as_json"]:
            _line(operation)
    show(operation, options["as_json"], _line)


@bulk.command("stop")
@_filter_options
@url_option
@token_option
@json_flag
def bulk_stop(**options: Any) -> None:
    """Stop every running process the filter matches (ABORTED, with the reason as cause)."""
    _ask("stop", options)


@bulk.command("redrive")
@_filter_options
@url_option
@token_option
@json_flag
def bulk_redrive(**options: Any) -> None:
    """Redrive every failed, timed-out or aborted process the filter matches."""
    _ask("redrive", options)


@bulk.command("list")
@url_option
@token_option
@json_flag
def bulk_list(url: str | None, token: str | None, as_json: bool) -> None:
    """The newest bulk operations."""
    found = api_call(url, token, "GET", "/bulk-operations")

    def lines(value: dict[str, Any]) -> None:
        for item in value["items"]:
            _line(item)

    show(found, as_json, lines)


@bulk.command("show")
@click.argument("operation_id")
@url_option
@token_option
@json_flag
def bulk_show(operation_id: str, url: str | None, token: str | None, as_json: bool) -> None:
    """One bulk operation and its progress."""
    show(api_call(url, token, "GET", f"/bulk-operations/{operation_id}"), as_json, _line)


@bulk.command("cancel")
@click.argument("operation_id")
@url_option
@token_option
@json_flag
def bulk_cancel(operation_id: str, url: str | None, token: str | None, as_json: bool) -> None:
    """Cancel a running bulk operation; what it did stays done."""
    found = api_call(url, token, "POST", f"/bulk-operations/{operation_id}/cancel")
    show(found, as_json, _line)
