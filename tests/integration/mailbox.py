"""A real SMTP server (aiosmtpd) and a webhook receiver (aiohttp), started in the test, that keep
what the bridge sends them, and can be told to refuse for a while."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiohttp import web
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from bridge.broker import free_port

LINK = re.compile(r"https?://\S+?/(approve|reject)/[A-Za-z0-9_-]+")


@dataclass
class Mail:
    to: list[str]
    message: EmailMessage

    @property
    def text(self) -> str:
        body = self.message.get_body(("plain",))
        assert body is not None
        return str(body.get_content())

    @property
    def html(self) -> str:
        body = self.message.get_body(("html",))
        assert body is not None
        return str(body.get_content())

    def links(self, kind: str) -> list[str]:
        return [m.group(0) for m in LINK.finditer(self.text) if m.group(1) == kind]


@dataclass
class Mailbox:
    """What the SMTP server received; ``refuse`` answers the next DATA commands with these
    replies (``451 ...`` for a failure that may pass), ``refuse_rcpt`` refuses addresses."""

    port: int
    mails: list[Mail] = field(default_factory=list)
    refuse: list[str] = field(default_factory=list)
    refuse_rcpt: dict[str, str] = field(default_factory=dict)
    tries: int = 0

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        if address in self.refuse_rcpt:
            return self.refuse_rcpt[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.tries += 1
        if self.refuse:
            return self.refuse.pop(0)
        content = envelope.original_content or b""
        message = message_from_bytes(content, policy=policy.default)
        assert isinstance(message, EmailMessage)
        self.mails.append(Mail(list(envelope.rcpt_tos), message))
        return "250 OK"

    async def wait_for(
        self, predicate: Callable[[Mail], bool], count: int = 1, timeout: float = 20.0
    ) -> list[Mail]:
        deadline = time.monotonic() + timeout
        while True:
            found = [mail for mail in self.mails if predicate(mail)]
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                subjects = [str(mail.message["Subject"]) for mail in self.mails]
                raise AssertionError(f"{count} mails not received in {timeout}s: {subjects}")
            await asyncio.sleep(0.05)


@asynccontextmanager
async def smtp_server() -> AsyncIterator[Mailbox]:
    mailbox = Mailbox(free_port())
    controller = Controller(mailbox, hostname="127.0.0.1", port=mailbox.port)
    controller.start()
    try:
        yield mailbox
    finally:
        controller.stop()


@dataclass
class Hooks:
    """What the webhook receiver got: (headers, JSON body) per post; ``fail`` answers the next
    posts with these statuses."""

    url: str
    posts: list[tuple[dict[str, str], Any]] = field(default_factory=list)
    fail: list[int] = field(default_factory=list)

    async def wait_for(
        self, predicate: Callable[[Any], bool], count: int = 1, timeout: float = 20.0
    ) -> list[tuple[dict[str, str], Any]]:
        deadline = time.monotonic() + timeout
        while True:
            found = [post for post in self.posts if predicate(post[1])]
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"{count} webhook posts not received: {self.posts}")
            await asyncio.sleep(0.05)


@asynccontextmanager
async def webhook_receiver() -> AsyncIterator[Hooks]:
    port = free_port()
    hooks = Hooks(f"http://127.0.0.1:{port}/hook/T000/B000/secret")

    async def receive(request: web.Request) -> web.Response:
        if hooks.fail:
            return web.Response(status=hooks.fail.pop(0))
        hooks.posts.append((dict(request.headers), json.loads(await request.read())))
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook/{rest:.*}", receive)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield hooks
    finally:
        await runner.cleanup()
