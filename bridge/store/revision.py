"""Whether a database's schema is at the newest revision, without loading Alembic.

Every process upgrades the database at start (``bridge.store.migrate``), but almost always it is
there already; Alembic and Mako then cost each process about 7 MB of memory for nothing. The
revisions are numbered files, ``versions/NNNN_<slug>.py`` with revision ``"NNNN"`` (a test holds
every file to that), so the newest revision is the highest number, and a database whose
``alembic_version`` names it needs no upgrade.
"""

from __future__ import annotations

import re
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from bridge.store.database import reading

VERSIONS = Path(__file__).resolve().parent.parent / "migrations" / "versions"

_NUMBERED = re.compile(r"(\d{4})_\w+\.py")


def head_revision() -> str:
    """The newest revision shipped: the highest number among the revision files."""
    numbers = [m.group(1) for path in VERSIONS.iterdir() if (m := _NUMBERED.fullmatch(path.name))]
    return max(numbers)


async def at_head(db: AsyncEngine) -> bool:
    """True when the database's schema is at ``head_revision``; False when it is not or was
    never migrated (no ``alembic_version`` table)."""
    try:
        async with reading(db) as conn:
            rows = (await conn.execute(text("SELECT version_num FROM alembic_version"))).all()
    except DBAPIError:
        return False
    return [row[0] for row in rows] == [head_revision()]
