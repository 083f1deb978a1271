"""A time given to a fixed SQL text on SQLite is the text SQLAlchemy's own DateTime writes there,
so that times written either way compare and sort alike."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.dialects import sqlite

from bridge.store import sql_text
from bridge.store.schema import UTCDateTime


class _SQLite:
    """What ``sql_text.time`` looks at of a connection: its dialect."""

    dialect: Any = sqlite.dialect()


moments = st.datetimes(
    min_value=datetime(1970, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
)
offsets = st.integers(min_value=-14 * 60, max_value=14 * 60).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)


@given(moments, offsets)
def test_a_time_is_the_text_sqlalchemy_writes_on_sqlite(moment: datetime, zone: timezone) -> None:
    dialect = sqlite.dialect()
    column = UTCDateTime()
    # The type SQLAlchemy stores a DateTime column with on SQLite, and its text.
    bind = sqlite.DATETIME().bind_processor(dialect)
    assert bind is not None
    local = moment.astimezone(zone)
    expected = bind(column.process_bind_param(local, dialect))
    assert sql_text.time(_SQLite(), local) == expected  # type: ignore[arg-type]
