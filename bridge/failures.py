"""Whether a failure is worth trying again: by error code and class, never by words.

A batch that fails is either blocked by something outside it (the database is away or busy: try
the same batch again, at once or after a pause) or refused for what it holds (a value the
database will not store, a bug an input triggers: trying again changes nothing, so the batch is
split and the one input that fails is given up on). The database says which by its SQLSTATE
(PostgreSQL) or result code (SQLite); SQLAlchemy's exception classes follow the DB-API's.
"""

from __future__ import annotations

import asyncio
import enum

from sqlalchemy import exc as sa


class Retry(enum.Enum):
    #: A conflict with another writer (serialisation failure, deadlock, a busy SQLite file):
    #: the same batch again, at once.
    NOW = "now"
    #: The database (or the network to it) is away: the same batch again after a pause, for as
    #: long as it takes.
    LATER = "later"
    #: The batch itself is refused: trying it again changes nothing.
    NEVER = "never"


#: SQLSTATE classes and codes (PostgreSQL, appendix A).
_NOW_CODES = frozenset({"40001", "40P01", "55P03"})
#: Connection exceptions, insufficient resources, operator intervention, system errors; and what
#: says the database is not (yet) the one configured: a read-only standby (25), a refused login
#: (28), a missing database (3D), a schema that is not migrated or a missing grant (42). None of
#: these is any input's fault, so giving up on inputs for them would lose every one.
_LATER_CLASSES = frozenset({"08", "25", "28", "3D", "42", "53", "57", "58"})
# SQLite's primary result codes (https://www.sqlite.org/rescode.html), written out rather than
# taken from the sqlite3 module, which a bridge on PostgreSQL need not load.
_SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_CONSTRAINT = 5, 6, 19
_SQLITE_IOERR, _SQLITE_FULL, _SQLITE_CANTOPEN, _SQLITE_PROTOCOL = 10, 13, 14, 15
#: SQLite result codes (primary, the low byte): BUSY, LOCKED.
_SQLITE_NOW = frozenset({_SQLITE_BUSY, _SQLITE_LOCKED})
#: IOERR, FULL, CANTOPEN, PROTOCOL, NOTADB is not among them: a broken file stays broken.
_SQLITE_LATER = frozenset({_SQLITE_IOERR, _SQLITE_FULL, _SQLITE_CANTOPEN, _SQLITE_PROTOCOL})


def classify(error: BaseException) -> Retry:
    """How to treat ``error`` raised while applying a batch."""
    if isinstance(error, asyncio.TimeoutError | ConnectionError | OSError):
        return Retry.LATER
    if isinstance(error, sa.TimeoutError):
        # The connection pool had nothing to give in time.
        return Retry.LATER
    if isinstance(error, sa.DBAPIError):
        return _database(error)
    return Retry.NEVER


def sqlstate(error: sa.DBAPIError) -> str | None:
    """The SQLSTATE PostgreSQL answered with, None for other databases and client errors."""
    code = getattr(error.orig, "sqlstate", None) or getattr(error.orig, "pgcode", None)
    return code if isinstance(code, str) and len(code) == 5 else None


def _database(error: sa.DBAPIError) -> Retry:
    if error.connection_invalidated:
        return Retry.LATER
    code = sqlstate(error)
    if code is not None:
        if code in _NOW_CODES:
            return Retry.NOW
        if code[:2] in _LATER_CLASSES:
            return Retry.LATER
        if code == "23505":
            # A unique key taken by a concurrent writer (two workers marking one event): the
            # batch again sees the other's row and decides accordingly.
            return Retry.NOW
        return Retry.NEVER
    original = error.orig
    sqlite_code = getattr(original, "sqlite_errorcode", None)
    if isinstance(sqlite_code, int):
        primary = sqlite_code & 0xFF
        if primary in _SQLITE_NOW:
            return Retry.NOW
        if primary in _SQLITE_LATER:
            return Retry.LATER
        if primary == _SQLITE_CONSTRAINT and isinstance(error, sa.IntegrityError):
            return Retry.NOW
        return Retry.NEVER
    # No code: a client-side refusal of a value, or a connection that went away mid-call.
    if isinstance(error, sa.DataError | sa.ProgrammingError | sa.NotSupportedError):
        return Retry.NEVER
    if isinstance(error, sa.IntegrityError):
        return Retry.NOW
    if isinstance(error, sa.InterfaceError | sa.OperationalError):
        return Retry.LATER
    if isinstance(original, ConnectionError | OSError | asyncio.TimeoutError):
        return Retry.LATER
    return Retry.NEVER
