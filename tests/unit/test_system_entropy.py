"""The engine's source of ids and tokens: well-formed, unique, and never shared across a fork."""

from __future__ import annotations

import base64
import os
import uuid

import pytest

from bridge.intake import SystemEntropy


def test_ids_are_distinct_version_4_uuids() -> None:
    entropy = SystemEntropy()
    ids = [entropy.new_id() for _ in range(5000)]  # more than one pool's worth
    assert len(set(ids)) == len(ids)
    for text in ids:
        parsed = uuid.UUID(text)
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122
        assert str(parsed) == text


def test_tokens_carry_256_random_bits_url_safe() -> None:
    entropy = SystemEntropy()
    tokens = {entropy.new_token() for _ in range(1000)}
    assert len(tokens) == 1000
    for token in tokens:
        assert len(base64.urlsafe_b64decode(token + "=")) == 32
        assert "=" not in token and "+" not in token and "/" not in token


def test_a_forked_child_draws_fresh_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    parent = SystemEntropy()
    parent.new_id()  # the pool is filled
    child = SystemEntropy()
    child.__dict__.update(parent.__dict__)  # what fork leaves the child with
    real_pid = os.getpid()
    monkeypatch.setattr(os, "getpid", lambda: real_pid + 1)
    assert child.new_id() != parent.new_id()


def test_random_int_stays_in_range() -> None:
    entropy = SystemEntropy()
    assert {entropy.random_int(3, 6) for _ in range(500)} == {3, 4, 5}
