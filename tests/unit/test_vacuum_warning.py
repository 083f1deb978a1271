"""What the bridge tells the operator about vacuum when it opens a PostgreSQL database."""

from __future__ import annotations

from bridge.store.upkeep import CHURNING, vacuum_warning


def test_all_is_well_with_autovacuum_on_for_every_table() -> None:
    assert vacuum_warning(True, []) is None


def test_autovacuum_off_on_the_server_names_the_churning_tables_and_the_remedy() -> None:
    warning = vacuum_warning(False, [])
    assert warning is not None
    assert "autovacuum is off" in warning
    assert all(table in warning for table in CHURNING)
    assert "autovacuum = on" in warning and "VACUUM ANALYZE" in warning


def test_tables_with_autovacuum_disabled_are_named_and_how_to_reset_it() -> None:
    warning = vacuum_warning(True, ["outbox", "http_calls"])
    assert warning is not None
    assert "outbox, http_calls" in warning
    assert "RESET (autovacuum_enabled)" in warning
    assert "processes" not in warning
