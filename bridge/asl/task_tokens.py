"""Task tokens (``$$.Task.Token``) that name the wait they answer.

A token is the base64url text of a version byte, the process id, the wait id and 32 random bytes
(as text). The process keeps only the token's SHA-256 in its wait (``Wait.token_hash``), so a
token is checked against the state it answers, in the transaction that applies it: single use
(the wait closes), expiring (with the wait's timeout), scoped (to one process and one wait), and
never stored in clear. It needs no row of its own: a task used to insert one per token, kept
until its process was deleted.

Tokens handed out before (43 characters, random only) are found through their row in
``task_tokens``, as they were.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

#: The length of a token that names nothing (32 random bytes): looked up by its row. A token
#: that names its wait holds such random text and more, so it is always longer.
UNNAMED_LENGTH = 43
#: Longer is no token of ours (a reply's taskToken is at most 512 characters).
MAX_LENGTH = 512
_VERSION = b"\x02"
_SEPARATOR = b"\x00"
#: ``processes.id`` and the waits' ids are at most this long.
_MAX_ID = 64


def token_hash(token: str) -> str:
    """What is kept of a token: its SHA-256, hex."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def make(process_id: str, wait_id: str, secret: str) -> str:
    """The token of wait ``wait_id`` of process ``process_id``; ``secret``: random text."""
    raw = _VERSION + process_id.encode() + _SEPARATOR + wait_id.encode() + _SEPARATOR
    return base64.urlsafe_b64encode(raw + secret.encode()).rstrip(b"=").decode("ascii")


def named(token: str) -> tuple[str, str] | None:
    """The process id and wait id ``token`` names; None for a token that names none (an older
    one, or not a token at all)."""
    if len(token) == UNNAMED_LENGTH or len(token) > MAX_LENGTH or "=" in token:
        return None  # ours are written without padding
    try:
        raw = base64.b64decode(token + "=" * (-len(token) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        return None
    if not raw.startswith(_VERSION):
        return None
    parts = raw[1:].split(_SEPARATOR, 2)
    if len(parts) != 3 or not parts[2]:
        return None
    try:
        process_id, wait_id = parts[0].decode(), parts[1].decode()
    except UnicodeDecodeError:
        return None
    if not 0 < len(process_id) <= _MAX_ID or not 0 < len(wait_id) <= _MAX_ID:
        return None
    return process_id, wait_id


def holds(token: str, kept_hash: str | None) -> bool:
    """Whether ``token`` is the one whose hash a wait kept (in constant time)."""
    return kept_hash is not None and hmac.compare_digest(token_hash(token), kept_hash)
