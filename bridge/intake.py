"""What comes into the engine and what comes out of it: the shell's inputs and outcomes.

Every entry point builds one of these inputs; ``Engine.apply`` answers each with an ``Outcome``.
"""

from __future__ import annotations

import base64
import os
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from bridge.asl.approvals import SeatChange
from bridge.asl.errors import BridgeError
from bridge.asl.types import JSON
from bridge.events import KafkaRecord


@dataclass(frozen=True)
class EventReceived:
    record: KafkaRecord


@dataclass(frozen=True)
class CallbackReceived:
    token: str
    outcome: Literal["success", "failure", "heartbeat"]
    output: JSON = None
    error: str | None = None
    cause: str | None = None
    via: str = "http"
    #: The W3C trace context of a reply on Kafka, or of the HTTP request it came in.
    traceparent: str | None = None
    tracestate: str | None = None
    #: The reply's record, when it came on Kafka: where a dead letter says it came from.
    record: KafkaRecord | None = None


@dataclass(frozen=True)
class InvalidInput:
    """A Kafka record that cannot be read as what its topic carries (a reply that is not one):
    it goes to the dead-letter topic with ``reason`` and its position."""

    record: KafkaRecord
    reason: str


@dataclass(frozen=True)
class DecisionReceived:
    link_token: str
    comment: str | None = None
    decided_by: str | None = None
    #: The decision; None takes the link's own (approve link: approve).
    approve: bool | None = None
    #: An outcome of the task's own (``Outcomes``) instead of approve or reject.
    outcome: str | None = None
    #: The form's values, checked against the approval's form.
    values: JSON = None
    #: A form post without a valid nonce or from another origin: audited, never applied.
    forged: bool = False
    #: The W3C trace context of the request it came in (see ``bridge.group_commit.traced``).
    traceparent: str | None = None
    tracestate: str | None = None


@dataclass(frozen=True)
class TimerDue:
    timer_id: str
    process_id: str


@dataclass(frozen=True)
class StartRequested:
    """Start a process over HTTP; a ``name`` makes the start idempotent per definition."""

    definition: str
    input: JSON
    name: str | None = None
    version: int | None = None
    correlation_key: str | None = None
    #: The W3C trace context of the request it came in (see ``bridge.group_commit.traced``).
    traceparent: str | None = None
    tracestate: str | None = None


@dataclass(frozen=True)
class StopRequested:
    process_id: str
    error: str = "Process.Stopped"
    cause: str = ""
    #: The W3C trace context of the request it came in (see ``bridge.group_commit.traced``).
    traceparent: str | None = None
    tracestate: str | None = None


@dataclass(frozen=True)
class RedriveRequested:
    process_id: str
    #: The W3C trace context of the request it came in (see ``bridge.group_commit.traced``).
    traceparent: str | None = None
    tracestate: str | None = None


@dataclass(frozen=True)
class HttpCallEnded:
    """The invoker made the HTTP call ``call_id`` (or refused to): the response, whatever its
    status, as ``{"StatusCode", "StatusText", "Headers", "ResponseBody"}``, or, when there was
    none, the error (``Http.Timeout``, ``Http.ConnectionError``, ``Http.Forbidden``, ...)."""

    call_id: str
    response: JSON = None
    error: str | None = None
    cause: str = ""
    #: The W3C trace context of the call (its client span, or the step that asked for it).
    traceparent: str | None = None
    tracestate: str | None = None


@dataclass(frozen=True)
class DeliveryEnded:
    """The deliverer is done with delivery ``delivery_id`` (an approval notice): ``sent``,
    ``failed`` for good (``error`` says why, after ``attempts`` tries), or ``skipped`` (nothing
    left to tell: the approval was decided before its request went out)."""

    delivery_id: str
    result: Literal["sent", "failed", "skipped"]
    error: str | None = None
    attempts: int = 1


@dataclass(frozen=True)
class BufferExpired:
    """A buffered early event whose time to live ended without a wait taking it."""

    buffer_id: int


@dataclass(frozen=True)
class SeatChangeRequested:
    """Someone asks that a seat of approval ``approval_id`` change hands (claim, unclaim,
    delegate, reassign); ``by`` is who asks (as the web layer knows them), ``admin`` whether an
    admin does."""

    approval_id: str
    seat: str
    action: SeatChange
    holder: str | None = None
    by: str | None = None
    admin: bool = False
    #: The W3C trace context of the request it came in (see ``bridge.group_commit.traced``).
    traceparent: str | None = None
    tracestate: str | None = None


@dataclass(frozen=True)
class ScheduleDue:
    """A schedule's tick has come (or, ``buffered``, its buffered tick may start now). The tick
    is the start's identity: one process per schedule and tick, however often it is applied."""

    schedule_id: str
    tick: datetime
    buffered: bool = False


EngineInput = (
    EventReceived
    | InvalidInput
    | CallbackReceived
    | DecisionReceived
    | TimerDue
    | BufferExpired
    | HttpCallEnded
    | DeliveryEnded
    | StartRequested
    | StopRequested
    | RedriveRequested
    | ScheduleDue
    | SeatChangeRequested
)

#: Inputs that may carry a trace context of their own (``traceparent``, ``tracestate``).
TracedInput = (
    CallbackReceived
    | DecisionReceived
    | HttpCallEnded
    | StartRequested
    | StopRequested
    | RedriveRequested
    | SeatChangeRequested
)

#: Short names of the inputs, for metric labels and span names.
KINDS: dict[type, str] = {
    EventReceived: "event",
    InvalidInput: "invalid_record",
    CallbackReceived: "callback",
    DecisionReceived: "decision",
    TimerDue: "timer",
    BufferExpired: "buffer_expiry",
    HttpCallEnded: "http_result",
    DeliveryEnded: "delivery",
    StartRequested: "start",
    StopRequested: "stop",
    RedriveRequested: "redrive",
    ScheduleDue: "schedule",
    SeatChangeRequested: "seat_change",
}


class PoisonInput(BridgeError):
    """Processing one input raised (a bug or a definition the data breaks); ``index`` is its
    place in the batch, ``process_ids`` the processes it was stepping."""

    def __init__(self, index: int, process_ids: tuple[str, ...], cause: BaseException) -> None:
        super().__init__(f"input {index} failed: {cause!r}")
        self.index = index
        self.process_ids = process_ids
        self.cause = cause


OutcomeStatus = Literal["applied", "duplicate", "ignored", "invalid", "not_found", "conflict"]


@dataclass(frozen=True)
class Outcome:
    status: OutcomeStatus
    reason: str = ""
    process_ids: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.status in ("applied", "duplicate", "ignored")


#: Counts the forks this process came out of: a pool filled before the last one is stale.
_forks_seen = 0


def _forked() -> None:
    global _forks_seen
    _forks_seen += 1


os.register_at_fork(after_in_child=_forked)


class SystemEntropy:
    """Randomness for the interpreter: ids, unguessable tokens, intrinsic functions.

    Every byte comes from the operating system's CSPRNG, read a few kilobytes at a time: one
    ``os.urandom`` call per id costs more than the rest of making it, and a step makes several.
    """

    _POOL_BYTES = 4096

    def __init__(self) -> None:
        self._pool = b""
        self._at = 0
        self._forks = _forks_seen

    def _random_bytes(self, n: int) -> bytes:
        # A forked child must not hand out the bytes its parent already used.
        if self._at + n > len(self._pool) or self._forks != _forks_seen:
            self._pool, self._at, self._forks = os.urandom(self._POOL_BYTES), 0, _forks_seen
        chunk = self._pool[self._at : self._at + n]
        self._at += n
        return chunk

    def new_id(self) -> str:
        return self.uuid4()

    def new_token(self) -> str:
        return base64.urlsafe_b64encode(self._random_bytes(32)).rstrip(b"=").decode("ascii")

    def random_int(self, low: int, high: int) -> int:
        return low + secrets.randbelow(max(high - low, 1))

    def uuid4(self) -> str:
        """A random (version 4, RFC 9562) UUID in its canonical text form."""
        raw = bytearray(self._random_bytes(16))
        raw[6] = (raw[6] & 0x0F) | 0x40
        raw[8] = (raw[8] & 0x3F) | 0x80
        text = raw.hex()
        return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"
