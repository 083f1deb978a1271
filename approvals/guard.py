"""The web edge's guard: what a request must look like before any handler sees it, and the one
way request bodies are read.

A browser sends some requests to another site without asking it first: a form post
(urlencoded, multipart or ``text/plain``) and ``fetch`` in ``no-cors`` mode with such a body. A
page on any site could so decide an approval whose link it holds, or act with an admin's session.
So every write (POST, PUT, PATCH, DELETE, on every route) must be

- from this site: a present ``Origin`` must be the bridge's own (the one the request was sent to,
  or the public one, ``BRIDGE_BASE_URL``; ``null`` is no origin of ours), and a present
  ``Sec-Fetch-Site`` must not say ``cross-site`` or ``same-site``; refused with 403 otherwise;
- and JSON (``Content-Type: application/json`` or ``application/...+json``, which a page on
  another site cannot send without CORS, and CORS stays off), or a form where the bridge's own
  pages post one (approval links, ``/ui/``), each of which checks its nonce; any other body is
  refused with 415.

Machines (curl, SDKs) send no ``Origin`` and no ``Sec-Fetch-Site`` and keep working with JSON.
The guard also refuses path parameters and query strings that nothing stored can match (a NUL
character, which PostgreSQL cannot compare, or a path parameter longer than any stored key),
for reads too, so that no database ever sees them.

Handlers read JSON bodies through ``json_body`` / ``body_of`` and forms through ``form_of``:
size, UTF-8, nesting depth and NUL characters are checked there, once, with the bounds of
``bridge.asl.limits``, and a refusal says which bound.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar

from aiohttp import web
from multidict import MultiDictProxy
from pydantic import BaseModel, ValidationError

from approvals.keys import PUBLIC_ORIGIN
from approvals.problems import problem
from bridge.asl import limits

#: The largest body the bridge reads (a definition, a start's input, a task's result).
MAX_BODY: Final = 256 * 1024
#: The longest path parameter: the longest key anything is stored under (an event's inbox key).
MAX_PATH_PARAMETER: Final = 600
WRITE_METHODS: Final = frozenset({"POST", "PUT", "PATCH", "DELETE"})
JSON_TYPE: Final = "application/json"
FORM_TYPES: Final = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})
#: Where the bridge's own pages post forms (each form carries a nonce its handler checks).
FORM_PREFIXES: Final = ("/approve/", "/reject/", "/ui/")
#: ``Sec-Fetch-Site`` values of a request that a page of another origin made.
OTHER_SITES: Final = frozenset({"cross-site", "same-site"})


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ModelT = TypeVar("ModelT", bound=BaseModel)


def from_this_site(request: web.Request) -> bool:
    """Whether the request came from the bridge's own pages, or from no browser page at all."""
    if request.headers.get("Sec-Fetch-Site", "").lower() in OTHER_SITES:
        return False
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    return origin in (f"{request.scheme}://{request.host}", request.app[PUBLIC_ORIGIN])


def is_json(media_type: str) -> bool:
    """JSON, or a JSON-based type (``application/cloudevents+json``): none of them is a type a
    page on another site may send without asking (CORS), and CORS stays off."""
    return media_type == JSON_TYPE or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )


def _path_problem(request: web.Request) -> web.Response | None:
    for name, value in request.match_info.items():
        if name == "token":
            # Hashed before anything looks it up; a token of any shape that is not one of ours
            # gets the one answer every unknown token gets (no oracle).
            continue
        if "\x00" in value:
            return problem(
                400, "Invalid path parameter", f"the path parameter {name} holds a NUL character"
            )
        if len(value) > MAX_PATH_PARAMETER:
            return problem(
                400,
                "Invalid path parameter",
                f"the path parameter {name} is longer than {MAX_PATH_PARAMETER} characters",
            )
    return None


def _query_problem(request: web.Request) -> web.Response | None:
    for name, value in request.query.items():
        if "\x00" in name or "\x00" in value:
            return problem(400, "Invalid query parameter", f"{name!r} holds a NUL character")
    return None


def _write_problem(request: web.Request) -> web.Response | None:
    if not from_this_site(request):
        return problem(
            403,
            "Cross-site request refused",
            "writes come from the bridge's own pages, or from clients that are no browser",
        )
    if not request.body_exists:
        return None
    kind = request.content_type
    if is_json(kind) or (kind in FORM_TYPES and request.path.startswith(FORM_PREFIXES)):
        return None
    return problem(
        415,
        "Unsupported media type",
        f"send the body as JSON with Content-Type: {JSON_TYPE} (not {kind})",
    )


@web.middleware
async def guard_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse hostile paths and query strings, and writes from other sites or of other types,
    before any handler (or session, or database) sees them."""
    refused = _path_problem(request) or _query_problem(request)
    if refused is None and request.method in WRITE_METHODS:
        refused = _write_problem(request)
    if refused is not None:
        return refused
    return await handler(request)


# ----------------------------------------------------------------------------------- bodies


async def raw_body(request: web.Request) -> bytes:
    """The request's body as it came: 413 when it is larger than ``MAX_BODY``."""
    raw = await request.read()
    if len(raw) > MAX_BODY:
        raise web.HTTPRequestEntityTooLarge(max_size=MAX_BODY, actual_size=len(raw))
    return raw


async def json_body(
    request: web.Request,
    default: Any = None,
    *,
    what: str = "the body",
    max_depth: int = limits.MAX_DEPTH,
) -> Any:
    """The request's JSON body, or ``default`` when it has none (a JSON ``null`` is ``None``).

    Raises 413 when it is larger than ``MAX_BODY``, 400 (problem+json, naming the bound) when it
    is not UTF-8 or not JSON, nests deeper than ``max_depth`` or holds a NUL character.
    """
    raw = await raw_body(request)
    if not raw.strip():
        return default
    try:
        return limits.loads(raw, what, max_depth=max_depth)
    except limits.Unstorable as exc:
        raise web.HTTPBadRequest(reason="Invalid JSON body", text=str(exc)) from None


def first_error(exc: ValidationError) -> str:
    """The first field that ``exc`` found wrong, and why."""
    first = exc.errors(include_url=False)[0]
    where = ".".join(str(part) for part in first["loc"])
    return f"{where}: {first['msg']}" if where else str(first["msg"])


async def body_of(request: web.Request, model: type[ModelT], title: str = "Invalid body") -> ModelT:
    """The JSON body validated by ``model``; no body means every field's default (a JSON
    ``null`` is no object and is refused). 400 naming the field otherwise."""
    body = await json_body(request, {})
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise web.HTTPBadRequest(reason=title, text=first_error(exc)) from None


async def form_of(request: web.Request) -> MultiDictProxy[Any]:
    """The posted form (urlencoded or multipart): 413 when too large, 400 when a field holds a
    NUL character (a person cannot type one; the database could not keep it)."""
    await raw_body(request)
    try:
        form = await request.post()
    except ValueError as exc:  # a multipart body without its boundary, bytes that are no text
        raise web.HTTPBadRequest(reason="Invalid form", text=str(exc)) from None
    for name, value in form.items():
        if "\x00" in name or (isinstance(value, str) and "\x00" in value):
            raise web.HTTPBadRequest(reason="Invalid form", text=f"{name!r} holds a NUL character")
    return form
