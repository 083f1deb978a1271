"""Static checks of docker-compose.yml, the Dockerfile and .dockerignore.

No Docker engine, no network: the files are parsed and cross-checked against the code they
configure (``bridge.settings.Settings``, the click CLI ``bridge.cli.main``). When the ``docker``
client with its compose plugin is on PATH, ``docker compose config -q`` validates the file
against the Compose Specification too (that needs no engine either).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click
import pytest
import yaml

from bridge.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"

PREFIX = "BRIDGE_"
DEPENDS_ON_CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}
#: Stands in for ``${VAR:?message}`` (a value the user must supply).
REQUIRED_DUMMY = "required-value-supplied-by-the-user"


# --------------------------------------------------------------------------- helpers


_INTERPOLATION = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<braced>[^{}]*)\}|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)


def interpolate(value: Any) -> Any:
    """Resolve Compose interpolation as if no variable were set in the environment.

    ``${VAR:-default}`` / ``${VAR-default}`` give the default, ``${VAR:?err}`` / ``${VAR?err}``
    a dummy, ``${VAR}`` / ``$VAR`` the empty string, ``$$`` a literal ``$``.
    """
    if isinstance(value, dict):
        return {key: interpolate(item) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item) for item in value]
    if not isinstance(value, str):
        return value

    def resolve(match: re.Match[str]) -> str:
        if match.group("escaped"):
            return "$"
        if match.group("bare"):
            return ""
        body = match.group("braced")
        found = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])(.*))?", body, re.DOTALL)
        assert found, f"unsupported interpolation ${{{body}}} in {value!r}"
        _, operator, argument = found.groups()
        if operator in ("-", ":-"):
            return argument
        if operator in ("?", ":?"):
            return REQUIRED_DUMMY
        return ""  # ${VAR}, and ${VAR:+alt} with VAR unset

    return _INTERPOLATION.sub(resolve, value)


def environment(service: dict[str, Any]) -> dict[str, str | None]:
    """A service's ``environment`` (map or list form), interpolated, values as strings."""
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) if "=" in item else (item, None) for item in raw)
    resolved = interpolate(raw)
    return {key: None if value is None else str(value) for key, value in resolved.items()}


def bridge_env(env: dict[str, str | None]) -> dict[str, str]:
    return {
        key: value
        for key, value in env.items()
        if key.upper().startswith(PREFIX) and value is not None
    }


def command_argv(command: Any) -> list[str]:
    if command is None:
        return []
    return list(command) if isinstance(command, list) else shlex.split(command)


def host_ports(service: dict[str, Any]) -> list[tuple[str, int, str]]:
    """(host ip, host port, protocol) for each published port of a service."""
    published = []
    for entry in service.get("ports") or []:
        if isinstance(entry, dict):
            if entry.get("published") is None:
                continue
            ip, port = entry.get("host_ip", "0.0.0.0"), str(entry["published"])
            protocol = entry.get("protocol", "tcp")
        else:
            assert isinstance(entry, str), f"quote port mappings (YAML base-60 trap): {entry!r}"
            spec, _, protocol = entry.partition("/")
            parts = spec.rsplit(":", 2)
            if len(parts) == 1:
                continue  # container port only: Docker picks a free host port
            ip = parts[0] if len(parts) == 3 else "0.0.0.0"
            port = parts[-2]
            protocol = protocol or "tcp"
        first, _, last = port.partition("-")
        published += [
            (ip, number, protocol) for number in range(int(first), int(last or first) + 1)
        ]
    return published


def setting_field(variable: str) -> str:
    """The ``Settings`` field an environment variable sets (prefix off, nested part off)."""
    return variable[len(PREFIX) :].lower().split("__", 1)[0]


# ----------------------------------------------------------------------- Dockerfile


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not stripped or (stripped.startswith("#") and not pending):
            continue
        if stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = (pending + stripped).strip()
        pending = ""
        keyword, _, arguments = full.partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
    assert not pending, "Dockerfile ends inside a continued line"
    return instructions


def exec_form(arguments: str) -> list[str]:
    if arguments.startswith("["):
        parsed = json.loads(arguments)
        assert isinstance(parsed, list) and all(isinstance(item, str) for item in parsed)
        return parsed
    return shlex.split(arguments)


def copy_sources(arguments: str) -> list[str]:
    """Context paths a COPY/ADD reads; [] for ``COPY --from=...`` (another stage or image)."""
    words = exec_form(arguments) if arguments.startswith("[") else arguments.split()
    flags = [word for word in words if word.startswith("--")]
    if any(flag.startswith("--from") for flag in flags):
        return []
    paths = [word for word in words if not word.startswith("--")]
    return paths[:-1]


def dockerfile_env() -> dict[str, str]:
    values: dict[str, str] = {}
    for keyword, arguments in dockerfile_instructions():
        if keyword != "ENV":
            continue
        words = shlex.split(arguments)
        if len(words) >= 2 and "=" not in words[0]:  # legacy `ENV KEY value`
            values[words[0]] = " ".join(words[1:])
        else:
            values.update(word.split("=", 1) for word in words)
    return values


def _ignore_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern (Go filepath.Match plus ``**``) as a regex over paths."""
    out, index = "", 0
    while index < len(pattern):
        char = pattern[index]
        if pattern.startswith("**", index):
            out += ".*"
            index += 2
            if pattern.startswith("/", index):
                out += "/?"
                index += 1
            continue
        out += {"*": "[^/]*", "?": "[^/]"}.get(char, re.escape(char))
        index += 1
    return re.compile(out + r"\Z")


def dockerignored(path: str) -> bool:
    """Whether .dockerignore keeps ``path`` out of the build context (last match wins; a
    pattern that matches a parent directory matches everything below it)."""
    if not DOCKERIGNORE.exists():
        return False
    path = path.strip("/").removeprefix("./")
    candidates = ["/".join(path.split("/")[: end + 1]) for end in range(path.count("/") + 1)]
    excluded = False
    for line in DOCKERIGNORE.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        regex = _ignore_regex(line.lstrip("!").strip("/").removeprefix("./"))
        if any(regex.match(candidate) for candidate in candidates):
            excluded = not negated
    return excluded


# ------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(document, dict)
    return document


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


@pytest.fixture(scope="module")
def bridge_services(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The services built from this repository's Dockerfile."""
    return {name: service for name, service in services.items() if "build" in service}


# ---------------------------------------------------------------------- the file


def test_compose_file_shape(compose: dict[str, Any], services: dict[str, Any]) -> None:
    assert "version" not in compose, "the Compose Specification has no top-level version"
    assert {"kafka", "postgres", "migrate", "worker", "web"} <= set(services)
    unknown = {key for key in compose if not key.startswith("x-")} - {
        "name",
        "services",
        "volumes",
        "networks",
        "configs",
        "secrets",
        "include",
    }
    assert not unknown, f"unknown top-level keys {unknown}"


def test_bridge_services_share_one_image(bridge_services: dict[str, Any]) -> None:
    assert set(bridge_services) == {"migrate", "worker", "web"}
    images = {interpolate(service.get("image")) for service in bridge_services.values()}
    assert len(images) == 1, f"bridge services build different images: {images}"
    for name, service in bridge_services.items():
        build = service["build"]
        context = build if isinstance(build, str) else build.get("context", ".")
        dockerfile = (
            "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
        )
        assert (COMPOSE.parent / context / dockerfile).is_file(), name


def test_environment_values_are_scalars(services: dict[str, Any]) -> None:
    # Compose rejects booleans in `environment` ("contains true, which is an invalid type").
    for name, service in services.items():
        raw = service.get("environment") or {}
        if isinstance(raw, dict):
            for key, value in raw.items():
                assert value is None or isinstance(value, str | int | float), (name, key)
                assert not isinstance(value, bool), f"{name}.{key}: quote the boolean"


# ---------------------------------------------------------------------------- kafka


def test_kafka_is_a_single_kraft_node(services: dict[str, Any]) -> None:
    kafka = services["kafka"]
    image = kafka["image"]
    assert image.startswith("apache/kafka:"), image
    tag = image.split(":", 1)[1]
    assert re.match(r"(3\.9|4)\.\d+", tag), f"pin a 3.9.x or 4.x tag, not {tag!r}"

    env = environment(kafka)
    roles = {role.strip() for role in env["KAFKA_PROCESS_ROLES"].split(",")}
    assert {"broker", "controller"} <= roles
    node_id = env["KAFKA_NODE_ID"]
    voters = [voter.strip() for voter in env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",")]
    assert any(voter.startswith(f"{node_id}@") for voter in voters), voters

    listeners = {
        spec.split("://", 1)[0]: spec.split("://", 1)[1]
        for spec in env["KAFKA_LISTENERS"].split(",")
    }
    protocols = dict(
        item.split(":", 1) for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(",")
    )
    assert set(listeners) <= set(protocols), "every listener needs a security protocol"
    assert env["KAFKA_CONTROLLER_LISTENER_NAMES"] in listeners
    assert env["KAFKA_INTER_BROKER_LISTENER_NAME"] in listeners
    voter_port = voters[0].rsplit(":", 1)[1]
    assert listeners[env["KAFKA_CONTROLLER_LISTENER_NAMES"]].endswith(f":{voter_port}")

    for replicated in (
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR",
    ):
        assert env[replicated] == "1", replicated
    assert env["KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS"] == "0"
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "true"
    assert int(env["KAFKA_NUM_PARTITIONS"]) >= 1

    assert "kafka-broker-api-versions.sh" in " ".join(command_argv(kafka["healthcheck"]["test"]))
    mounts = {str(volume).split(":")[1] for volume in kafka.get("volumes", [])}
    assert env.get("KAFKA_LOG_DIRS", "/tmp/kraft-combined-logs") in mounts, "data not on a volume"


def test_bridge_reaches_kafka_on_its_advertised_listener(
    services: dict[str, Any], bridge_services: dict[str, Any]
) -> None:
    advertised = {
        spec.split("://", 1)[1]
        for spec in environment(services["kafka"])["KAFKA_ADVERTISED_LISTENERS"].split(",")
    }
    for name, service in bridge_services.items():
        bootstrap = environment(service).get("BRIDGE_KAFKA_BOOTSTRAP")
        if bootstrap is not None:
            assert set(bootstrap.split(",")) <= advertised, name


# ------------------------------------------------------------------------- postgres


def test_postgres(services: dict[str, Any], bridge_services: dict[str, Any]) -> None:
    postgres = services["postgres"]
    assert re.fullmatch(r"postgres:1[56](\..*)?", postgres["image"]), postgres["image"]
    env = environment(postgres)
    assert env["POSTGRES_DB"] == "bridge"
    assert env["POSTGRES_PASSWORD"]
    assert "pg_isready" in " ".join(command_argv(postgres["healthcheck"]["test"]))

    for name, service in bridge_services.items():
        url = urlsplit(environment(service)["BRIDGE_DATABASE_URL"])
        assert url.scheme == "postgresql+asyncpg", name
        assert (url.hostname, url.port or 5432) == ("postgres", 5432), name
        assert url.path.lstrip("/") == env["POSTGRES_DB"], name
        assert url.username == env.get("POSTGRES_USER", "postgres"), name
        assert url.password == env["POSTGRES_PASSWORD"], name


# --------------------------------------------------------------------- settings


def test_every_bridge_variable_is_a_setting(services: dict[str, Any]) -> None:
    fields = set(Settings.model_fields)
    assert Settings.model_config.get("env_prefix", "").upper() == PREFIX
    sources = {name: environment(service) for name, service in services.items()}
    sources["Dockerfile"] = dockerfile_env()
    for source, env in sources.items():
        for variable in env:
            if variable.upper().startswith(PREFIX):
                assert setting_field(variable) in fields, f"{source}: {variable} sets no field"


@pytest.mark.parametrize("name", ["migrate", "worker", "web"])
def test_settings_validate_from_the_service_environment(
    name: str, bridge_services: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    for variable in list(os.environ):
        if variable.upper().startswith(PREFIX):
            monkeypatch.delenv(variable)
    # What the container sees: the image's ENV, overridden by the service's environment.
    env = {**bridge_env(dockerfile_env()), **bridge_env(environment(bridge_services[name]))}
    for variable, value in env.items():
        monkeypatch.setenv(variable, value)

    settings = Settings()

    assert settings.database_url.startswith("postgresql+asyncpg://")
    assert settings.kafka_bootstrap
    assert settings.database_migrate is False, "the migrate service owns schema upgrades"
    assert settings.kafka_fetch_max_wait_ms == 500
    assert (
        settings.secret_key.get_secret_value()
        != Settings.model_fields["secret_key"].default.get_secret_value()
    )
    if name == "worker":
        # Prometheus on the compose network scrapes it; the probe above reaches this port.
        assert (settings.worker_http_host, settings.worker_http_port) == ("0.0.0.0", 8081)
    if name == "web":
        assert settings.http_host == "0.0.0.0"
        assert any(
            port == settings.http_port for _, port, _ in _container_ports(bridge_services["web"])
        )
        # With no tokens, the API is open only because the port is published on loopback.
        assert settings.open_api_refusal() is None
        assert not settings.api_admin_tokens and settings.api_open
        published = host_ports(interpolate(bridge_services["web"]))
        assert {ip for ip, _, _ in published} == {"127.0.0.1"}


def _container_ports(service: dict[str, Any]) -> list[tuple[str, int, str]]:
    ports = []
    for entry in service.get("ports") or []:
        if isinstance(entry, dict):
            ports.append(("", int(entry["target"]), entry.get("protocol", "tcp")))
        else:
            spec, _, protocol = entry.partition("/")
            ports.append(("", int(spec.rsplit(":", 1)[-1]), protocol or "tcp"))
    return ports


# -------------------------------------------------------------------------- the CLI


def resolve_cli(argv: list[str]) -> click.Command:
    """The click command ``argv`` runs; fails when a subcommand does not exist."""
    import bridge.cli  # the test needs the CLI: no skip when it is missing

    assert argv and argv[0] == "bridge", f"not the bridge console script: {argv}"
    command: click.Command = bridge.cli.main
    assert isinstance(command, click.Group)
    for word in argv[1:]:
        if word.startswith("-") or not isinstance(command, click.Group):
            break
        sub = command.get_command(click.Context(command), word)
        assert sub is not None, f"{shlex.join(argv)}: `{word}` is no subcommand of {command.name}"
        command = sub
    if isinstance(command, click.Group):
        assert command.invoke_without_command, f"{shlex.join(argv)} names a group, not a command"
    return command


def test_service_commands_are_cli_commands(bridge_services: dict[str, Any]) -> None:
    expected = {"migrate": "upgrade", "worker": "worker", "web": "web"}
    for name, service in bridge_services.items():
        argv = command_argv(service.get("entrypoint")) + command_argv(service.get("command"))
        assert resolve_cli(argv).name == expected[name], name


def test_dockerfile_default_command_is_the_web(bridge_services: dict[str, Any]) -> None:
    instructions = dict(dockerfile_instructions())
    entrypoint = exec_form(instructions["ENTRYPOINT"]) if "ENTRYPOINT" in instructions else []
    argv = entrypoint + exec_form(instructions["CMD"])
    assert resolve_cli(argv).name == "web"


# ---------------------------------------------------------------- depends_on, health


def test_depends_on(services: dict[str, Any]) -> None:
    for name, service in services.items():
        depends = service.get("depends_on") or {}
        if isinstance(depends, list):
            depends = {target: {"condition": "service_started"} for target in depends}
        for target, spec in depends.items():
            assert target in services, f"{name} depends on unknown service {target}"
            assert target != name
            condition = (spec or {}).get("condition", "service_started")
            assert condition in DEPENDS_ON_CONDITIONS, f"{name} -> {target}: {condition}"
            if condition == "service_healthy":
                check = services[target].get("healthcheck") or {}
                assert check.get("test") and not check.get("disable"), (
                    f"{target} has no healthcheck"
                )
            if condition == "service_completed_successfully":
                assert services[target].get("restart", "no") == "no", f"{target} must run once"

    # No cycles: a topological order exists.
    remaining = {name: set(_targets(service)) for name, service in services.items()}
    while remaining:
        ready = {name for name, targets in remaining.items() if not targets & set(remaining)}
        assert ready, f"depends_on cycle among {sorted(remaining)}"
        for name in ready:
            del remaining[name]


def _targets(service: dict[str, Any]) -> list[str]:
    return list(service.get("depends_on") or [])


def test_bridge_dependencies(bridge_services: dict[str, Any]) -> None:
    assert bridge_services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert bridge_services["migrate"]["restart"] == "no"  # a string: bare `no` is YAML false
    for name in ("worker", "web"):
        depends = bridge_services[name]["depends_on"]
        assert depends["kafka"]["condition"] == "service_healthy", name
        assert depends["postgres"]["condition"] == "service_healthy", name
        assert depends["migrate"]["condition"] == "service_completed_successfully", name


def test_each_bridge_service_probes_what_it_serves(bridge_services: dict[str, Any]) -> None:
    # The image's HEALTHCHECK probes the web's /healthz; the worker probes its own /livez on
    # the port its settings give it; the one-shot migration serves nothing.
    assert "/healthz" in dict(dockerfile_instructions())["HEALTHCHECK"]
    web = bridge_services["web"].get("healthcheck") or {}
    assert "/healthz" in " ".join(command_argv(web.get("test")))
    assert not web.get("disable")
    worker = bridge_services["worker"]
    probe = " ".join(command_argv((worker.get("healthcheck") or {}).get("test")))
    port = environment(worker)["BRIDGE_WORKER_HTTP_PORT"]
    assert f"127.0.0.1:{port}/livez" in probe
    assert (bridge_services["migrate"].get("healthcheck") or {}).get("disable") is True


# ---------------------------------------------------------------- ports, volumes


def test_published_ports_do_not_collide(services: dict[str, Any]) -> None:
    taken: dict[tuple[int, str], list[tuple[str, str]]] = {}
    for name, service in services.items():
        for ip, port, protocol in host_ports(service):
            for other_ip, other in taken.get((port, protocol), []):
                wildcard = {"0.0.0.0", "::", ""}
                clash = ip == other_ip or ip in wildcard or other_ip in wildcard
                assert not clash, f"{name} and {other} both publish {protocol} port {port}"
            taken.setdefault((port, protocol), []).append((ip, name))
    assert (8080, "tcp") in taken


def test_named_volumes_are_declared(compose: dict[str, Any], services: dict[str, Any]) -> None:
    declared = set(compose.get("volumes") or {})
    used = set()
    for name, service in services.items():
        for mount in service.get("volumes") or []:
            if isinstance(mount, dict):
                source = mount.get("source") if mount.get("type", "volume") == "volume" else None
            else:
                source = mount.split(":", 1)[0] if ":" in mount else None
            if source and not source.startswith(("/", ".", "~", "$")):
                assert source in declared, f"{name} mounts undeclared volume {source}"
                used.add(source)
    assert declared <= used, f"declared but unused volumes: {declared - used}"
    assert {"kafka-data", "postgres-data"} <= used


# ------------------------------------------------------------------------ Dockerfile


def test_dockerfile() -> None:
    instructions = dockerfile_instructions()
    keywords = [keyword for keyword, _ in instructions]
    base = next(arguments for keyword, arguments in instructions if keyword == "FROM")
    assert base.split()[0].startswith("python:3.11-slim"), base

    users = [arguments for keyword, arguments in instructions if keyword == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), "run as a non-root user"
    assert "8080" in [
        port.split("/")[0]
        for keyword, arguments in instructions
        if keyword == "EXPOSE"
        for port in arguments.split()
    ]
    assert keywords.count("CMD") == 1 and keywords.count("HEALTHCHECK") == 1

    env = dockerfile_env()
    assert env["BRIDGE_DEFINITIONS_DIR"] == "/app/examples"
    installs = [
        arguments
        for keyword, arguments in instructions
        if keyword == "RUN" and "pip install" in arguments
    ]
    assert any("--no-cache-dir" in line and re.search(r"\s\.(\s|$|&)", line) for line in installs)
    # The examples are copied to where BRIDGE_DEFINITIONS_DIR points.
    workdir, copied = "/", set()
    for keyword, arguments in instructions:
        if keyword == "WORKDIR":
            workdir = (
                arguments if arguments.startswith("/") else f"{workdir.rstrip('/')}/{arguments}"
            )
        if keyword == "COPY" and copy_sources(arguments):
            destination = arguments.split()[-1]
            target = (
                destination
                if destination.startswith("/")
                else f"{workdir.rstrip('/')}/{destination}"
            )
            copied.add(target.rstrip("/"))
    assert "/app/examples" in copied, copied


def test_dockerfile_copy_sources_exist_and_reach_the_context() -> None:
    sources = [
        source
        for keyword, arguments in dockerfile_instructions()
        if keyword in ("COPY", "ADD")
        for source in copy_sources(arguments)
    ]
    for required in (
        "pyproject.toml",
        "README.md",
        "LICENSE",
        "bridge/",
        "processors/",
        "approvals/",
        "examples/",
    ):
        assert required in sources, f"the Dockerfile does not copy {required}"
    missing = [source for source in sources if not (ROOT / source).exists()]
    assert not missing, f"COPY sources missing from the repository: {missing}"
    ignored = [source for source in sources if dockerignored(source)]
    assert not ignored, f".dockerignore keeps COPY sources out of the build context: {ignored}"
    # The package's own data must not be ignored either (templates, migrations).
    for packaged in ("approvals/templates", "bridge/migrations", "bridge/settings.py"):
        assert not dockerignored(packaged), packaged
    assert dockerignored(".venv") and dockerignored(".git")


def test_dockerignore_matcher() -> None:
    # The helper itself, on Docker's documented semantics.
    assert dockerignored("tests/test_compose.py")
    assert not dockerignored("bridge/cli.py")
    assert dockerignored("bridge/__pycache__/cli.cpython-311.pyc")


# --------------------------------------------------------- docker compose config


def _compose_cli() -> list[str] | None:
    docker = shutil.which("docker")
    if docker is None:
        return None
    try:
        probe = subprocess.run(
            [docker, "compose", "version"], capture_output=True, timeout=20, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return [docker, "compose"] if probe.returncode == 0 else None


def test_docker_compose_config_validates() -> None:
    cli = _compose_cli()
    if cli is None:
        pytest.skip("no `docker compose` client on PATH")
    # `config` resolves and validates the model offline: no engine, no pulls.
    result = subprocess.run(
        [*cli, "-f", str(COMPOSE), "config", "-q"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
