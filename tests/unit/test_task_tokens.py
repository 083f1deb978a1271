"""A task token names its process and wait and carries a secret; anything else (a token of the
old, random-only kind, a made-up string, a mangled token) names nothing."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from bridge.asl import task_tokens

IDS = st.text(
    alphabet=st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)),
    min_size=1,
    max_size=64,
).filter(lambda text: len(text.encode()) <= 64 * 4)


@given(IDS, IDS)
def test_a_token_names_its_process_and_wait(process_id: str, wait_id: str) -> None:
    token = task_tokens.make(process_id, wait_id, "s" * 43)
    assert task_tokens.named(token) == (process_id, wait_id)
    # Only characters the log scrubber knows belong to a token.
    assert all(c.isascii() and (c.isalnum() or c in "-_") for c in token)


def test_what_names_nothing() -> None:
    real = task_tokens.make("p-1", "w-1", "s" * 43)
    for text in (
        "",
        "A" * task_tokens.UNNAMED_LENGTH,  # a random-only token: found by its row
        real + "=",
        real[:10] + "." + real[10:],
        real + "A" * task_tokens.MAX_LENGTH,
        task_tokens.make("p", "w", "")[:-1],
        task_tokens.make("", "w", "s" * 43),
        task_tokens.make("p" * 65, "w", "s" * 43),
        "not a token at all, not even base64!",
    ):
        assert task_tokens.named(text) is None, text


def test_holds_compares_with_the_hash_kept() -> None:
    token = task_tokens.make("p", "w", "s" * 43)
    assert task_tokens.holds(token, task_tokens.token_hash(token))
    assert not task_tokens.holds(token, task_tokens.token_hash(token + "x"))
    assert not task_tokens.holds(token, None)
