"""While the database is away, an HTTP request waits a while, then hears 503 (problem+json with
Retry-After), never a 500, and never waits forever."""

from __future__ import annotations

import time

import pytest
from aiohttp.test_utils import TestClient, TestServer

import approvals.api
from approvals.app import build_app
from bridge.broker import free_port
from bridge.definitions import Registry
from bridge.engine import Engine
from bridge.store.database import open_database

pytestmark = pytest.mark.integration


async def test_a_request_hears_503_when_the_database_stays_away(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(approvals.api, "DATABASE_PATIENCE_SECONDS", 1.0)
    # Nothing listens there: every connection is refused, as when PostgreSQL is down.
    db = open_database(f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/bridge")
    client = TestClient(TestServer(build_app(Engine(db, Registry()), "secret")))
    await client.start_server()
    try:
        started = time.monotonic()
        response = await client.post("/processes", json={"definition": "any", "input": {}})
        waited = time.monotonic() - started
        assert response.status == 503
        assert response.headers["Content-Type"].startswith("application/problem+json")
        assert response.headers["Retry-After"] == "5"
        body = await response.json()
        assert "database is unavailable" in body["detail"]
        assert 0.5 < waited < 5
    finally:
        await client.close()
        await db.dispose()
