"""The bridge warns when it opens a PostgreSQL database whose churning tables are not vacuumed:
the outbox and HTTP calls keep every deleted row, and their reads slow down as they grow."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from bridge import bootstrap
from bridge.bootstrap import open_core
from bridge.settings import Settings
from bridge.store.database import open_database
from bridge.store.upkeep import check_vacuum, vacuum_settings
from tests.conftest import create_postgres_database, drop_postgres_database

pytestmark = [pytest.mark.integration, pytest.mark.postgres]


async def test_a_table_with_autovacuum_disabled_is_named_when_the_bridge_opens(
    migrated_postgres: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = await create_postgres_database(template=migrated_postgres)
    db = open_database(url)
    try:
        async with db.begin() as conn:
            await conn.execute(text("ALTER TABLE outbox SET (autovacuum_enabled = off)"))
            await conn.execute(text("ALTER TABLE http_calls SET (autovacuum_enabled = false)"))
            server_on = (await conn.execute(text("SHOW autovacuum"))).scalar_one() == "on"
        settings = await vacuum_settings(db)
        warning = await check_vacuum(db)
        with caplog.at_level(logging.WARNING, logger="bridge.bootstrap"):
            core = await open_core(Settings(database_url=url, definitions_dir=tmp_path))
            await core.close()
    finally:
        await db.dispose()
        await drop_postgres_database(url)
    assert settings == (server_on, ["outbox", "http_calls"])
    assert warning is not None
    if server_on:
        assert "disabled for the tables outbox, http_calls" in warning
    else:  # this server runs without autovacuum at all, which is said first
        assert "autovacuum is off on this PostgreSQL server" in warning
    assert warning in caplog.messages


async def test_sqlite_needs_no_vacuum_warning(tmp_path: Path) -> None:
    db = open_database(f"sqlite+aiosqlite:///{tmp_path / 'bridge.db'}")
    try:
        assert await check_vacuum(db) is None
    finally:
        await db.dispose()


async def test_a_failed_vacuum_check_does_not_keep_the_bridge_from_starting(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def refused(db: object) -> str | None:
        raise DBAPIError("SELECT current_setting('autovacuum')", None, PermissionError("denied"))

    monkeypatch.setattr(bootstrap, "check_vacuum", refused)
    core = await bootstrap.open_core(Settings(database_url=database_url, definitions_dir=tmp_path))
    await core.close()
