"""Why a message could not be published, and whether trying again can help.

The relay asks this of every failed send. A failure that is the message's own (too large, an
invalid or forbidden topic, a value or key that cannot be encoded) never goes away by itself: the
message is parked and the others go on. Anything else (a lost connection, a timeout, a leader
moving, the producer stopping) says nothing about the message and is tried again, by aiokafka's
``retriable`` flag or because it is not the message's fault.
"""

from __future__ import annotations

import re

from aiokafka import errors

from bridge.asl.errors import BridgeError

#: Broker and client errors that one message causes and that no retry can cure.
_MESSAGE_FAULTS: tuple[type[errors.KafkaError], ...] = (
    errors.MessageSizeTooLargeError,
    errors.RecordListTooLargeError,
    errors.InvalidTopicError,
    errors.TopicAuthorizationFailedError,
    errors.CorruptRecordException,
    errors.PolicyViolationError,
)

#: Kafka's rule for topic names; a message for another name could never be sent.
_TOPIC = re.compile(r"[A-Za-z0-9._-]{1,249}")


class Unpublishable(BridgeError):
    """The message itself cannot be published (its value, key, headers or topic)."""


def check_topic(topic: str) -> None:
    """``Unpublishable`` unless ``topic`` is a name Kafka accepts."""
    if not _TOPIC.fullmatch(topic) or topic in (".", ".."):
        raise Unpublishable(f"{topic[:100]!r} is not a valid Kafka topic name")


def is_message_fault(exc: BaseException) -> bool:
    """Whether ``exc``, raised while sending one message, is that message's fault for good."""
    if isinstance(exc, Unpublishable):
        return True
    if isinstance(exc, errors.KafkaError):
        return not exc.retriable and isinstance(exc, _MESSAGE_FAULTS)
    # Encoding the stored value, key or headers (a lone surrogate, a value json cannot write).
    return isinstance(exc, UnicodeError | ValueError | TypeError | RecursionError)


def describe(exc: BaseException) -> str:
    """A short reason for logs and the parked row."""
    text = str(exc).strip()
    name = type(exc).__name__
    return f"{name}: {text}"[:2000] if text else name
