# syntax=docker/dockerfile:1
#
# One image for every bridge role; the command picks it:
#   bridge web          (default) HTTP endpoint: approvals, task callbacks, process status
#   bridge worker       Kafka stream processors, outbox relay, timers
#   bridge db upgrade   apply the database migrations, then exit
#   bridge dev          everything in one process (embedded broker, SQLite under /data)
# Configuration comes from BRIDGE_* environment variables (bridge/settings.py).
#
#   docker build -t bridge:local .
#   docker run --rm -p 8080:8080 bridge:local bridge dev

FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Fixed numeric ids so that orchestrators can check runAsNonRoot and volumes can be chowned.
RUN groupadd --system --gid 10001 bridge \
 && useradd --system --uid 10001 --gid bridge --home-dir /data --no-create-home \
            --shell /usr/sbin/nologin bridge \
 && install -d -o bridge -g bridge -m 0750 /data

# Graphviz's `dot` draws definitions as SVG on the status pages (without it they show the
# Mermaid text instead).
RUN apt-get update \
 && apt-get install -y --no-install-recommends graphviz \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md LICENSE ./
COPY bridge/ bridge/
COPY processors/ processors/
COPY approvals/ approvals/
# A regular (non-editable) install into site-packages; the console script lands in
# /usr/local/bin, ahead of any iproute2 `bridge` on PATH. The in-tree build leftovers go.
RUN pip install --no-cache-dir . \
 && rm -rf build ./*.egg-info

# Examples last: editing a definition does not reinstall the dependencies.
COPY examples/ examples/

ENV BRIDGE_DEFINITIONS_DIR=/app/examples \
    BRIDGE_HTTP_HOST=0.0.0.0 \
    BRIDGE_HTTP_PORT=8080

# The working directory is the only place the bridge user may write: `bridge dev` keeps its
# default SQLite file (sqlite+aiosqlite:///bridge.db, relative) here. Mount a volume on /data
# to keep it. /app stays read-only for the process.
WORKDIR /data
USER 10001:10001

EXPOSE 8080

# Probes the web endpoint. Only `bridge web` (and `bridge dev`) serve HTTP: containers running
# `bridge worker` or `bridge db upgrade` must disable it (compose: `healthcheck: {disable: true}`,
# docker run: `--no-healthcheck`), otherwise Docker reports them unhealthy. No curl in the slim
# image, so the standard library does it; urlopen raises on a refused connection and on 4xx/5xx.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('BRIDGE_HTTP_PORT', '8080'), timeout=4)"]

CMD ["bridge", "web"]
