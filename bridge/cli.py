"""The ``bridge`` command: dev, worker, web, db upgrade, outbox, validate, run, dlq, processes.

Also runs as ``python -m bridge`` (Linux's iproute2 ships another ``bridge`` command).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import click

from bridge import heap, lean_imports
from bridge.asl.errors import DefinitionError
from bridge.cli_api import api_call as _call
from bridge.cli_api import json_flag as _json_flag
from bridge.cli_api import show as _show
from bridge.cli_api import token_option as _token
from bridge.cli_api import url_option as _url
from bridge.cli_bulk import bulk
from bridge.cli_publish import publish
from bridge.cli_purge import purge
from bridge.cli_schedules import schedules
from bridge.cli_settings import bootstrap_of as _bootstrap
from bridge.cli_settings import settings_of as _settings
from bridge.cli_test_state import test_state_command
from bridge.settings import Settings

# Every bridge process starts here: its SQLAlchemy comes without the ORM (6 MiB each).
lean_imports.install()


def _logging(settings: Settings) -> None:
    from bridge.logs import configure

    configure(settings.log_level, settings.log_format)


async def _until_signalled(settings: Settings) -> None:
    """Serve until SIGINT or SIGTERM. The process has started: what it made so far lives as long
    as it does, which ``heap.settle`` tells Python's garbage collector."""
    heap.settle(settings.gc_young_threshold)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


@click.group()
@click.version_option(package_name="bridge")
def main() -> None:
    """Kafka domain events into Amazon States Language processes, with callbacks and approvals."""


@main.command()
@click.option(
    "--kafka", help="Bootstrap servers of an existing cluster (default: start the embedded broker)."
)
@click.option("--port", type=int, help="HTTP port (default 8080).")
@click.option(
    "--definitions", type=click.Path(file_okay=False, path_type=Path), help="Folder of definitions."
)
@click.option("--database", help="SQLAlchemy URL (default: SQLite file bridge.db).")
def dev(
    kafka: str | None, port: int | None, definitions: Path | None, database: str | None
) -> None:
    """Everything in one process: embedded broker, SQLite, workers and web endpoint."""
    settings = _settings(
        kafka_bootstrap=kafka,
        http_port=port,
        definitions_dir=definitions,
        database_url=database,
        # The demo shows each process's flow unless told otherwise.
        log_processes=None if "BRIDGE_LOG_PROCESSES" in os.environ else True,
    )
    refusal = settings.open_api_refusal()
    if refusal is not None:
        raise click.ClickException(refusal)
    _logging(settings)
    asyncio.run(_dev(settings))


async def _dev(settings: Settings) -> None:
    from bridge.bootstrap import Web, definitions_folder, open_core
    from bridge.broker import EmbeddedBroker
    from bridge.worker import Worker

    broker = None
    bootstrap = settings.kafka_bootstrap
    if bootstrap is None:
        broker = EmbeddedBroker(settings.embedded_broker_port)
        await broker.start_async()
        bootstrap = broker.bootstrap
    core = worker = web = None
    try:
        core = await open_core(settings)
        worker = Worker(core, bootstrap, embedded_broker=broker is not None)
        await worker.start()
        web = Web(core, settings.http_host, settings.http_port, kafka_bootstrap=bootstrap)
        await web.start()
        _print_banner(settings, core, bootstrap, broker is not None, definitions_folder(settings))
        await _until_signalled(settings)
        click.echo("stopping...", err=True)
    finally:
        if web:
            await web.stop()
        if worker:
            await worker.stop()
        if core:
            await core.close()
        if broker:
            broker.stop()


def _print_banner(
    settings: Settings, core: Any, bootstrap: str, embedded: bool, folder: Path
) -> None:
    lines = [
        "bridge is running",
        f"  kafka:        {bootstrap}{' (embedded broker, in memory)' if embedded else ''}",
        f"  database:     {settings.database_url}",
        f"  web:          {settings.base_url}  (status: {settings.base_url}/processes)",
        f"  definitions:  {folder}",
    ]
    for name in core.registry.names():
        definition = core.registry.latest(name)
        triggers = (
            ", ".join(f"{t.event_type} on {t.topic}" for t in definition.triggers) or "no triggers"
        )
        lines.append(f"    - {name} v{definition.version} ({triggers})")
    for problem in core.problems:
        lines.append(f"    ! {problem}")
    lines.append("  Ctrl-C stops it.")
    click.echo("\n".join(lines))


@main.command()
def worker() -> None:
    """Stream processors, outbox relay, timers and HTTP calls (production half one)."""
    settings = _settings()
    if settings.kafka_bootstrap is None:
        raise click.UsageError("bridge worker needs BRIDGE_KAFKA_BOOTSTRAP")
    _logging(settings)
    asyncio.run(_worker(settings, settings.kafka_bootstrap))


async def _worker(settings: Settings, bootstrap: str) -> None:
    from bridge.bootstrap import open_core
    from bridge.worker import Worker

    core = await open_core(settings)
    from bridge.worker_health import PortTaken

    worker = Worker(core, bootstrap, listen=True, serve_health=True)
    try:
        try:
            await worker.start()
        except PortTaken as exc:
            raise click.ClickException(str(exc)) from None
        click.echo(
            f"bridge worker consuming {', '.join(worker.topics) or 'no event topics'} and "
            f"{settings.kafka_replies_topic} from {bootstrap}"
        )
        if worker.health is not None:
            click.echo(
                f"probes and metrics on http://{settings.worker_http_host}:{worker.health.port}"
                " (/livez, /readyz, /metrics)"
            )
        await _until_signalled(settings)
    finally:
        await worker.stop()
        await core.close()


@main.command()
@click.option("--port", type=int, help="HTTP port (default 8080).")
def web(port: int | None) -> None:
    """The HTTP endpoint: approvals, task callbacks, process status (production half two)."""
    settings = _settings(http_port=port)
    refusal = settings.open_api_refusal()
    if refusal is not None:
        raise click.ClickException(refusal)
    _logging(settings)
    asyncio.run(_web(settings))


async def _web(settings: Settings) -> None:
    from bridge.bootstrap import Web, open_core

    core = await open_core(settings)
    server = Web(core, settings.http_host, settings.http_port, announce=True)
    try:
        await server.start()
        click.echo(f"bridge web listening on http://{settings.http_host}:{server.port}")
        await _until_signalled(settings)
    finally:
        await server.stop()
        await core.close()


@main.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Apply the database migrations."""
    settings = _settings()

    async def run() -> None:
        from bridge.store.database import open_database
        from bridge.store.migrate import current_revision, upgrade

        db = open_database(settings.database_url)
        try:
            await upgrade(db)
            click.echo(f"database at revision {await current_revision(db)}")
        finally:
            await db.dispose()

    asyncio.run(run())


@main.group()
def outbox() -> None:
    """Outbox messages parked because they can never be published: list them, retry them."""


@outbox.command("parked")
@click.option("--json", "as_json", is_flag=True, help="Print the messages as JSON.")
def outbox_parked(as_json: bool) -> None:
    """The parked messages, oldest first, with the reason (their values stay in the database)."""
    settings = _settings()

    async def run() -> list[dict[str, Any]]:
        from bridge.store import outbox as store
        from bridge.store.database import open_database, reading

        db = open_database(settings.database_url)
        try:
            async with reading(db) as conn:
                found = await store.parked(conn)
        finally:
            await db.dispose()
        return [
            {
                "messageId": m.message_id,
                "topic": m.topic,
                "key": m.key,
                "processId": m.process_id,
                "parkedAt": m.parked_at.isoformat(),
                "reason": m.reason,
            }
            for m in found
        ]

    found = asyncio.run(run())
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    for item in found:
        click.echo(f"{item['messageId']}  {item['topic']}  {item['parkedAt']}  {item['reason']}")
    click.echo(f"{len(found)} parked message(s)")


@outbox.command("retry")
@click.argument("message_ids", nargs=-1, metavar="MESSAGE_ID...")
@click.option("--all", "retry_all", is_flag=True, help="Retry every parked message.")
def outbox_retry(message_ids: tuple[str, ...], retry_all: bool) -> None:
    """Give parked messages back to the relay (after their cause is fixed, e.g. the topic created
    or the broker's size limit raised); one that still cannot be published is parked again."""
    if bool(message_ids) == retry_all:
        raise click.UsageError("name message ids or give --all")
    settings = _settings()

    async def run() -> int:
        from bridge.store import outbox as store
        from bridge.store.database import open_database

        db = open_database(settings.database_url)
        try:
            async with db.begin() as conn:
                return await store.unpark(conn, None if retry_all else message_ids)
        finally:
            await db.dispose()

    click.echo(f"{asyncio.run(run())} message(s) given back to the relay")


@main.command()
@click.argument(
    "files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def validate(files: tuple[Path, ...], as_json: bool) -> None:
    """Validate definition files; exit 1 when one is invalid."""
    from bridge.definitions import load_file

    results: list[dict[str, Any]] = []
    for path in files:
        try:
            name, _ = load_file(path)
            results.append({"file": str(path), "name": name, "valid": True, "problems": []})
        except DefinitionError as exc:
            results.append({"file": str(path), "valid": False, "problems": exc.problems})
    if as_json:
        click.echo(json.dumps(results, indent=2))
    else:
        for result in results:
            if result["valid"]:
                click.echo(f"ok       {result['file']} ({result['name']})")
            else:
                click.echo(f"invalid  {result['file']}")
                for problem in result["problems"]:
                    click.echo(f"         {problem}")
    if not all(result["valid"] for result in results):
        sys.exit(1)


@main.command("run")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--input", "input_text", help="The process input as JSON (default: {}).")
@click.option(
    "--input-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Read the process input from a JSON file.",
)
@click.option(
    "--mocks",
    "mocks_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="JSON/YAML file of mocked answers, by state name, or a Step Functions Local mock "
    "configuration (with --test-case).",
)
@click.option(
    "--test-case",
    help="The test case to run from a Step Functions Local mock configuration (--mocks).",
)
@click.option(
    "--state-machine",
    help="The state machine of that configuration (default: its only one).",
)
@click.option("--skip-waits", is_flag=True, help="Do not sleep: move a virtual clock instead.")
@click.option("--seed", type=int, help="Seed for ids, tokens and random intrinsics.")
def run_command(
    file: Path,
    input_text: str | None,
    input_file: Path | None,
    mocks_file: Path | None,
    test_case: str | None,
    state_machine: str | None,
    skip_waits: bool,
    seed: int | None,
) -> None:
    """Run a definition locally (no Kafka, no database) with mocked answers; print the result.

    Exit status: 0 when the process succeeded, 1 when it ended otherwise, 2 when the definition,
    the input or the mocks are invalid.
    """
    from typing import NoReturn

    from bridge.definitions import definition_name
    from bridge.local import MocksError, run_local

    def invalid(problems: list[str]) -> NoReturn:
        click.echo("\n".join(problems), err=True)
        sys.exit(2)

    if input_text is not None and input_file is not None:
        invalid(["--input and --input-file are exclusive"])
    try:
        text = input_file.read_text(encoding="utf-8") if input_file else input_text
        data = {} if text is None else json.loads(text)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        invalid([f"the input is not valid JSON: {exc}"])
    try:
        definition = file.read_text(encoding="utf-8")
        mocks = mocks_file.read_text(encoding="utf-8") if mocks_file else None
    except (OSError, UnicodeDecodeError) as exc:
        invalid([f"cannot be read: {exc}"])
    try:
        result = run_local(
            definition,
            data,
            mocks=mocks,
            skip_waits=skip_waits,
            name=definition_name(file),
            seed=seed,
            test_case=test_case,
            state_machine=state_machine,
        )
    except DefinitionError as exc:
        invalid([f"{file.name}: {problem}" for problem in exc.problems])
    except MocksError as exc:
        invalid([f"{mocks_file.name if mocks_file else 'mocks'}: {p}" for p in exc.problems])
    click.echo(json.dumps(result.to_dict(), indent=2, default=str))
    sys.exit(0 if result.succeeded else 1)


@main.group()
def dlq() -> None:
    """Dead letters: list them, and replay them once their cause is fixed."""


@dlq.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the letters as JSON.")
def dlq_list(as_json: bool) -> None:
    """The letters on the dead-letter topic, oldest first."""
    from bridge.dlq import BrokerUnreachable, read_letters

    settings = _settings()
    try:
        letters = asyncio.run(
            read_letters(
                _bootstrap(settings), settings.kafka_dlq_topic, settings.kafka_fetch_max_wait_ms
            )
        )
    except BrokerUnreachable as exc:
        raise click.ClickException(str(exc)) from None
    summaries = [letter.summary() for letter in letters]
    if as_json:
        click.echo(json.dumps(summaries, indent=2))
        return
    for item in summaries:
        click.echo(f"{item['partition']}/{item['offset']}  {item['source']}  {item['reason']}")
    click.echo(f"{len(summaries)} dead letter(s)")


@dlq.command("replay")
@click.argument("letters", nargs=-1, metavar="[PARTITION/]OFFSET...")
@click.option("--all", "replay_all", is_flag=True, help="Replay every letter.")
@click.option("--json", "as_json", is_flag=True, help="Print what was replayed as JSON.")
def dlq_replay(letters: tuple[str, ...], replay_all: bool, as_json: bool) -> None:
    """Publish the events of the named letters (as `bridge dlq list` names them,
    PARTITION/OFFSET; a bare OFFSET when only one partition has it), or --all, to their topics
    again."""
    from bridge.dlq import BrokerUnreachable, Letter, read_letters, replay
    from bridge.store.database import open_database

    if not letters and not replay_all:
        raise click.UsageError("name the letters as PARTITION/OFFSET, or --all")
    wanted = [_letter_ref(text) for text in letters]
    settings = _settings()
    bootstrap = _bootstrap(settings)

    async def run() -> list[dict[str, Any]]:
        found = await read_letters(
            bootstrap, settings.kafka_dlq_topic, settings.kafka_fetch_max_wait_ms
        )
        chosen: dict[tuple[int, int], Letter] = {}
        for partition, offset in wanted:
            matches = [
                letter
                for letter in found
                if letter.offset == offset and partition in (None, letter.partition)
            ]
            where = f"{partition}/{offset}" if partition is not None else str(offset)
            if not matches:
                raise click.UsageError(f"no dead letter at {where}")
            if len(matches) > 1:
                partitions = ", ".join(str(letter.partition) for letter in matches)
                raise click.UsageError(
                    f"offset {offset} is on partitions {partitions}: name it PARTITION/OFFSET"
                )
            chosen[(matches[0].partition, offset)] = matches[0]
        db = open_database(settings.database_url)
        try:
            return await replay(found if replay_all else list(chosen.values()), bootstrap, db)
        finally:
            await db.dispose()

    try:
        done = asyncio.run(run())
    except BrokerUnreachable as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps(done, indent=2))
        return
    for item in done:
        if "skipped" in item:
            click.echo(f"skipped letter {item['partition']}/{item['offset']}: {item['skipped']}")
            continue
        click.echo(
            f"replayed letter {item['partition']}/{item['offset']} to {item['topic']}"
            f" at {item['newOffset']}"
        )


def _letter_ref(text: str) -> tuple[int | None, int]:
    """``PARTITION/OFFSET`` or a bare ``OFFSET``."""
    partition, slash, offset = text.rpartition("/")
    if not offset.isdigit() or (slash and not partition.isdigit()):
        raise click.BadParameter(f"{text!r}: use PARTITION/OFFSET, like 0/17", param_hint="LETTERS")
    return (int(partition) if slash else None), int(offset)


# ---------------------------------------------------------------------------- operating over HTTP


def _process_line(process: dict[str, Any]) -> None:
    state = process.get("currentState") or process.get("lastState") or ""
    click.echo(
        f"{process['id']}  {process['status']:<9}  {process['definition']} v{process['version']}"
        f"  {process.get('correlationKey') or '-'}  {state}"
        + (f"  {process['error']}: {process['cause']}" if process.get("error") else "")
        + "".join(
            f"  {name}={json.dumps(value, ensure_ascii=False)}"
            for name, value in sorted((process.get("searchAttributes") or {}).items())
        )
    )


@main.group()
def processes() -> None:
    """Processes: list, show, stop, redrive (over the HTTP API)."""


@processes.command("list")
@click.option("--status", help="RUNNING, SUCCEEDED, FAILED, TIMED_OUT or ABORTED.")
@click.option("--definition", help="A definition name.")
@click.option("--key", "correlation_key", help="A correlation key.")
@click.option("--version", type=int, help="A definition version.")
@click.option("--since", help="Started at or after (RFC 3339, e.g. 2026-11-22T10:00:00Z).")
@click.option("--until", help="Started before (RFC 3339).")
@click.option(
    "--where",
    multiple=True,
    help="A search attribute filter, repeatable (all must hold): NAME OP VALUE with = != < <= "
    '> >= or ^= (starts with), e.g. customerId=abc, amount>=100; quote text: zip="01".',
)
@click.option("--limit", type=int, default=50, show_default=True)
@_url
@_token
@_json_flag
def processes_list(
    status: str | None,
    definition: str | None,
    correlation_key: str | None,
    version: int | None,
    since: str | None,
    until: str | None,
    where: tuple[str, ...],
    limit: int,
    url: str | None,
    token: str | None,
    as_json: bool,
) -> None:
    """The newest processes, filtered (by search attributes too: --where)."""
    from urllib.parse import urlencode

    query = {
        "limit": limit,
        "status": status,
        "definition": definition,
        "correlationKey": correlation_key,
        "version": version,
        "startedAfter": since,
        "startedBefore": until,
    }
    pairs = [(key, value) for key, value in query.items() if value is not None]
    pairs += [("where", expression) for expression in where]
    path = "/processes?" + urlencode(pairs)
    found = _call(url, token, "GET", path)

    def lines(value: dict[str, Any]) -> None:
        for process in value["items"]:
            _process_line(process)

    _show(found, as_json, lines)


@processes.command("show")
@click.argument("process_id")
@click.option("--history", is_flag=True, help="Also print the history.")
@_url
@_token
@_json_flag
def processes_show(
    process_id: str, history: bool, url: str | None, token: str | None, as_json: bool
) -> None:
    """One process (and its history)."""
    process = _call(url, token, "GET", f"/processes/{process_id}")
    if history:
        process["history"] = _call(url, token, "GET", f"/processes/{process_id}/history")["items"]

    def line(value: dict[str, Any]) -> None:
        _process_line(value)
        if value.get("parentId"):
            click.echo(f"  parent {value['parentId']}  in {value.get('parentState') or ''}")
        for child in value.get("children") or []:
            click.echo(
                f"  child  {child['id']}  {child.get('status') or '-':<9}  "
                f"{child.get('definition')} v{child.get('version')}  in {child.get('state') or ''}"
            )
        for entry in value.get("history", []):
            click.echo(
                f"  {entry['seq']:>4} {entry['at']}  {entry['type']:<18} {entry['state'] or ''}"
            )

    _show(process, as_json, line)


@processes.command("stop")
@click.argument("process_id")
@click.option("--error", default="Process.Stopped", show_default=True)
@click.option("--cause", default="")
@_url
@_token
@_json_flag
def processes_stop(
    process_id: str, error: str, cause: str, url: str | None, token: str | None, as_json: bool
) -> None:
    """Stop a running process (ABORTED)."""
    body = {"error": error, "cause": cause}
    _show(_call(url, token, "POST", f"/processes/{process_id}/stop", body), as_json, _process_line)


@processes.command("redrive")
@click.argument("process_id")
@_url
@_token
@_json_flag
def processes_redrive(process_id: str, url: str | None, token: str | None, as_json: bool) -> None:
    """Run a failed, timed-out or stopped process again from the state it ended in."""
    _show(_call(url, token, "POST", f"/processes/{process_id}/redrive"), as_json, _process_line)


@main.group()
def definitions() -> None:
    """Definitions: list, deploy and aliases (over the HTTP API)."""


@definitions.command("list")
@_url
@_token
@_json_flag
def definitions_list(url: str | None, token: str | None, as_json: bool) -> None:
    """The live definitions and their newest versions."""
    found = _call(url, token, "GET", "/definitions")

    def lines(value: dict[str, Any]) -> None:
        for item in value["items"]:
            triggers = ", ".join(f"{t['EventType']} on {t['Topic']}" for t in item["triggers"])
            click.echo(f"{item['name']} v{item['version']}  {triggers or 'no triggers'}")

    _show(found, as_json, lines)


@definitions.command("deploy")
@click.argument(
    "files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@_url
@_token
@_json_flag
def definitions_deploy(
    files: tuple[Path, ...], url: str | None, token: str | None, as_json: bool
) -> None:
    """Validate and deploy each file as the next version of its definition."""
    from bridge.definitions import definition_name, read_document

    results = []
    for path in files:
        try:
            document = read_document(path)
        except DefinitionError as exc:
            raise click.ClickException("; ".join(exc.problems)) from None
        results.append(_call(url, token, "PUT", f"/definitions/{definition_name(path)}", document))

    def lines(value: list[dict[str, Any]]) -> None:
        for item in value:
            click.echo(f"{item['name']} v{item['version']}{'' if item['new'] else ' (unchanged)'}")

    _show(results, as_json, lines)


def _alias_line(alias: dict[str, Any]) -> None:
    routes = ", ".join(f"v{route['version']} {route['weight']}%" for route in alias["routes"])
    click.echo(f"{alias['definition']}:{alias['name']}  {routes}  {alias['description']}".rstrip())


@definitions.command("alias")
@click.argument("name")
@click.argument("alias")
@click.argument("routes", nargs=-1, required=True, metavar="VERSION=WEIGHT...")
@click.option("--description", default="", help="What the alias is for.")
@_url
@_token
@_json_flag
def definitions_alias(
    name: str,
    alias: str,
    routes: tuple[str, ...],
    description: str,
    url: str | None,
    token: str | None,
    as_json: bool,
) -> None:
    """Route starts of NAME:ALIAS to one version (`3=100`) or two by weight (`2=90 3=10`)."""
    parsed = []
    for route in routes:
        version, _, weight = route.partition("=")
        if not (version.isdigit() and (weight.isdigit() or not weight)):
            raise click.BadParameter(
                f"{route!r}: use VERSION=WEIGHT, like 3=10", param_hint="ROUTES"
            )
        parsed.append({"version": int(version), "weight": int(weight or 100)})
    body = {"description": description, "routes": parsed}
    _show(
        _call(url, token, "PUT", f"/definitions/{name}/aliases/{alias}", body), as_json, _alias_line
    )


@definitions.command("aliases")
@click.argument("name")
@_url
@_token
@_json_flag
def definitions_aliases(name: str, url: str | None, token: str | None, as_json: bool) -> None:
    """A definition's aliases and where they route."""
    found = _call(url, token, "GET", f"/definitions/{name}/aliases")

    def lines(value: dict[str, Any]) -> None:
        for alias in value["items"]:
            _alias_line(alias)

    _show(found, as_json, lines)


# Registered here, kept apart: running one state is a command of its own (bridge/cli_test_state.py).
main.add_command(test_state_command)
main.add_command(publish)
main.add_command(purge)
main.add_command(bulk)
main.add_command(schedules)
