"""Who may call what: management endpoints take API bearer tokens (read-only or admin).

Approval links and task callbacks carry their own secrets in the path and need no API token;
health and static files are public. With no API token configured, everything is open (everyone
is admin), which suits ``bridge dev`` on a laptop; production sets ``BRIDGE_API_ADMIN_TOKENS``
(and read tokens).

Browsers cannot send bearer headers, so a person signs in at ``/ui/signin`` by pasting an API
token: the bridge keeps only a keyed hash of the token in a signed session cookie (HttpOnly,
SameSite=Strict, eight hours) and looks its role up again on every request, so removing a token
from the configuration ends its sessions. A session reads like its token does; it writes only
through the status pages' forms under ``/ui/``, each of which checks a nonce (and the guard,
approvals/guard.py, the Origin), never through the JSON API. A request with an
``Authorization`` header is judged by that header alone, as before.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote, urlsplit

import aiohttp_jinja2
from aiohttp import web
from aiohttp.typedefs import Middleware
from itsdangerous import BadSignature, URLSafeTimedSerializer

from approvals.guard import form_of
from approvals.keys import PUBLIC_ORIGIN, SECRET
from approvals.pages import PAGE_HEADERS
from approvals.problems import problem

SIGNIN = "/ui/signin"
SIGNOUT = "/ui/signout"
#: Form posts of the status pages: the only writes a session cookie may make (each checks a nonce).
UI_FORMS = "/ui/"
#: Signing in and out need no token (the sign-out form checks its nonce against the session).
PUBLIC_PREFIXES = ("/healthz", "/static/", "/approve/", "/reject/", "/tasks/", SIGNIN, SIGNOUT)
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SESSION_COOKIE = "bridge_session"
SIGNIN_COOKIE = "bridge_signin"
SESSION_SECONDS = 8 * 3600
FORM_SECONDS = 2 * 3600

Role = Literal["admin", "read"]
#: The role the request acts with: set for every request the middleware lets through to a
#: guarded path ("admin" for all when no tokens are configured).
ROLE = web.RequestKey("role", str)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
routes = web.RouteTableDef()


def _digest(secret: bytes, token: str) -> str:
    """What a session keeps of its token: a keyed hash, useless for guessing the token offline."""
    return hmac.new(secret, b"session:" + token.encode(), hashlib.sha256).hexdigest()


def _matches(token: str, known: Sequence[str]) -> bool:
    # Compare with every known token, always, so timing tells nothing.
    found = False
    for candidate in known:
        found |= hmac.compare_digest(token.encode(), candidate.encode())
    return found


@dataclass(frozen=True)
class ApiTokens:
    admin: tuple[str, ...] = ()
    read: tuple[str, ...] = ()

    @property
    def open(self) -> bool:
        """No token configured: everyone may do everything."""
        return not self.admin and not self.read

    def role_of(self, token: str) -> Role | None:
        is_admin, is_read = _matches(token, self.admin), _matches(token, self.read)
        return "admin" if is_admin else "read" if is_read else None

    def role_of_digest(self, secret: bytes, digest: str) -> Role | None:
        is_admin = _matches(digest, [_digest(secret, token) for token in self.admin])
        is_read = _matches(digest, [_digest(secret, token) for token in self.read])
        return "admin" if is_admin else "read" if is_read else None


TOKENS = web.AppKey("api_tokens", ApiTokens)


def _signer(request: web.Request, purpose: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(request.app[SECRET], salt=f"bridge.{purpose}")


def _unsigned(request: web.Request, purpose: str, value: str, max_age: int) -> Any:
    try:
        return _signer(request, purpose).loads(value, max_age=max_age)
    except BadSignature:
        return None


def session_of(request: web.Request) -> str | None:
    """The token digest of a valid session cookie, or None."""
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        return None
    payload = _unsigned(request, "session", cookie, SESSION_SECONDS)
    digest = payload.get("t") if isinstance(payload, dict) else None
    return digest if isinstance(digest, str) else None


def form_nonce(request: web.Request, *bound: str) -> str:
    """A nonce for a status page form, bound to the session (if any) and to ``bound``."""
    return _signer(request, "form").dumps([session_of(request) or "", *bound])


def form_nonce_ok(request: web.Request, nonce: str, *bound: str) -> bool:
    """The nonce was made by us for this session and these values, not too long ago. (That the
    form was posted from our own pages, the guard has checked.)"""
    payload = _unsigned(request, "form", nonce, FORM_SECONDS)
    return bool(payload == [session_of(request) or "", *bound])


def viewer(request: web.Request) -> dict[str, Any]:
    """Who looks at a status page, for its navigation: role, and whether signed in."""
    tokens = request.app[TOKENS]
    signed_in = not tokens.open and session_of(request) is not None
    return {
        "role": request.get(ROLE),
        "open": tokens.open,
        "signed_in": signed_in,
        "signout": form_nonce(request, "signout") if signed_in else "",
    }


def wants_html(request: web.Request) -> bool:
    """A browser asking for a page (API clients ask for JSON or anything)."""
    accept = request.headers.get("Accept", "")
    return "text/html" in accept and "application/json" not in accept


def _page(request: web.Request, template: str, status: int = 200, **context: Any) -> web.Response:
    response = aiohttp_jinja2.render_template(template, request, context, status=status)
    response.headers.update(PAGE_HEADERS)
    return response


def _refused(request: web.Request, status: int, title: str, detail: str) -> web.Response:
    if wants_html(request) or request.path.startswith(UI_FORMS):
        return _page(request, "message.html", status, title=title, detail=detail)
    return problem(status, title, detail)


def access_control(admin: Sequence[str], read: Sequence[str]) -> Middleware:
    tokens = ApiTokens(tuple(admin), tuple(read))

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        if tokens.open:
            request[ROLE] = "admin"
            return await handler(request)
        if request.path.startswith(PUBLIC_PREFIXES):
            return await handler(request)
        header = request.headers.get("Authorization")
        if header is not None:
            return await _bearer(request, handler, header, tokens)
        digest = session_of(request)
        secret = request.app[SECRET]
        role = tokens.role_of_digest(secret, digest) if digest is not None else None
        if role is not None:
            if request.method in READ_METHODS or (
                role == "admin" and request.path.startswith(UI_FORMS)
            ):
                request[ROLE] = role
                return await handler(request)
            if request.path.startswith(UI_FORMS):
                return _refused(request, 403, "Not allowed", "Your token may only read.")
        if request.method in READ_METHODS and wants_html(request):
            target = request.path_qs
            raise web.HTTPSeeOther(f"{SIGNIN}?next={quote(target, safe='')}")
        if request.path.startswith(UI_FORMS):
            return _refused(request, 403, "Not accepted", "Sign in again and retry.")
        return _token_needed()

    return check


async def _bearer(
    request: web.Request, handler: Handler, header: str, tokens: ApiTokens
) -> web.StreamResponse:
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        return _token_needed()
    is_admin = _matches(token, tokens.admin)
    if request.method in READ_METHODS and (is_admin or _matches(token, tokens.read)):
        request[ROLE] = "admin" if is_admin else "read"
        return await handler(request)
    if is_admin:
        request[ROLE] = "admin"
        return await handler(request)
    return problem(403, "Not allowed", "this token may not do that")


def _token_needed() -> web.Response:
    response = problem(401, "API token needed", "send Authorization: Bearer <token>")
    response.headers["WWW-Authenticate"] = 'Bearer realm="bridge"'
    return response


# --------------------------------------------------------------------------- sign in and out


def _next_of(value: object) -> str:
    """Where to go after signing in: a path on this site only (no open redirect)."""
    target = str(value or "/processes")
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return "/processes"
    if "\\" in target or any(ord(c) < 32 for c in target):
        return "/processes"
    return target


def _cookie_options(request: web.Request) -> dict[str, Any]:
    # Secure when the request came over TLS, or when the public URL is https (a proxy in front
    # terminates TLS).
    secure = request.secure or request.app[PUBLIC_ORIGIN].startswith("https:")
    return {"httponly": True, "samesite": "Strict", "secure": secure, "path": "/"}


@routes.get(SIGNIN)
async def signin_page(request: web.Request) -> web.Response:
    tokens = request.app[TOKENS]
    nxt = _next_of(request.query.get("next"))
    digest = session_of(request)
    role = tokens.role_of_digest(request.app[SECRET], digest) if digest else None
    seed = secrets.token_urlsafe(16)
    response = _page(
        request,
        "signin.html",
        open=tokens.open,
        role=role,
        next=nxt,
        csrf=_signer(request, "signin").dumps(seed),
        signout_csrf=form_nonce(request, "signout") if role else "",
    )
    response.set_cookie(SIGNIN_COOKIE, seed, max_age=FORM_SECONDS, **_cookie_options(request))
    return response


@routes.post(SIGNIN)
async def signin(request: web.Request) -> web.StreamResponse:
    tokens = request.app[TOKENS]
    form = await form_of(request)
    seed = request.cookies.get(SIGNIN_COOKIE, "")
    expected = _unsigned(request, "signin", str(form.get("csrf", "")), FORM_SECONDS)
    if not seed or expected != seed:
        return _refused(request, 403, "Not accepted", "Open the sign-in page again.")
    nxt = _next_of(form.get("next"))
    token = str(form.get("token", "")).strip()
    role = tokens.role_of(token) if token else None
    if role is None:
        # One answer for every wrong token; the page can be tried again.
        return _page(
            request,
            "signin.html",
            401,
            open=tokens.open,
            role=None,
            next=nxt,
            csrf=str(form.get("csrf", "")),
            signout_csrf="",
            error="That token is not valid here.",
        )
    response = web.HTTPSeeOther(nxt)
    cookie = _signer(request, "session").dumps({"t": _digest(request.app[SECRET], token)})
    response.set_cookie(SESSION_COOKIE, cookie, max_age=SESSION_SECONDS, **_cookie_options(request))
    response.del_cookie(SIGNIN_COOKIE, path="/")
    raise response


@routes.post(SIGNOUT)
async def signout(request: web.Request) -> web.StreamResponse:
    form = await form_of(request)
    if not form_nonce_ok(request, str(form.get("csrf", "")), "signout"):
        return _refused(request, 403, "Not accepted", "Open the sign-in page again.")
    response = web.HTTPSeeOther(SIGNIN)
    response.del_cookie(SESSION_COOKIE, path="/")
    raise response


def setup(app: web.Application, admin: Sequence[str], read: Sequence[str]) -> None:
    """Give the app its tokens (for the sign-in page) and the sign-in routes."""
    app[TOKENS] = ApiTokens(tuple(admin), tuple(read))
    app.add_routes(routes)
