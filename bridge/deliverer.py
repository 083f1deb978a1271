"""The deliverer: sends approval notices (mails over SMTP, webhook posts) outside the engine.

A step that tells people of an approval writes deliveries in its transaction
(``bridge.store.deliveries``); the engine never waits for a mail server. The deliverer, one per
worker, claims due deliveries for a lease and, **in the same transaction, mints the links** the
notice carries: a fresh approve/reject pair per seat it is for (a seat that has decided, or was
taken off by an escalation, gets none), of which only the SHA-256 hashes are stored. So no link
token is ever at rest in clear, not even in a delivery waiting to be retried: a retry mints new
links, and every link minted stays good until its seat decides or the approval ends. A request
whose approval was decided before it went out is skipped.

Then it sends, bounded by a timeout, at most ``concurrency`` at once:

- mail through ``aiosmtplib`` (plain text and HTML, ``Message-ID: <delivery id@domain>`` the
  same on every try, so mail clients and archives see one message);
- a webhook as a JSON POST through ``aiohttp`` (``X-Bridge-Delivery-Id`` and ``Idempotency-Key``
  the same on every try), to hosts that ``BRIDGE_HTTP_ALLOWED_HOSTS`` allows, redirects not
  followed.

A try that fails for a reason that may pass (a connection refused or reset, a server that
hangs, SMTP 4xx, HTTP 408/429/5xx) puts the delivery back for later, the pause doubling from
``backoff_seconds``; any worker takes it then. A delivery that fails for good (a bad address or
URL, a host not allowed, SMTP 5xx, HTTP 4xx, or ``max_attempts`` tries) ends as failed through
the engine (``DeliveryEnded``): the process history records it, the dead-letter topic gets a
letter, ``bridge_deliveries_total`` counts it. A sent one is recorded in the history too.
Deliveries are at least once: a worker that dies after sending and before recording leaves its
claim to run out, and the next one sends again under the same id. Links and tokens are never
logged.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal
from urllib.parse import urlsplit

import aiohttp
import aiosmtplib
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from bridge import faults
from bridge.approval_rows import mint_links
from bridge.asl.approvals import ApprovalStatus
from bridge.asl.errors import BridgeError
from bridge.asl.http_task import url_problem
from bridge.asl.notify import address_problem
from bridge.engine import Engine
from bridge.intake import DeliveryEnded
from bridge.invoker import host_allowed
from bridge.notices import Notice, SeatLinks, mail, one_line, shown_recipient, webhook_body
from bridge.poller import poll
from bridge.store import deliveries, waits
from bridge.store.database import database_now, reading
from bridge.store.deliveries import Delivery

log = logging.getLogger(__name__)

USER_AGENT = "bridge-notify"
#: Events whose notices carry decision links.
WITH_LINKS = ("Requested", "Reminded", "Escalated", "Assigned")


@dataclass(frozen=True)
class SmtpServer:
    host: str
    port: int = 25
    security: Literal["auto", "starttls", "tls", "none"] = "auto"
    username: str | None = None
    password: str | None = None
    sender: str = "bridge@localhost"

    @property
    def domain(self) -> str:
        """The domain of the Message-IDs: the sender's."""
        return self.sender.rpartition("@")[2] or "bridge.local"


class DeliveryFailed(BridgeError):
    """One try of a delivery failed; ``retriable`` says whether a later try may work."""

    def __init__(self, reason: str, *, retriable: bool) -> None:
        # What a server answered is shown as one plain line (no NUL: it goes into the history).
        reason = one_line(reason, 300)
        super().__init__(reason)
        self.reason = reason
        self.retriable = retriable


class Deliverer:
    """Claims deliveries, mints their links, sends them and reports how they ended."""

    def __init__(
        self,
        engine: Engine,
        *,
        smtp: SmtpServer | None,
        allowed_hosts: Sequence[str] = (),
        timeout_seconds: float = 10.0,
        max_attempts: int = 8,
        backoff_seconds: float = 5.0,
        max_backoff_seconds: float = 900.0,
        concurrency: int = 8,
        poll_seconds: float = 1.0,
    ) -> None:
        self.engine = engine
        self.smtp = smtp
        self.allowed_hosts = tuple(allowed_hosts)
        self.timeout = timeout_seconds
        self.max_attempts = max_attempts
        self.backoff_seconds = backoff_seconds
        self.max_backoff_seconds = max_backoff_seconds
        self.concurrency = concurrency
        self.poll_seconds = poll_seconds
        # Long enough for one try and its report; a try never runs past its timeout.
        self.lease = timedelta(seconds=3 * timeout_seconds + 30)
        self._running: dict[str, asyncio.Task[None]] = {}
        self._session: aiohttp.ClientSession | None = None

    async def run(self) -> None:
        try:
            await poll(
                self._round,
                name="delivering approval notices",
                poll_seconds=self.poll_seconds,
                wake=self.engine.wakeups.deliverer,
            )
        finally:
            await self.close()

    async def close(self) -> None:
        """Stop the tries in flight and give their claims back for the next worker."""
        running = dict(self._running)
        for task in running.values():
            task.cancel()
        await asyncio.gather(*running.values(), return_exceptions=True)
        if running:
            try:
                async with self.engine.db.begin() as conn:
                    await deliveries.release(conn, list(running))
            except Exception as exc:
                log.warning("could not release %d delivery claims: %r", len(running), exc)
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _round(self) -> bool:
        free = self.concurrency - len(self._running)
        if free <= 0:
            return False
        # A look first: an idle worker must not take SQLite's write lock every poll.
        async with reading(self.engine.db) as conn:
            if not await deliveries.any_claimable(conn, await database_now(conn)):
                return False
        async with self.engine.db.begin() as conn:
            now = await database_now(conn)
            claimed = await deliveries.claim(conn, free, now, now + self.lease)
            prepared = [(found, await self._prepared(conn, found)) for found in claimed]
        for found, notice in prepared:
            task = asyncio.create_task(self._deliver(found, notice), name=f"delivery {found.id}")
            self._running[found.id] = task
            task.add_done_callback(self._forget)
        return len(claimed) == free

    def _forget(self, task: asyncio.Task[None]) -> None:
        for key, running in list(self._running.items()):
            if running is task:
                del self._running[key]

    async def _prepared(
        self, conn: AsyncConnection, found: Delivery
    ) -> Notice | DeliveryFailed | None:
        """The notice, or why this one delivery cannot have one: one that cannot be built
        must not hold up the others in the claim (the database's own errors still end the
        round, to be tried again)."""
        try:
            return await self._notice(conn, found)
        except DBAPIError:
            raise
        except Exception as exc:
            log.exception("delivery %s: the notice could not be built", found.id)
            return DeliveryFailed(f"{type(exc).__name__}: {exc}"[:300], retriable=False)

    async def _notice(self, conn: AsyncConnection, found: Delivery) -> Notice | None:
        """What the delivery says, with fresh links (their hashes stored in the claim's
        transaction); None when there is nothing left to say."""
        approval = await waits.get_approval(conn, found.approval_id) if found.approval_id else None
        if approval is None:
            return None
        base = self.engine.config.base_url
        links: tuple[SeatLinks, ...] = ()
        if found.event in WITH_LINKS:
            if approval.status != ApprovalStatus.PENDING.value:
                return None
            voted = {vote.get("seat") for vote in approval.votes}
            seats = tuple(s for s in found.seats if s in approval.seats and s not in voted)
            if not seats:
                return None
            tokens, published = mint_links(seats, base)
            await waits.add_links(conn, approval.id, tokens)
            links = tuple(
                SeatLinks(link["seat"], link["approveUrl"], link["rejectUrl"]) for link in published
            )
        return Notice(
            delivery_id=found.id,
            event=found.event,
            title=approval.title,
            description=approval.description,
            data=approval.data,
            process_id=approval.process_id,
            definition=approval.definition,
            state=approval.state,
            approval_id=approval.id,
            status_url=f"{base}/approvals/{approval.id}",
            expires_at=approval.expires_at,
            outcome=found.outcome,
            links=links,
        )

    async def _deliver(self, found: Delivery, notice: Notice | DeliveryFailed | None) -> None:
        metrics = self.engine.metrics.deliveries
        try:
            if notice is None:
                metrics.labels(found.channel, "skipped").inc()
                await self._report(DeliveryEnded(found.id, "skipped", attempts=found.attempts))
                return
            try:
                if isinstance(notice, DeliveryFailed):
                    raise notice
                await self.send(found, notice)
                faults.point("after-delivery-before-mark")
            except DeliveryFailed as exc:
                shown = shown_recipient(found.channel, found.recipient)
                if exc.retriable and found.attempts < self.max_attempts:
                    pause = self.pause(found.attempts)
                    log.info(
                        "delivery %s (%s to %s) failed, try %d of %d, again in %.0fs: %s",
                        found.id,
                        found.channel,
                        shown,
                        found.attempts,
                        self.max_attempts,
                        pause,
                        exc.reason,
                    )
                    metrics.labels(found.channel, "retried").inc()
                    async with self.engine.db.begin() as conn:
                        at = await database_now(conn) + timedelta(seconds=pause)
                        await deliveries.try_again(conn, found.id, exc.reason, at)
                    return
                log.warning(
                    "delivery %s (%s to %s) failed for good after %d tries: %s",
                    found.id,
                    found.channel,
                    shown,
                    found.attempts,
                    exc.reason,
                )
                metrics.labels(found.channel, "failed").inc()
                ended = DeliveryEnded(found.id, "failed", exc.reason, found.attempts)
                await self._report(ended)
                return
            metrics.labels(found.channel, "sent").inc()
            await self._report(DeliveryEnded(found.id, "sent", attempts=found.attempts))
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception(
                "delivery %s of process %s could not be recorded; it is tried again when its "
                "claim runs out",
                found.id,
                found.process_id,
            )

    def pause(self, attempts: int) -> float:
        """The pause after the ``attempts``-th failed try: doubling, capped, with a little
        jitter so that deliveries failing together do not come back together."""
        pause = min(self.backoff_seconds * 2.0 ** min(attempts - 1, 30), self.max_backoff_seconds)
        return pause * random.uniform(0.8, 1.0)

    async def _report(self, ended: DeliveryEnded) -> None:
        outcome = await self.engine.apply_one(ended)
        if outcome.status not in ("applied", "ignored"):
            log.info("the end of delivery %s was not recorded: %s", ended.delivery_id, outcome)

    async def send(self, found: Delivery, notice: Notice) -> None:
        """One try; ``DeliveryFailed`` says why it failed and whether to try again."""
        try:
            if found.channel == "email":
                await self._send_mail(found.recipient, notice)
            elif found.channel == "webhook":
                await self._post(found.recipient, found.format or "json", notice)
            else:
                raise DeliveryFailed(f"unknown channel {found.channel!r}", retriable=False)
        except (DeliveryFailed, asyncio.CancelledError):
            raise
        except Exception as exc:
            # Not foreseen (a bug, a library's surprise): tried again and in the end failed
            # visibly, rather than lost in a log line while its claim runs out over and over.
            log.exception("delivery %s failed unexpectedly", found.id)
            raise DeliveryFailed(f"{type(exc).__name__}: {exc}"[:300], retriable=True) from exc

    async def _send_mail(self, to: str, notice: Notice) -> None:
        problem = address_problem(to)
        if problem is not None:
            raise DeliveryFailed(problem, retriable=False)
        server = self.smtp
        if server is None:
            raise DeliveryFailed("no SMTP server is configured (BRIDGE_SMTP_HOST)", retriable=False)
        message = mail(notice, server.sender, to, server.domain)
        try:
            # The client's own timeout bounds each command; this bounds the whole conversation.
            async with asyncio.timeout(self.timeout * 2):
                await aiosmtplib.send(
                    message,
                    hostname=server.host,
                    port=server.port,
                    username=server.username,
                    password=server.password,
                    use_tls=server.security == "tls",
                    start_tls={"auto": None, "starttls": True}.get(server.security, False),
                    timeout=self.timeout,
                )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [refused.code for refused in exc.recipients]
            text = "; ".join(f"{r.code} {r.message}" for r in exc.recipients)[:300]
            raise DeliveryFailed(
                f"the SMTP server refused the recipient: {text}",
                retriable=all(400 <= code < 500 for code in codes),
            ) from exc
        except aiosmtplib.SMTPResponseException as exc:
            raise DeliveryFailed(
                f"the SMTP server answered {exc.code} {exc.message}"[:300],
                retriable=not 500 <= exc.code < 600,
            ) from exc
        except (TimeoutError, aiosmtplib.SMTPTimeoutError) as exc:
            raise DeliveryFailed(
                f"the SMTP server did not answer within {self.timeout:g}s", retriable=True
            ) from exc
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise DeliveryFailed(
                f"SMTP {server.host}:{server.port}: {type(exc).__name__}: {exc}"[:300],
                retriable=True,
            ) from exc

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                cookie_jar=aiohttp.DummyCookieJar(),
                headers={"User-Agent": USER_AGENT},
                trust_env=False,
            )
        return self._session

    async def _post(self, url: str, format_: str, notice: Notice) -> None:
        problem = url_problem(url)
        if problem is not None:
            raise DeliveryFailed(f"the webhook URL {problem}", retriable=False)
        host = urlsplit(url).netloc.rpartition("@")[2]
        if not host_allowed(url, self.allowed_hosts):
            raise DeliveryFailed(
                f"{host} is not an allowed host (BRIDGE_HTTP_ALLOWED_HOSTS)", retriable=False
            )
        headers = {
            "X-Bridge-Delivery-Id": notice.delivery_id,
            "Idempotency-Key": notice.delivery_id,
        }
        try:
            async with asyncio.timeout(self.timeout):
                async with self._client().post(
                    url, json=webhook_body(notice, format_), headers=headers, allow_redirects=False
                ) as response:
                    status = response.status
                    await response.content.read(64 * 1024)
        except TimeoutError as exc:
            raise DeliveryFailed(
                f"{host} did not answer within {self.timeout:g}s", retriable=True
            ) from exc
        except (aiohttp.ClientError, OSError) as exc:
            # The exception's text may hold the URL, whose path is the webhook's secret.
            raise DeliveryFailed(f"{host}: {type(exc).__name__}", retriable=True) from exc
        if 200 <= status < 300:
            return
        raise DeliveryFailed(
            f"{host} answered {status}", retriable=status in (408, 425, 429) or status >= 500
        )


def smtp_server(
    host: str | None,
    port: int,
    security: Literal["auto", "starttls", "tls", "none"],
    username: str | None,
    password: str | None,
    sender: str,
) -> SmtpServer | None:
    """The configured SMTP server, or None without a host."""
    if not host:
        return None
    # An empty login (a variable set to nothing) is no login.
    return SmtpServer(host, port, security, username or None, password or None, sender)
