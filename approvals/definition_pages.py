"""The definitions pages, for people: the list, and one definition with its versions, aliases,
diagram and source.

``GET /definitions`` and ``GET /definitions/{name}`` answer JSON to API clients
(approvals/api.py); a browser asking for HTML gets these pages instead (``html_pages`` in
approvals/status.py sends it here).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from aiohttp import web

from approvals.diagrams import drawing_for
from approvals.keys import ENGINE
from approvals.render import render
from bridge.asl import diagram
from bridge.retention import days_of
from bridge.store import aliases as aliases_store
from bridge.store import definitions as definitions_store
from bridge.store import schedules as schedules_store
from bridge.store.database import reading


async def definition_list(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    await engine.registry.refresh(engine.db)
    rows = []
    async with reading(engine.db) as conn:
        for name in engine.registry.names():
            latest = engine.registry.latest(name)
            if latest is None:
                continue
            rows.append(
                {
                    "name": name,
                    "version": latest.version,
                    "comment": latest.comment or "",
                    "triggers": [f"{_types(t.event_type)} on {t.topic}" for t in latest.triggers],
                    "versions": len(await definitions_store.versions_of(conn, name)),
                    "aliases": len(await aliases_store.of_definition(conn, name)),
                }
            )
    return render(request, "definitions.html", definitions=rows)


async def definition_page(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    name = request.match_info["name"]
    await engine.registry.refresh(engine.db)
    wanted = request.query.get("version", "")
    version = int(wanted) if wanted.isdigit() else None
    definition = (
        engine.registry.latest(name) if version is None else engine.registry.get(name, version)
    )
    if definition is None:
        return render(
            request,
            "message.html",
            404,
            title="Definition not found",
            detail=f"No definition {name!r}" + (f" version {version}." if version else "."),
            links=[("/definitions", "All definitions")],
        )
    async with reading(engine.db) as conn:
        versions = await definitions_store.versions_of(conn, name)
        stored = await definitions_store.get_version(conn, name, definition.version)
        aliases = await aliases_store.of_definition(conn, name)
        scheduled = await schedules_store.listing(conn, definition=name)
    graph = diagram.graph_of(definition)
    svg = await drawing_for(request, graph)
    base = f"/definitions/{quote(name, safe='')}/diagram?version={definition.version}"
    return render(
        request,
        "definition.html",
        definition=definition,
        versions=versions,
        aliases=[
            {
                "name": alias.name,
                "description": alias.description,
                "routes": ", ".join(f"v{r.version}: {r.weight} %" for r in alias.routes),
                "updated_at": alias.updated_at,
            }
            for alias in aliases
        ],
        source=json.dumps(stored, indent=2, ensure_ascii=False),
        diagram={
            "svg": svg,
            "links": {form: f"{base}&format={form}" for form in ("mermaid", "svg", "dot")},
        },
        processes=f"/processes?definition={quote(name, safe='')}",
        retention_days=days_of(engine.registry.latest(name), engine.config.retention_days),
        schedules=[
            {
                "id": schedule.id,
                "when": schedule.spec.describe(),
                "paused": schedule.paused,
                "next_at": None if schedule.paused else schedule.next_at,
            }
            for schedule in scheduled
        ],
    )


def _types(value: str | list[str]) -> str:
    return value if isinstance(value, str) else ", ".join(value)


def page_for(path: str) -> Any:
    """The page handler for a browser's GET of ``path``, or None for the JSON API."""
    if path == "/definitions":
        return definition_list
    parts = path.split("/")
    if len(parts) == 3 and parts[1] == "definitions" and parts[2]:
        return definition_page
    return None
