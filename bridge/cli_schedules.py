"""``bridge schedules``: list, show, make, pause, resume and delete schedules (over the API)."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import click

from bridge.cli_api import api_call, json_flag, show, token_option, url_option


@click.group("schedules")
def schedules() -> None:
    """Schedules that start processes: cron, rate or one-off (over the HTTP API)."""


def _line(schedule: dict[str, Any]) -> None:
    state = "paused" if schedule["paused"] else f"next {schedule['nextRunAt'] or 'none'}"
    last = schedule.get("lastRun") or {}
    done = f", last {last['result']} {last['scheduledAt']}" if last else ""
    click.echo(
        f"{schedule['id']}  {schedule['definition']}  {schedule['when']}  {state}"
        f"  ({schedule['started']} started{done})"
    )


def _details(schedule: dict[str, Any]) -> None:
    _line(schedule)
    for moment in schedule["nextRuns"]:
        click.echo(f"  next: {moment}")
    if schedule.get("lastRun") and schedule["lastRun"].get("note"):
        click.echo(f"  last run: {schedule['lastRun']['note']}")


def _path(schedule_id: str) -> str:
    return f"/schedules/{quote(schedule_id, safe='')}"


@schedules.command("list")
@click.option("--definition", help="Only those of this definition.")
@url_option
@token_option
@json_flag
def schedules_list(
    definition: str | None, url: str | None, token: str | None, as_json: bool
) -> None:
    """Every schedule, with its next run."""
    query = f"?definition={quote(definition, safe='')}" if definition else ""
    found = api_call(url, token, "GET", f"/schedules{query}")

    def lines(value: dict[str, Any]) -> None:
        for item in value["items"]:
            _line(item)

    show(found, as_json, lines)


@schedules.command("show")
@click.argument("schedule_id")
@url_option
@token_option
@json_flag
def schedules_show(schedule_id: str, url: str | None, token: str | None, as_json: bool) -> None:
    """One schedule, its next runs and what its last tick did."""
    show(api_call(url, token, "GET", _path(schedule_id)), as_json, _details)


@schedules.command("put")
@click.argument("schedule_id")
@click.option("--definition", required=True, help="What it starts: NAME, NAME:VERSION, NAME:ALIAS.")
@click.option("--cron", help="Five fields or a nickname such as @daily.")
@click.option("--time-zone", help="The cron's IANA time zone (default UTC).")
@click.option("--every", "rate_seconds", type=int, help="Every so many seconds.")
@click.option("--at", help="Once, at this RFC 3339 timestamp.")
@click.option("--input", "input_json", help="Each process's input, as JSON (default {}).")
@click.option(
    "--overlap",
    type=click.Choice(["Skip", "Allow", "BufferOne"]),
    default="Skip",
    show_default=True,
    help="When the previous process still runs.",
)
@click.option(
    "--catch-up",
    type=click.Choice(["Skip", "RunOnce"]),
    default="RunOnce",
    show_default=True,
    help="Ticks missed while no worker ran.",
)
@click.option("--paused", is_flag=True, help="Make it paused.")
@click.option("--description", default="", help="What it is for.")
@url_option
@token_option
@json_flag
def schedules_put(schedule_id: str, **options: Any) -> None:
    """Make or change the schedule SCHEDULE_ID."""
    try:
        given = None if options["input_json"] is None else json.loads(options["input_json"])
    except ValueError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="--input") from None
    body = {
        "definition": options["definition"],
        "cron": options["cron"],
        "timeZone": options["time_zone"],
        "rateSeconds": options["rate_seconds"],
        "at": options["at"],
        "input": given,
        "overlap": options["overlap"],
        "catchUp": options["catch_up"],
        "paused": options["paused"],
        "description": options["description"],
    }
    body = {key: value for key, value in body.items() if value is not None}
    found = api_call(options["url"], options["token"], "PUT", _path(schedule_id), body)
    show(found, options["as_json"], _details)


@schedules.command("pause")
@click.argument("schedule_id")
@click.option("--note", help="Why: shown with the schedule.")
@url_option
@token_option
@json_flag
def schedules_pause(
    schedule_id: str, note: str | None, url: str | None, token: str | None, as_json: bool
) -> None:
    """Pause: its ticks start nothing until it is resumed."""
    body = {"note": note} if note else {}
    show(api_call(url, token, "POST", f"{_path(schedule_id)}/pause", body), as_json, _line)


@schedules.command("resume")
@click.argument("schedule_id")
@url_option
@token_option
@json_flag
def schedules_resume(schedule_id: str, url: str | None, token: str | None, as_json: bool) -> None:
    """Resume from the next tick after now."""
    show(api_call(url, token, "POST", f"{_path(schedule_id)}/resume"), as_json, _line)


@schedules.command("delete")
@click.argument("schedule_id")
@url_option
@token_option
def schedules_delete(schedule_id: str, url: str | None, token: str | None) -> None:
    """Delete a schedule made through the API (the processes it started stay)."""
    api_call(url, token, "DELETE", _path(schedule_id))
    click.echo(f"deleted {schedule_id}")
