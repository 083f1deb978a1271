"""The HTTP invoker: makes the calls of ``bridge:http:invoke`` tasks and feeds their answers back.

A step that reaches an HTTP task writes the call to the ``http_calls`` work queue in its
transaction (``bridge.store.http_calls``). The invoker, one per worker, claims pending calls for a
lease, makes each call outside any transaction with an ``aiohttp`` client, and hands the answer
(a response of any status, or the error of a call without one) to the engine as an
``HttpCallEnded`` input, which applies it to the waiting process and marks the call done in one
transaction. A worker that dies between a call and that transaction leaves the claim to run out;
the next worker makes the call again. HTTP calls are therefore **at least once**: services should
deduplicate with an idempotency key taken from the process (see the README).

The allow-list (``BRIDGE_HTTP_ALLOWED_HOSTS``) is checked before any connection is opened: a call
to another host fails with ``Http.Forbidden`` and is never made. Redirects are not followed (a
redirect could lead past the allow-list): a 3xx answer fails the task with ``Http.3xx``. No
cookies are kept between calls. Logs and spans show URLs with secret query values masked, and
never headers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import aiohttp
from opentelemetry.trace import Span, SpanKind, StatusCode

from bridge import faults
from bridge.asl import errors, limits
from bridge.asl.dataflow import MAX_OUTPUT_DEPTH
from bridge.asl.http_task import HttpRequest, redact_url, response_result
from bridge.engine import Engine
from bridge.intake import HttpCallEnded, Outcome
from bridge.poller import poll
from bridge.store import http_calls
from bridge.store.database import database_now, reading
from bridge.store.http_calls import HttpCall
from bridge.tracing import (
    TRACEPARENT,
    TRACESTATE,
    Tracing,
    format_traceparent,
    format_tracestate,
    parse,
)

log = logging.getLogger(__name__)

#: A response body larger than this fails the task with Http.ResponseTooLarge.
MAX_RESPONSE_BYTES = 1024 * 1024
USER_AGENT = "bridge-http-invoke"


# --------------------------------------------------------------------- the allow-list


def parse_pattern(pattern: str) -> tuple[str, str | None]:
    """A host pattern as (host, port or None for any): ``api.example.com``, ``*.example.com:8443``,
    ``[::1]:8080``, ``127.0.0.1:*``, ``*``."""
    pattern = pattern.strip().lower()
    if pattern.startswith("["):
        host, _, rest = pattern[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else None
        return host, port or None
    if pattern.count(":") == 1:
        host, port = pattern.split(":")
        return host, port or None
    return pattern, None


def host_allowed(url: str, patterns: Sequence[str]) -> bool:
    """Whether ``url``'s host (as written in it, not its resolved address) is allowed. No
    patterns allow every host; ``*`` alone does too."""
    if not patterns:
        return True
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").rstrip(".").lower()
        port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    except ValueError:
        return False
    for pattern in patterns:
        wanted, wanted_port = parse_pattern(pattern)
        if wanted_port not in (None, "*", str(port)):
            continue
        wanted = wanted.rstrip(".")
        if wanted == "*" or wanted == host:
            return True
        if wanted.startswith("*.") and host.endswith(wanted[1:]) and len(host) > len(wanted) - 1:
            return True
    return False


# --------------------------------------------------------------------- the invoker


class _TooLarge(errors.BridgeError):
    """A response body larger than a process may keep."""


class Invoker:
    """Claims HTTP calls, makes them (up to ``concurrency`` at once) and reports their answers."""

    def __init__(
        self,
        engine: Engine,
        *,
        allowed_hosts: Sequence[str] = (),
        concurrency: int = 32,
        lease_seconds: float = 10.0,
        poll_seconds: float = 0.1,
        tracing: Tracing | None = None,
    ) -> None:
        self.engine = engine
        self.allowed_hosts = tuple(allowed_hosts)
        self.concurrency = concurrency
        self.lease = timedelta(seconds=lease_seconds)
        self.poll_seconds = poll_seconds
        self.tracing = tracing or engine.tracing
        self._running: dict[str, asyncio.Task[None]] = {}
        self._session: aiohttp.ClientSession | None = None
        #: Calls made since start (tests and logs).
        self.calls_made = 0

    async def run(self) -> None:
        if not self.allowed_hosts:
            log.warning(
                "BRIDGE_HTTP_ALLOWED_HOSTS is not set: HTTP tasks may call any host "
                "(set it in production)"
            )
        every = max(self.lease.total_seconds() / 3, 0.05)
        renewing = asyncio.create_task(
            # A failed renewal is tried again well before the lease runs out.
            poll(
                self._renew, name="renewing HTTP call claims", poll_seconds=every, max_backoff=every
            ),
            name="http-lease-renewal",
        )
        try:
            await poll(
                self._claim_round,
                name="claiming HTTP calls",
                poll_seconds=self.poll_seconds,
                # Calls queued by this process start at once; those of other processes, and
                # claims that ran out, at the next poll.
                wake=self.engine.wakeups.http_invoker,
            )
        finally:
            renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewing
            await self.close()

    async def _claim_round(self) -> bool:
        return await self.claim_and_start() > 0

    async def close(self) -> None:
        """Stop the calls in flight and give their claims back, so the next worker makes them at
        once rather than after the lease."""
        running = dict(self._running)
        for task in running.values():
            task.cancel()
        await asyncio.gather(*running.values(), return_exceptions=True)
        if running:
            try:
                async with self.engine.db.begin() as conn:
                    await http_calls.release(conn, list(running))
            except Exception as exc:
                log.warning("could not release %d HTTP call claims: %r", len(running), exc)
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def claim_and_start(self) -> int:
        """Claim as many pending calls as there is room for and start them; how many."""
        free = self.concurrency - len(self._running)
        if free <= 0:
            return 0
        db = self.engine.db
        async with reading(db) as conn:
            if not await http_calls.any_claimable(conn, await database_now(conn)):
                return 0
        async with db.begin() as conn:
            now = await database_now(conn)
            calls = await http_calls.claim(conn, free, now, now + self.lease)
        for call in calls:
            task = asyncio.create_task(self._perform(call, now), name=f"http-call {call.id}")
            self._running[call.id] = task
            task.add_done_callback(self._forget)
        return len(calls)

    def _forget(self, task: asyncio.Task[None]) -> None:
        for call_id, running in list(self._running.items()):
            if running is task:
                del self._running[call_id]

    async def _renew(self) -> bool:
        """Extend the lease of the calls in flight."""
        if self._running:
            async with self.engine.db.begin() as conn:
                now = await database_now(conn)
                await http_calls.renew(conn, list(self._running), now + self.lease)
        return False

    async def _perform(self, call: HttpCall, now: datetime) -> None:
        try:
            ended = await self.call(call, now)
            self.engine.metrics.http_calls.labels(_result_label(ended)).inc()
            faults.point("after-http-call-before-result")
            await self._report(call, ended)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception(
                "the answer of HTTP call %s (process %s, state %s) could not be applied; the call "
                "is made again when its claim runs out",
                call.id,
                call.process_id,
                call.state,
            )

    def _session_for_calls(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.concurrency),
                # Calls of different processes must not share cookies.
                cookie_jar=aiohttp.DummyCookieJar(),
                headers={"User-Agent": USER_AGENT},
                trust_env=False,
            )
        return self._session

    async def call(self, call: HttpCall, now: datetime) -> HttpCallEnded:
        """Make ``call`` (unless the allow-list or its deadline forbid it) and say how it ended.
        ``now`` is the database's time when the call was claimed."""
        request = HttpRequest.from_json(call.request)
        shown = f"{request.method} {redact_url(request.url)}"
        answer = HttpCallEnded(call.id, traceparent=call.traceparent, tracestate=call.tracestate)
        if not host_allowed(request.url, self.allowed_hosts):
            host = urlsplit(request.url).netloc
            log.warning("refused HTTP call %s of process %s: %s", shown, call.process_id, host)
            cause = f"{host} is not an allowed host (BRIDGE_HTTP_ALLOWED_HOSTS)"
            return replace(answer, error=errors.HTTP_FORBIDDEN, cause=cause)
        bound = min(float(call.timeout_seconds), (call.deadline - now).total_seconds())
        if bound <= 0:
            cause = f"{shown}: its deadline passed before a worker could make the call"
            return replace(answer, error=errors.HTTP_TIMEOUT, cause=cause)
        span = self._span(call, request)
        if span is not None:
            context = span.get_span_context()
            answer = replace(
                answer,
                traceparent=format_traceparent(context),
                tracestate=format_tracestate(context),
            )
        headers = _with_trace(request.headers, answer.traceparent, answer.tracestate)
        body = None if request.body is None else request.body.encode("utf-8")
        self.calls_made += 1
        try:
            async with asyncio.timeout(bound):
                async with self._session_for_calls().request(
                    request.method, request.url, headers=headers, data=body, allow_redirects=False
                ) as response:
                    content = await _read(response, MAX_RESPONSE_BYTES)
                    result = response_result(
                        response.status,
                        response.reason,
                        response.headers.items(),
                        content,
                        response.content_type,
                        response.charset,
                    )
        except TimeoutError:
            error, cause = errors.HTTP_TIMEOUT, f"{shown}: no answer within {bound:g}s"
        except _TooLarge:
            error = errors.HTTP_RESPONSE_TOO_LARGE
            cause = f"{shown}: the response is larger than {MAX_RESPONSE_BYTES} bytes"
        except aiohttp.InvalidURL:
            error, cause = errors.HTTP_INVALID_REQUEST, f"{shown}: not a valid URL"
        except (aiohttp.ClientError, OSError) as exc:
            error, cause = errors.HTTP_CONNECTION_ERROR, f"{shown}: {type(exc).__name__}: {exc}"
        else:
            if span is not None:
                span.set_attribute("http.response.status_code", response.status)
            log.debug("HTTP call %s of process %s: %d", shown, call.process_id, response.status)
            # Bounded like any input: what the process could not keep fails the task, by name.
            problem = limits.problem(result, max_depth=MAX_OUTPUT_DEPTH)
            if problem is None:
                if span is not None:
                    if response.status >= 400:
                        span.set_status(StatusCode.ERROR, str(response.status))
                    span.end()
                return replace(answer, response=result)
            error, cause = errors.HTTP_INVALID_RESPONSE, f"{shown}: the response {problem}"
        if span is not None:
            span.set_attribute("error.type", error)
            span.set_status(StatusCode.ERROR, error)
            span.end()
        log.info("HTTP call of process %s failed: %s (%s)", call.process_id, error, cause)
        return replace(answer, error=error, cause=cause)

    def _span(self, call: HttpCall, request: HttpRequest) -> Span | None:
        """A client span under the step that asked for the call (calls of a traced step)."""
        if call.traceparent is None or not self.tracing.recording:
            return None
        parts = urlsplit(request.url)
        return self.tracing.start(
            f"bridge.http {request.method}",
            parse(call.traceparent, call.tracestate),
            kind=SpanKind.CLIENT,
            attributes={
                "http.request.method": request.method,
                "server.address": parts.hostname or "",
                "url.full": redact_url(request.url),
                "bridge.process.id": call.process_id,
                "bridge.state": call.state,
            },
        )

    async def _report(self, call: HttpCall, ended: HttpCallEnded) -> None:
        """Apply the answer through the engine's runner: it waits while the database is away,
        and gives up on an answer that keeps failing (the call ends, its process fails)."""
        _log_outcome(call, await self.engine.apply_one(ended))


def _result_label(ended: HttpCallEnded) -> str:
    status = ended.response.get("StatusCode") if isinstance(ended.response, dict) else None
    if isinstance(status, int):
        return f"{status // 100}xx"
    return ended.error or "unknown"


def _log_outcome(call: HttpCall, outcome: Outcome) -> None:
    if outcome.status != "applied":
        log.info(
            "the answer of HTTP call %s of process %s was not applied: %s (%s)",
            call.id,
            call.process_id,
            outcome.status,
            outcome.reason,
        )


def _with_trace(
    headers: dict[str, str], traceparent: str | None, tracestate: str | None
) -> dict[str, str]:
    """The request's headers with the trace context put in place of any they had."""
    if traceparent is None:
        return dict(headers)
    found = {k: v for k, v in headers.items() if k.lower() not in (TRACEPARENT, TRACESTATE)}
    found[TRACEPARENT] = traceparent
    if tracestate:
        found[TRACESTATE] = tracestate
    return found


async def _read(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """The body, up to ``limit`` bytes; ``_TooLarge`` beyond."""
    if response.content_length is not None and response.content_length > limit:
        raise _TooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
    return b"".join(chunks)
