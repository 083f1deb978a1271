"""Definition diagrams over HTTP, and the diagram on the process page.

``GET /definitions/{name}/diagram?version=N&format=svg|mermaid|dot[&process=ID]`` draws a
definition version (the newest by default); with ``process`` the states that process visited, is
in, or failed in are marked, and the version is the one the process runs. The graph and its
Mermaid and DOT text come from the pure ``bridge.asl.diagram``; SVG is Graphviz's ``dot`` run as a
subprocess, bounded in time and output, with results cached by their DOT text. Without ``dot`` on
the machine (or when it fails), the SVG is drawn in Python (``bridge.asl.diagram_svg``), so the
pages always show a picture.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import shutil
from collections import OrderedDict
from typing import Any, Literal
from urllib.parse import quote, urlencode

from aiohttp import web
from pydantic import Field

from approvals.api import query_of
from approvals.keys import ENGINE
from approvals.problems import problem
from approvals.schemas import Query
from bridge.asl import diagram, diagram_svg
from bridge.asl.model import Definition
from bridge.asl.process import Process
from bridge.engine import Engine
from bridge.store import processes as store
from bridge.store.database import reading

log = logging.getLogger(__name__)
routes = web.RouteTableDef()

FORMATS = {
    "svg": "image/svg+xml",
    "mermaid": "text/vnd.mermaid",
    "dot": "text/vnd.graphviz",
}
#: The marks' history is read up to this many entries (a long Map's history can be huge).
MAX_HISTORY = 20_000
#: An SVG served on its own could run script if it held any; ours holds none, and this says so.
SVG_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; sandbox",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}


class DotRenderer:
    """Runs Graphviz's ``dot`` to turn DOT text into SVG; ``command`` None: not available."""

    def __init__(
        self,
        command: str | None,
        *,
        timeout: float = 10.0,
        max_bytes: int = 8 * 1024 * 1024,
        cache_size: int = 64,
    ) -> None:
        self.command = command
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.cache_size = cache_size
        self._cache: OrderedDict[str, str] = OrderedDict()

    @classmethod
    def from_path(cls) -> DotRenderer:
        return cls(shutil.which("dot"))

    @property
    def available(self) -> bool:
        return self.command is not None

    async def svg(self, dot_text: str) -> str | None:
        """The ``<svg>`` element (no XML prolog or doctype, so it can sit inside a page), or None
        when ``dot`` is missing, fails, or takes too long."""
        if self.command is None:
            return None
        key = hashlib.sha256(dot_text.encode()).hexdigest()
        if (cached := self._cache.get(key)) is not None:
            self._cache.move_to_end(key)
            return cached
        svg = await self._run(self.command, dot_text)
        if svg is not None:
            self._cache[key] = svg
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return svg

    async def _run(self, command: str, dot_text: str) -> str | None:
        try:
            child = await asyncio.create_subprocess_exec(
                command,
                "-Tsvg",
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as exc:
            log.warning("cannot run Graphviz dot (%s): %s", command, exc)
            return None
        try:
            out, err = await asyncio.wait_for(
                child.communicate(dot_text.encode()), timeout=self.timeout
            )
        except TimeoutError:
            child.kill()
            await child.wait()
            log.warning(
                "Graphviz dot took longer than %.0fs; showing the Mermaid text", self.timeout
            )
            return None
        if child.returncode != 0 or len(out) > self.max_bytes:
            log.warning("Graphviz dot failed (%s): %s", child.returncode, err.decode()[:500])
            return None
        text = out.decode("utf-8", "replace")
        start = text.find("<svg")
        return text[start:] if start >= 0 else None


RENDERER = web.AppKey("diagram_renderer", DotRenderer)


async def drawing(
    renderer: DotRenderer, graph: diagram.Graph, marks: dict[str, diagram.Mark] | None = None
) -> str:
    """Graphviz's drawing when ``dot`` is here and answers, else the one drawn in Python: a
    page always shows a picture, also on a fresh machine without Graphviz."""
    return await renderer.svg(diagram.to_dot(graph, marks)) or diagram_svg.to_svg(graph, marks)


async def drawing_for(
    request: web.Request, graph: diagram.Graph, marks: dict[str, diagram.Mark] | None = None
) -> str:
    """``drawing`` with this app's renderer."""
    return await drawing(request.app[RENDERER], graph, marks)


def setup(app: web.Application, renderer: DotRenderer | None = None) -> None:
    app[RENDERER] = renderer or DotRenderer.from_path()
    app.add_routes(routes)


async def definition_of(engine: Engine, name: str, version: int | None) -> Definition | None:
    """A definition version (the newest when ``version`` is None), reloading versions deployed
    elsewhere when it is not known here yet."""
    found = engine.registry.latest(name) if version is None else engine.registry.get(name, version)
    if found is None:
        await engine.registry.refresh(engine.db)
        found = (
            engine.registry.latest(name) if version is None else engine.registry.get(name, version)
        )
    return found


async def history_pairs(engine: Engine, process_id: str) -> list[tuple[str, str | None]]:
    """(type, state) of a process's history entries, oldest first, up to ``MAX_HISTORY``."""
    pairs: list[tuple[str, str | None]] = []
    after = 0
    async with reading(engine.db) as conn:
        while len(pairs) < MAX_HISTORY:
            entries = await store.read_history(conn, process_id, after_seq=after, limit=5000)
            pairs.extend((entry["type"], entry["state"]) for entry in entries)
            if len(entries) < 5000:
                break
            after = entries[-1]["seq"]
    return pairs


class DiagramQuery(Query):
    version: int | None = Field(
        default=None, ge=1, le=2**31 - 1, description="The version (default: the newest)"
    )
    format: Literal["svg", "mermaid", "dot"] = "svg"
    process: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="Mark this process's states; its version is drawn",
    )


@routes.get("/definitions/{name}/diagram")
async def get_diagram(request: web.Request) -> web.StreamResponse:
    engine = request.app[ENGINE]
    name = request.match_info["name"]
    query = query_of(request, DiagramQuery)
    if isinstance(query, web.Response):
        return query
    form, version = query.format, query.version
    process: Process | None = None
    if process_id := query.process:
        async with reading(engine.db) as conn:
            process = await store.get(conn, process_id)
        if process is None or process.definition != name:
            return problem(404, "Process not found", f"no process {process_id!r} of {name!r}")
        if version is not None and version != process.version:
            return problem(
                400, "Invalid version", f"process {process_id!r} runs version {process.version}"
            )
        version = process.version
    definition = await definition_of(engine, name, version)
    if definition is None:
        what = f"{name!r} version {version}" if version is not None else repr(name)
        return problem(404, "Definition not found", f"no definition {what}")
    marks: dict[str, diagram.Mark] = {}
    if process is not None:
        marks = diagram.marks(definition, process, await history_pairs(engine, process.id))
    graph = diagram.graph_of(definition)
    if form == "mermaid":
        body = diagram.to_mermaid(graph, marks)
    elif form == "dot":
        body = diagram.to_dot(graph, marks)
    else:
        svg = await drawing(request.app[RENDERER], graph, marks)
        return web.Response(
            text=svg, content_type=FORMATS["svg"], charset="utf-8", headers=SVG_HEADERS
        )
    return web.Response(
        text=body,
        content_type=FORMATS[form],
        charset="utf-8",
        headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"},
    )


async def page_context(
    request: web.Request, process: Process, pairs: list[tuple[str, str | None]]
) -> dict[str, Any]:
    """What the process page needs to draw the diagram of the version the process runs."""
    engine = request.app[ENGINE]
    definition = await definition_of(engine, process.definition, process.version)
    if definition is None:
        return {"diagram": None}
    marks = diagram.marks(definition, process, pairs)
    graph = diagram.graph_of(definition)
    svg = await drawing(request.app[RENDERER], graph, marks)
    base = f"/definitions/{quote(process.definition, safe='')}/diagram"
    return {
        "diagram": {
            # Graphviz escapes every label it writes; ids and attributes are ours.
            "svg": svg,
            "links": {
                form: f"{base}?{urlencode({'process': process.id, 'format': form})}"
                for form in FORMATS
            },
        }
    }
