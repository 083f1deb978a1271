"""One try of a delivery against real servers started in the test, and how each failure is
judged: what may pass is tried again later, what cannot fails at once, and nothing hangs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, cast

import pytest
from aiohttp import web

from bridge.broker import free_port
from bridge.deliverer import Deliverer, DeliveryFailed, SmtpServer
from bridge.engine import Engine
from bridge.notices import Notice, SeatLinks
from bridge.store.deliveries import Delivery
from tests.integration.mailbox import Mailbox, smtp_server

pytestmark = pytest.mark.integration

NOTICE = Notice(
    delivery_id="d-1",
    event="Requested",
    title="Expense\r\nBcc: everyone@example.com",
    description=None,
    data={"blob": "x" * 300_000, "nul": "a\x00b"},
    process_id="p-1",
    definition="expense",
    state="Approve",
    approval_id="a-1",
    status_url="http://bridge.test/approvals/a-1",
    links=(SeatLinks("user:ann", "http://b/approve/A", "http://b/reject/R"),),
)


def delivery(channel: str, recipient: str, format_: str | None = None) -> Delivery:
    return Delivery(
        "d-1",
        "p-1",
        "a-1",
        "Approve",
        "Requested",
        channel,
        format_,
        recipient,
        ("user:ann",),
        None,
        1,
    )


def deliverer(port: int | None, **options: Any) -> Deliverer:
    smtp = None if port is None else SmtpServer("127.0.0.1", port, "none", sender="b@bridge.test")
    # A try needs no engine: only reporting its end does.
    return Deliverer(cast(Engine, None), smtp=smtp, timeout_seconds=0.5, **options)


@pytest.fixture
async def mailbox() -> AsyncIterator[Mailbox]:
    async with smtp_server() as found:
        yield found


async def failure(sender: Deliverer, target: Delivery) -> DeliveryFailed:
    started = asyncio.get_running_loop().time()
    with pytest.raises(DeliveryFailed) as caught:
        await sender.send(target, NOTICE)
    assert asyncio.get_running_loop().time() - started < 2.5, "a try must not hang"
    return caught.value


async def test_a_mail_goes_out_once_its_hostile_parts_are_tamed(mailbox: Mailbox) -> None:
    sender = deliverer(mailbox.port)
    await sender.send(delivery("email", "ann@example.com"), NOTICE)
    (mail,) = mailbox.mails
    assert mail.to == ["ann@example.com"]
    assert mail.message["Bcc"] is None and "\n" not in mail.message["Subject"]
    assert mail.message["Message-ID"] == "<d-1@bridge.test>"
    assert "\x00" not in mail.text and len(mail.text) < 10_000
    assert mail.links("approve") == ["http://b/approve/A"]


async def test_smtp_failures_are_judged(mailbox: Mailbox) -> None:
    sender = deliverer(mailbox.port)
    mailbox.refuse = ["451 4.3.0 try again later"]
    assert (await failure(sender, delivery("email", "ann@example.com"))).retriable
    mailbox.refuse_rcpt = {"gone@example.com": "550 5.1.1 no such user"}
    refused = await failure(sender, delivery("email", "gone@example.com"))
    assert not refused.retriable and "550" in refused.reason
    tries = mailbox.tries
    for bad in ("ann@example.com\r\nBcc: x@y.z", "a\x00@x.org", "x" * 5000, "<not text: int>"):
        assert not (await failure(sender, delivery("email", bad))).retriable
    assert mailbox.tries == tries  # refused before any connection
    assert (
        "BRIDGE_SMTP_HOST" in (await failure(deliverer(None), delivery("email", "a@x.org"))).reason
    )


async def test_a_server_that_hangs_or_is_away_is_a_try_that_may_pass() -> None:
    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(10)

    silent = await asyncio.start_server(hang, "127.0.0.1", 0)
    port = silent.sockets[0].getsockname()[1]
    try:
        hung = await failure(deliverer(port), delivery("email", "ann@example.com"))
        assert hung.retriable and "did not answer within 0.5s" in hung.reason
        hook = await failure(deliverer(None), delivery("webhook", f"http://127.0.0.1:{port}/h"))
        assert hook.retriable and "did not answer" in hook.reason
    finally:
        silent.close()
    away = await failure(deliverer(free_port()), delivery("email", "ann@example.com"))
    assert away.retriable


async def test_webhook_answers_are_judged() -> None:
    statuses = [500, 429, 404, 302]

    async def answer(request: web.Request) -> web.Response:
        status = statuses.pop(0)
        return web.Response(status=status, headers={"Location": "http://elsewhere/"})

    app = web.Application()
    app.router.add_post("/hook/{secret}", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    url = f"http://127.0.0.1:{port}/hook/s3cret"
    try:
        sender = deliverer(None, allowed_hosts=["127.0.0.1"])
        judged = [await failure(sender, delivery("webhook", url, "slack")) for _ in range(4)]
        assert [f.retriable for f in judged] == [True, True, False, False]
        assert all("s3cret" not in f.reason for f in judged)
        forbidden = await failure(
            deliverer(None, allowed_hosts=["hooks.example.com"]), delivery("webhook", url)
        )
        assert not forbidden.retriable and "not an allowed host" in forbidden.reason
        assert not (await failure(sender, delivery("webhook", "file:///etc/passwd"))).retriable
        assert statuses == []  # neither of the last two made a request
    finally:
        await runner.cleanup()
