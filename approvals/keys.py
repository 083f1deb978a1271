"""What the web app keeps for its handlers (aiohttp ``AppKey``s), in one place: a handler module
reads these, never another handler module's globals."""

from __future__ import annotations

from aiohttp import web

from approvals.identity import ProxyIdentity
from bridge.engine import Engine
from bridge.event_producer import EventProducer

#: The bridge engine every request goes through.
ENGINE = web.AppKey("engine", Engine)
#: The key approval links and page nonces are signed with.
SECRET = web.AppKey("secret", bytes)
#: The bridge's public origin (scheme, host and port of ``BRIDGE_BASE_URL``).
PUBLIC_ORIGIN = web.AppKey("public_origin", str)
#: Who a trusted reverse proxy says a person is (approvals/identity.py).
IDENTITY = web.AppKey("identity", ProxyIdentity)
#: The Kafka producer of ``POST /events``.
PRODUCER = web.AppKey("event_producer", EventProducer)
