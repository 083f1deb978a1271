"""Who hears of an approval, in the core: the ``Notify`` parameters of a ``bridge:approval`` step.

The core reads ``Notify`` once, when the step asks, into a frozen ``NotifySpec`` kept with the
ballot; at each moment worth telling (``Requested``, ``Reminded``, ``Escalated``, ``Decided``) the
step emits a ``NotifyApprovers`` effect naming the seats concerned, and the shell turns it into
deliveries (mails, webhook posts) sent outside the transaction.

Shape::

    Notify:
      On: [Requested, Reminded, Escalated, Decided]     # the default: all four
      Email:
        To: {ann: ann@example.com, finance: [f1@example.com, f2@example.com]}
        # or To.$ from the data; a plain list is for an approval without named seats
      Webhook:                                           # or a list of them
        Url: https://hooks.slack.com/services/...
        Format: slack                                    # slack (default), teams or json

``To`` maps a seat (a user or group name as written in Assignees and Groups, ``user:NAME`` or
``group:NAME`` where a name is both, or ``anyone``) to its addresses; each address gets a mail
with that seat's own links. A user seat whose name is an address needs no entry. Addresses and
URLs read from the data are not judged here: a bad one fails its own delivery, never the step.
An approval without ``Notify`` emits the same effects with an empty spec: the shell may have
webhooks of its own to tell.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, ConfigDict

from bridge.asl.errors import StatesError
from bridge.asl.types import JSON

NotifyEvent = Literal["Requested", "Reminded", "Escalated", "Assigned", "Decided"]
#: Assigned: a seat was delegated or reassigned to someone whose name is an e-mail address.
EVENTS: tuple[NotifyEvent, ...] = ("Requested", "Reminded", "Escalated", "Assigned", "Decided")
FORMATS = ("slack", "teams", "json")
FIELDS = ("On", "Email", "Webhook")
#: The longest address or URL kept; a longer one is kept as a marker that fails its delivery.
MAX_RECIPIENT = 2000
#: At most this many addresses per approval and webhooks per step: a list read from the data
#: must not become a mail storm.
MAX_ADDRESSES = 200
MAX_WEBHOOKS = 10

# A deliberately plain check (RFC 5322 allows more, mail servers accept less): one @, no
# spaces, no control characters, no quotes or angle brackets that would change a header.
_ADDRESS = re.compile(r"[^@\s\"<>(),;:\\\[\]\x00-\x1f\x7f]{1,64}@[A-Za-z0-9.-]{1,253}")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Webhook(_Frozen):
    url: str
    format: str = "slack"


class NotifySpec(_Frozen):
    """Where to tell of an approval: e-mail addresses per seat, webhooks, and on which events."""

    #: (seat key, addresses) pairs; a key is a bare name, ``user:NAME``, ``group:NAME`` or
    #: ``anyone``.
    email: tuple[tuple[str, tuple[str, ...]], ...] = ()
    webhooks: tuple[Webhook, ...] = ()
    on: tuple[NotifyEvent, ...] = EVENTS

    def wants(self, event: NotifyEvent) -> bool:
        """Whether ``event`` is told. An approval without Notify is told too (every event), for
        the webhooks of the settings (BRIDGE_NOTIFY_WEBHOOK_URLS), which the core does not know."""
        return event in self.on

    def addresses(self, seat: str) -> tuple[str, ...]:
        """The addresses of ``seat`` (``user:ann``, ``group:finance``, ``anyone``)."""
        kind, _, name = seat.partition(":")
        found: list[str] = []
        for key, addresses in self.email:
            if key in (seat, name) or (seat == "anyone" and key == "anyone"):
                found.extend(addresses)
        if kind == "user" and not found and address_problem(name) is None:
            found.append(name)
        return tuple(dict.fromkeys(found))


def address_problem(address: str) -> str | None:
    """What is wrong with ``address`` as a recipient, or None. Refuses anything that could
    change a mail header (line breaks, NUL, commas, angle brackets)."""
    if not _ADDRESS.fullmatch(address):
        shown = address[:80].encode("unicode_escape").decode("ascii")
        return f"{shown!r} is not an e-mail address"
    return None


def notify_of(request: Mapping[str, JSON], state: str, seats: tuple[str, ...]) -> NotifySpec | None:
    """The step's ``Notify``, or None without one. Its shape is checked here (a bad one fails
    the step with Approval.InvalidParameters, as a bad Rule does); addresses and URLs are kept
    as text and judged when they are used."""
    given = request.get("Notify")
    if given is None:
        return None
    if not isinstance(given, dict):
        raise _invalid(state, "Notify must be an object")
    unknown = sorted(set(given) - set(FIELDS))
    if unknown:
        raise _invalid(state, f"Notify.{unknown[0]} is not a field (known: {', '.join(FIELDS)})")
    on = given.get("On", list(EVENTS))
    if isinstance(on, str):
        on = [on]
    if not isinstance(on, list) or not all(event in EVENTS for event in on):
        raise _invalid(state, f"Notify.On must list some of {', '.join(EVENTS)}")
    email: list[tuple[str, tuple[str, ...]]] = []
    if (mail := given.get("Email")) is not None:
        if not isinstance(mail, dict) or set(mail) - {"To"}:
            raise _invalid(state, "Notify.Email must be an object with To")
        email = _recipients(mail.get("To"), state, seats)
    hooks = given.get("Webhook")
    if hooks is None:
        hooks = []
    elif isinstance(hooks, dict):
        hooks = [hooks]
    if not isinstance(hooks, list) or len(hooks) > MAX_WEBHOOKS:
        raise _invalid(state, f"Notify.Webhook must be an object or up to {MAX_WEBHOOKS} of them")
    webhooks = [_webhook(hook, state) for hook in hooks]
    return NotifySpec(
        email=tuple(email),
        webhooks=tuple(webhooks),
        on=tuple(event for event in EVENTS if event in on),
    )


def _recipients(to: JSON, state: str, seats: tuple[str, ...]) -> list[tuple[str, tuple[str, ...]]]:
    if to is None:
        return []
    if isinstance(to, str | list):
        if seats != ("anyone",):
            raise _invalid(
                state,
                "Notify.Email.To must map seats to addresses ({seat: address}) when the "
                "approval names Assignees or Groups",
            )
        to = {"anyone": to}
    if not isinstance(to, dict):
        raise _invalid(state, "Notify.Email.To must be an object of seats and addresses")
    found: list[tuple[str, tuple[str, ...]]] = []
    total = 0
    for key, value in to.items():
        addresses = value if isinstance(value, list) else [value]
        total += len(addresses)
        if total > MAX_ADDRESSES:
            raise _invalid(state, f"Notify.Email.To names more than {MAX_ADDRESSES} addresses")
        found.append((key[:MAX_RECIPIENT], tuple(_text(address) for address in addresses)))
    return found


def _webhook(hook: JSON, state: str) -> Webhook:
    if not isinstance(hook, dict) or "Url" not in hook or set(hook) - {"Url", "Format"}:
        raise _invalid(state, "Notify.Webhook must be an object with Url (and Format)")
    format_ = hook.get("Format", "slack")
    if format_ not in FORMATS:
        raise _invalid(state, f"Notify.Webhook.Format must be one of {', '.join(FORMATS)}")
    return Webhook(url=_text(hook["Url"]), format=str(format_))


def _text(value: JSON) -> str:
    """A recipient as text; what is too long, or not text, stays a marker that fails its
    delivery with a clear reason rather than being cut into another recipient."""
    if not isinstance(value, str):
        return f"<not text: {type(value).__name__}>"
    if len(value) > MAX_RECIPIENT:
        return f"<{len(value)} characters: too long>"
    if "\x00" in value or not value.isprintable():
        # Never a recipient, and PostgreSQL could not even store a NUL.
        return "<holds control characters>"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "<not UTF-8>"
    return value


def _invalid(state: str, text: str) -> StatesError:
    return StatesError("Approval.InvalidParameters", f"State {state}: {text}")


#: The spec of an approval without Notify: no addresses or webhooks of its own, every event.
NO_NOTIFY = NotifySpec()
