"""Retry or not, by code and class: the database's SQLSTATE or SQLite result code decides."""

from __future__ import annotations

import sqlite3

import pytest
from sqlalchemy import exc as sa

from bridge.failures import Retry, classify


class _PostgresError(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__(f"error {sqlstate}")
        self.sqlstate = sqlstate


def _pg(sqlstate: str, kind: type[sa.DBAPIError] = sa.DBAPIError) -> sa.DBAPIError:
    return kind("SELECT 1", {}, _PostgresError(sqlstate))


def _sqlite(code: int, kind: type[sa.DBAPIError] = sa.OperationalError) -> sa.DBAPIError:
    original = sqlite3.OperationalError("sqlite says no")
    original.sqlite_errorcode = code
    return kind("SELECT 1", {}, original)


@pytest.mark.parametrize(
    ("sqlstate", "expected"),
    [
        ("40001", Retry.NOW),  # serialization_failure
        ("40P01", Retry.NOW),  # deadlock_detected
        ("55P03", Retry.NOW),  # lock_not_available
        ("23505", Retry.NOW),  # unique_violation: a concurrent writer took the key
        ("08006", Retry.LATER),  # connection_failure
        ("08003", Retry.LATER),  # connection_does_not_exist
        ("57P01", Retry.LATER),  # admin_shutdown
        ("53300", Retry.LATER),  # too_many_connections
        ("22001", Retry.NEVER),  # string_data_right_truncation (varchar too long)
        ("22P05", Retry.NEVER),  # untranslatable_character (\u0000 in JSONB)
        ("22021", Retry.NEVER),  # character_not_in_repertoire (0x00 in text)
        ("23503", Retry.NEVER),  # foreign_key_violation
        ("54000", Retry.NEVER),  # program_limit_exceeded
        ("42P01", Retry.LATER),  # undefined_table: the schema is not migrated yet
        ("3D000", Retry.LATER),  # invalid_catalog_name: no such database
        ("28P01", Retry.LATER),  # invalid_password
        ("25006", Retry.LATER),  # read_only_sql_transaction: a standby after a fail-over
    ],
)
def test_postgres_errors_by_sqlstate(sqlstate: str, expected: Retry) -> None:
    assert classify(_pg(sqlstate)) is expected


def test_the_words_of_a_message_decide_nothing() -> None:
    """A refused value whose message mentions a connection is still refused for good."""
    error = sa.DataError("INSERT", {}, _PostgresError("22001"))
    error.orig.args = ("value 'connection closed deadlock' too long for type varchar(500)",)
    assert classify(error) is Retry.NEVER


@pytest.mark.parametrize(
    ("code", "kind", "expected"),
    [
        (sqlite3.SQLITE_BUSY, sa.OperationalError, Retry.NOW),
        (sqlite3.SQLITE_LOCKED, sa.OperationalError, Retry.NOW),
        (sqlite3.SQLITE_IOERR, sa.OperationalError, Retry.LATER),
        (sqlite3.SQLITE_FULL, sa.OperationalError, Retry.LATER),
        (sqlite3.SQLITE_TOOBIG, sa.DataError, Retry.NEVER),
        (sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY, sa.IntegrityError, Retry.NOW),
        (sqlite3.SQLITE_MISMATCH, sa.IntegrityError, Retry.NEVER),
    ],
)
def test_sqlite_errors_by_result_code(
    code: int, kind: type[sa.DBAPIError], expected: Retry
) -> None:
    assert classify(_sqlite(code, kind)) is expected


def test_errors_without_a_code_by_class() -> None:
    assert classify(sa.OperationalError("x", {}, Exception("gone"))) is Retry.LATER
    assert classify(sa.InterfaceError("x", {}, Exception("closed"))) is Retry.LATER
    assert classify(sa.DataError("x", {}, Exception("bad value"))) is Retry.NEVER
    assert classify(sa.ProgrammingError("x", {}, Exception("bug"))) is Retry.NEVER
    invalidated = sa.DBAPIError("x", {}, Exception("lost"), connection_invalidated=True)
    assert classify(invalidated) is Retry.LATER


def test_outages_and_input_errors_outside_the_database() -> None:
    assert classify(ConnectionRefusedError()) is Retry.LATER
    assert classify(OSError("network unreachable")) is Retry.LATER
    assert classify(TimeoutError()) is Retry.LATER
    assert classify(sa.TimeoutError("pool exhausted")) is Retry.LATER
    assert classify(RecursionError()) is Retry.NEVER
    assert classify(ValueError("cannot serialise")) is Retry.NEVER
