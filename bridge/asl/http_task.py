"""HTTP tasks (``bridge:http:invoke``) as pure data: the request a state asks for, the result a
response becomes, the error a failed call is named by, and what history may show of either.

The interpreter builds an ``HttpRequest`` from a state's Parameters (or Arguments) and hands it to
the shell in an ``InvokeHttp`` effect; the shell makes the call outside the database transaction
and answers with the response (``response_result``) or an error name. Nothing here does I/O:
``urllib.parse`` only splits and joins strings.

Error names: a response outside 2xx fails the state with ``Http.<status>`` (``Http.404``); a
Retrier or Catcher naming ``Http.4xx`` or ``Http.5xx`` matches every status of that class (see
``errors.error_matches``). A call without a response fails with ``Http.Timeout``,
``Http.ConnectionError``, ``Http.Forbidden`` (refused by the allow-list, never made),
``Http.InvalidRequest`` (the request built from the data is not valid) or
``Http.ResponseTooLarge``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import SplitResult, parse_qsl, urlencode, urlsplit, urlunsplit

from bridge.asl import errors, limits
from bridge.asl.errors import Failure, StatesError
from bridge.asl.types import JSON

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD")
#: The fields of a ``bridge:http:invoke`` task's Parameters (each may also end in ``.$``).
FIELDS = ("Method", "Url", "ApiEndpoint", "Headers", "QueryParameters", "RequestBody")
#: TimeoutSeconds when the state gives none: a call is never left without a bound.
DEFAULT_TIMEOUT_SECONDS = 60
#: The state's own deadline comes this long after the call's, so that the call's answer (even
#: ``Http.Timeout``) arrives before it; the deadline ends the state only when no worker answered.
DEADLINE_GRACE_SECONDS = 10
#: How much of a failed response's body its Cause keeps (AWS caps Cause at 32,768 characters).
MAX_CAUSE_CHARS = 8192

#: Headers the HTTP client sets itself; a definition may not.
RESERVED_HEADERS = frozenset(
    {
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "proxy-connection",
        "upgrade",
        "te",
        "trailer",
        "expect",
    }
)
#: Header and query parameter names whose values never reach the history or the logs.
_SECRET_NAMES = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
        "key",
        "sig",
        "code",
        "pass",
    }
)
_SECRET_PARTS = (
    "auth",
    "token",
    "secret",
    "password",
    "passwd",
    "apikey",
    "api-key",
    "api_key",
    "session",
    "signature",
    "credential",
    "private",
)
REDACTED = "***"

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


@dataclass(frozen=True)
class HttpRequest:
    """A request as it goes on the wire: ``url`` has the query parameters in it, ``headers`` the
    content type of ``body`` (text: JSON already encoded, or a string body as it was given)."""

    method: str
    url: str
    headers: dict[str, str]
    body: str | None = None

    def to_json(self) -> dict[str, JSON]:
        return {"Method": self.method, "Url": self.url, "Headers": self.headers, "Body": self.body}

    @classmethod
    def from_json(cls, data: Mapping[str, JSON]) -> HttpRequest:
        return cls(str(data["Method"]), str(data["Url"]), dict(data["Headers"]), data.get("Body"))

    def redacted(self) -> dict[str, JSON]:
        """What the history shows of the request: secret header and query values masked, no
        body (it came from the process data, which the history has already)."""
        return {
            "method": self.method,
            "url": redact_url(self.url),
            "headers": redact_headers(self.headers),
            "hasBody": self.body is not None,
        }


# --------------------------------------------------------------------- building a request


def build_request(parameters: JSON) -> HttpRequest:
    """The request a state's evaluated Parameters ask for; ``StatesError(Http.InvalidRequest)``
    naming the field when they do not make one."""
    if not isinstance(parameters, dict):
        raise _invalid("the parameters must be an object with Method and Url")
    unknown = sorted(set(parameters) - set(FIELDS))
    if unknown:
        raise _invalid(f"unknown field(s) {', '.join(unknown)}; known: {', '.join(FIELDS)}")
    method = method_problem(parameters.get("Method"))
    if isinstance(method, _Problem):
        raise _invalid(f"Method: {method.text}")
    if "Url" in parameters and "ApiEndpoint" in parameters:
        raise _invalid("Url and ApiEndpoint are exclusive")
    url_field = "ApiEndpoint" if "ApiEndpoint" in parameters else "Url"
    url = parameters.get(url_field)
    if (problem := url_problem(url)) is not None:
        raise _invalid(f"{url_field}: {problem}")
    assert isinstance(url, str)
    headers = _headers(parameters.get("Headers"))
    url = _with_query(urlsplit(url), parameters.get("QueryParameters"))
    body: str | None = None
    if "RequestBody" in parameters:
        if method in ("GET", "HEAD"):
            raise _invalid(f"RequestBody: a {method} request has no body")
        given = parameters["RequestBody"]
        if isinstance(given, str):
            body, content_type = given, "text/plain; charset=utf-8"
        else:
            body = json.dumps(given, separators=(",", ":"), ensure_ascii=False)
            content_type = "application/json"
        if not any(name.lower() == "content-type" for name in headers):
            headers["Content-Type"] = content_type
    return HttpRequest(method, url, headers, body)


@dataclass(frozen=True)
class _Problem:
    text: str


def method_problem(value: JSON) -> str | _Problem:
    """The method, upper-cased, or what is wrong with it."""
    if not isinstance(value, str) or value.upper() not in METHODS:
        return _Problem(f"must be one of {', '.join(METHODS)}, not {value!r}")
    return value.upper()


def url_problem(value: JSON) -> str | None:
    """What is wrong with ``value`` as the URL of a call, or None for an absolute http(s) URL."""
    if not isinstance(value, str) or not value:
        return "must be an absolute http:// or https:// URL"
    if any(ord(char) <= 32 or ord(char) == 127 for char in value):
        return "must not contain spaces or control characters"
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as exc:
        return f"is not a valid URL ({exc})"
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return f"must be an absolute http:// or https:// URL, not {value!r}"
    if parts.username is not None or parts.password is not None:
        return "must not carry credentials; send them in a header"
    if port == 0:
        return "port 0 is not a port"
    return None


def header_problem(name: str, value: JSON) -> str | None:
    if not _TOKEN.fullmatch(name):
        return f"{name!r} is not a valid header name"
    if name.lower() in RESERVED_HEADERS:
        return f"{name} is set by the HTTP client, not by a definition"
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return f"{name}: a header value is a string or a number"
    if any(char in str(value) for char in "\r\n\0"):
        return f"{name}: a header value must not contain line breaks"
    return None


def _headers(given: JSON) -> dict[str, str]:
    if given is None:
        return {}
    if not isinstance(given, dict):
        raise _invalid("Headers: must be an object of header names and values")
    headers: dict[str, str] = {}
    seen: set[str] = set()
    for name, value in given.items():
        if (problem := header_problem(name, value)) is not None:
            raise _invalid(f"Headers: {problem}")
        if name.lower() in seen:
            raise _invalid(f"Headers: {name} is given twice")
        seen.add(name.lower())
        headers[name] = str(value)
    return headers


def _with_query(parts: SplitResult, given: JSON) -> str:
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    if given is not None:
        if not isinstance(given, dict):
            raise _invalid("QueryParameters: must be an object of names and values")
        for name, value in given.items():
            for item in value if isinstance(value, list) else [value]:
                if item is None or isinstance(item, dict | list):
                    raise _invalid(
                        f"QueryParameters.{name}: a value is a string, a number, a boolean or "
                        "a list of those"
                    )
                text = json.dumps(item) if isinstance(item, bool) else str(item)
                pairs.append((name, text))
    query = urlencode(pairs) if pairs else ""
    return urlunsplit((parts.scheme.lower(), parts.netloc, parts.path or "/", query, ""))


def _invalid(message: str) -> StatesError:
    return StatesError(errors.HTTP_INVALID_REQUEST, message)


# --------------------------------------------------------------------- the response


def response_result(
    status: int,
    reason: str | None,
    headers: Iterable[tuple[str, str]],
    body: bytes,
    content_type: str | None,
    charset: str | None,
) -> dict[str, JSON]:
    """The result of a call that got a response: ``{"StatusCode", "StatusText", "Headers",
    "ResponseBody"}``. Header names are lower-cased, repeated headers joined with ``", "``; the
    body is parsed when it is JSON, else it is text; an empty body is null."""
    joined: dict[str, str] = {}
    for name, value in headers:
        key = name.lower()
        joined[key] = f"{joined[key]}, {value}" if key in joined else value
    text = body.decode(_codec(charset), errors="replace") if body else ""
    parsed: JSON = None
    if text:
        parsed = text
        if _is_json(content_type):
            try:
                parsed = json.loads(text, parse_constant=limits.refuse_constant)
            except (ValueError, RecursionError):
                parsed = text
    return {
        "StatusCode": status,
        "StatusText": reason or "",
        "Headers": joined,
        "ResponseBody": parsed,
    }


def failure_of(result: Mapping[str, JSON]) -> Failure | None:
    """None for a 2xx answer; otherwise ``Http.<status>`` with the answer (secret headers masked,
    the body cut short) as its Cause, which a Catch can parse with ``States.StringToJson``."""
    status = result.get("StatusCode")
    if isinstance(status, int) and 200 <= status < 300:
        return None
    body = result.get("ResponseBody")
    if isinstance(body, str) and len(body) > MAX_CAUSE_CHARS // 2:
        body = body[: MAX_CAUSE_CHARS // 2] + "..."
    elif not isinstance(body, str):
        encoded = json.dumps(body, ensure_ascii=False)
        if len(encoded) > MAX_CAUSE_CHARS // 2:
            body = encoded[: MAX_CAUSE_CHARS // 2] + "..."
    cause = json.dumps(
        {
            "StatusCode": status,
            "StatusText": result.get("StatusText", ""),
            "Headers": redact_headers(result.get("Headers") or {}),
            "ResponseBody": body,
        },
        ensure_ascii=False,
    )
    return Failure(status_error(status), cause[:MAX_CAUSE_CHARS])


def status_error(status: JSON) -> str:
    """The error name of a response with ``status``: ``Http.404``."""
    return f"Http.{status}"


def _codec(charset: str | None) -> str:
    if charset:
        try:
            "".encode(charset)
        except LookupError:
            return "utf-8"
        return charset
    return "utf-8"


def _is_json(content_type: str | None) -> bool:
    if not content_type:
        return False
    kind = content_type.split(";", 1)[0].strip().lower()
    return kind == "application/json" or kind.endswith("+json")


# --------------------------------------------------------------------- redaction


def is_secret(name: str) -> bool:
    """Whether a header or query parameter of this name may carry a secret."""
    lowered = name.lower()
    return lowered in _SECRET_NAMES or any(part in lowered for part in _SECRET_PARTS)


def redact_headers(headers: Mapping[str, JSON]) -> dict[str, JSON]:
    return {name: REDACTED if is_secret(name) else value for name, value in headers.items()}


def redact_result(result: Mapping[str, JSON]) -> dict[str, JSON]:
    """A call's result as the history shows it: secret response headers (Set-Cookie) masked."""
    headers = result.get("Headers")
    if not isinstance(headers, Mapping):
        return dict(result)
    return {**result, "Headers": redact_headers(headers)}


def redact_url(url: str) -> str:
    """``url`` with the values of secret query parameters masked (and any credentials dropped)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return REDACTED
    if ":" in host:
        host = f"[{host}]"
    netloc = host if port is None else f"{host}:{port}"
    pairs = [
        (name, REDACTED if is_secret(name) else value)
        for name, value in parse_qsl(parts.query, keep_blank_values=True)
    ]
    query = urlencode(pairs, safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))
