"""The engine's source of ids and tokens: well-formed, unique, and never shared across a fork."""

from __future__ import annotations

import base64
import os
import uuid

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


def test_a_forked_child_draws_fresh_bytes() -> None:
    entropy = SystemEntropy()
    entropy.new_id()  # the pool is filled
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: send the next id and leave at once
        os.write(write, entropy.new_id().encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    in_child = os.read(read, 100).decode()
    os.close(read)
    assert uuid.UUID(in_child).version == 4
    assert in_child != entropy.new_id()


def test_random_int_stays_in_range() -> None:
    entropy = SystemEntropy()
    assert {entropy.random_int(3, 6) for _ in range(500)} == {3, 4, 5}
