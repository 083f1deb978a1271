"""What an approval notice says: the mail (plain text and HTML) and the webhook bodies (Slack,
Teams, plain JSON). No I/O: the deliverer builds a ``Notice`` and sends what these return.

Everything shown comes from events and definitions and is treated as hostile: text in a header
loses its line breaks and control characters (no header can be injected through a title), HTML
is escaped, Slack's control characters are escaped, and the data is cut to ``MAX_DATA_CHARS``.
Links open the decision page; a GET never decides (the page posts the decision).
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from typing import Any
from urllib.parse import urlsplit

from bridge.asl.limits import clean_text

#: The most of an approval's data a notice shows.
MAX_DATA_CHARS = 4000
MAX_SUBJECT_CHARS = 200

_SUBJECTS = {
    "Requested": "Approval requested",
    "Reminded": "Reminder: approval waiting",
    "Escalated": "Approval escalated to you",
    "Assigned": "Approval handed to you",
}
_OUTCOMES = {
    "APPROVED": "Approved",
    "REJECTED": "Rejected",
    "EXPIRED": "Expired",
    # Left undecided: the process stopped, failed or moved on without it.
    "CLOSED": "Closed",
}


@dataclass(frozen=True)
class SeatLinks:
    seat: str
    approve_url: str
    reject_url: str


@dataclass(frozen=True)
class Notice:
    """One notice of one approval, as a delivery sends it."""

    delivery_id: str
    event: str
    title: str
    description: str | None
    data: Any
    process_id: str
    definition: str | None
    state: str
    approval_id: str | None
    status_url: str
    expires_at: datetime | None = None
    outcome: str | None = None
    links: tuple[SeatLinks, ...] = field(default_factory=tuple)

    @property
    def headline(self) -> str:
        """One line, safe for a mail subject: no line breaks or control characters."""
        if self.event == "Decided":
            prefix = _OUTCOMES.get(self.outcome or "", self.outcome or "Decided")
        else:
            prefix = _SUBJECTS.get(self.event, "Approval")
        return one_line(f"{prefix}: {self.title}", MAX_SUBJECT_CHARS)

    def data_text(self) -> str:
        try:
            text = json.dumps(self.data, indent=2, ensure_ascii=False, sort_keys=True)
        except (TypeError, ValueError):
            text = repr(self.data)
        text = clean_text(text, MAX_DATA_CHARS * 4)
        if len(text) > MAX_DATA_CHARS:
            text = text[:MAX_DATA_CHARS] + f"\n... ({len(text) - MAX_DATA_CHARS} more characters)"
        return text


def one_line(text: str, limit: int) -> str:
    """``text`` with every control character (CR, LF, NUL, ...) made a space, cut to ``limit``."""
    flat = "".join(" " if ord(char) < 32 or ord(char) == 127 else char for char in text)
    flat = " ".join(flat.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def shown_recipient(channel: str, recipient: str) -> str:
    """A recipient as the history and logs show it: an address as it is, a webhook URL by its
    scheme and host only (a Slack or Teams webhook URL is a secret in its path)."""
    if channel != "webhook":
        return one_line(recipient, 200)
    try:
        parts = urlsplit(recipient)
        return f"{parts.scheme}://{parts.hostname or '?'}/…"
    except ValueError:
        return "(not a URL)"


# --------------------------------------------------------------------- mail


def mail(notice: Notice, sender: str, to: str, domain: str) -> EmailMessage:
    """The mail: plain text and HTML alternatives, one pair of links per seat of the notice,
    a Message-ID that stays the same for every try of the delivery."""
    message = EmailMessage()
    message["Subject"] = notice.headline
    message["From"] = sender
    message["To"] = to
    message["Message-ID"] = f"<{notice.delivery_id}@{domain}>"
    message["X-Bridge-Delivery-Id"] = notice.delivery_id
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(_plain(notice))
    message.add_alternative(_html(notice), subtype="html")
    return message


def _plain(notice: Notice) -> str:
    lines = [notice.headline, ""]
    if notice.description:
        lines += [clean_text(notice.description, 2000), ""]
    lines += [f"Process: {notice.process_id} ({notice.definition or ''}, step {notice.state})"]
    if notice.expires_at is not None and notice.event != "Decided":
        lines.append(f"Decide before: {notice.expires_at.isoformat(timespec='minutes')}")
    lines += ["", "Data:", notice.data_text(), ""]
    for link in notice.links:
        lines += [
            f"For {link.seat}:",
            f"  Approve: {link.approve_url}",
            f"  Reject:  {link.reject_url}",
            "",
        ]
    if notice.links:
        lines.append("Each link opens a page where you confirm the decision.")
    lines.append(f"Status: {notice.status_url}")
    return "\n".join(lines) + "\n"


def _html(notice: Notice) -> str:
    e = html.escape
    parts = [
        '<!doctype html><html><body style="font-family:sans-serif">',
        f"<h2>{e(notice.headline)}</h2>",
    ]
    if notice.description:
        parts.append(f"<p>{e(clean_text(notice.description, 2000))}</p>")
    parts.append(
        f"<p>Process <code>{e(notice.process_id)}</code> ({e(notice.definition or '')}, "
        f"step {e(notice.state)})</p>"
    )
    if notice.expires_at is not None and notice.event != "Decided":
        parts.append(f"<p>Decide before {e(notice.expires_at.isoformat(timespec='minutes'))}</p>")
    parts.append(f"<pre>{e(notice.data_text())}</pre>")
    for link in notice.links:
        parts.append(
            f"<p>For {e(link.seat)}: "
            f'<a href="{e(link.approve_url)}">Approve</a> · '
            f'<a href="{e(link.reject_url)}">Reject</a></p>'
        )
    if notice.links:
        parts.append("<p><small>Each link opens a page where you confirm the decision.</small></p>")
    parts.append(f'<p><a href="{e(notice.status_url)}">Status</a></p></body></html>')
    return "\n".join(parts)


# --------------------------------------------------------------------- webhooks


def webhook_body(notice: Notice, format_: str) -> dict[str, Any]:
    """The JSON a webhook receives: Slack's (``text`` and ``blocks``), Teams' (a MessageCard),
    or the bridge's own (``json``)."""
    if format_ == "slack":
        return _slack(notice)
    if format_ == "teams":
        return _teams(notice)
    return {
        "type": f"bridge.Approval{notice.event}",
        "deliveryId": notice.delivery_id,
        "approvalId": notice.approval_id,
        "processId": notice.process_id,
        "definition": notice.definition,
        "state": notice.state,
        "title": notice.title,
        "description": notice.description,
        "data": notice.data,
        "outcome": notice.outcome,
        "expiresAt": notice.expires_at.isoformat() if notice.expires_at else None,
        "links": [
            {"seat": link.seat, "approveUrl": link.approve_url, "rejectUrl": link.reject_url}
            for link in notice.links
        ],
        "statusUrl": notice.status_url,
    }


def _slack_text(text: str) -> str:
    # Slack reads <...> as links and mentions: the three characters it asks to escape.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _slack(notice: Notice) -> dict[str, Any]:
    headline = _slack_text(notice.headline)
    body = f"*{headline}*"
    if notice.description:
        body += "\n" + _slack_text(clean_text(notice.description, 1000))
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": body[:2900]}},
        {
            "type": "section",
            "text": {
                "type": "mrkdwn",
                "text": "```" + _slack_text(notice.data_text())[:2800] + "```",
            },
        },
    ]
    for link in notice.links[:20]:
        blocks.append(
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "text": {"type": "plain_text", "text": f"Approve ({link.seat})"[:75]},
                        "style": "primary",
                        "url": link.approve_url,
                    },
                    {
                        "type": "button",
                        "text": {"type": "plain_text", "text": f"Reject ({link.seat})"[:75]},
                        "style": "danger",
                        "url": link.reject_url,
                    },
                ],
            }
        )
    blocks.append(
        {
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": f"<{notice.status_url}|Status>"}],
        }
    )
    return {"text": notice.headline, "blocks": blocks}


def _teams(notice: Notice) -> dict[str, Any]:
    actions = []
    for link in notice.links[:20]:
        for name, url in (("Approve", link.approve_url), ("Reject", link.reject_url)):
            actions.append(
                {
                    "@type": "OpenUri",
                    "name": f"{name} ({link.seat})",
                    "targets": [{"os": "default", "uri": url}],
                }
            )
    actions.append(
        {
            "@type": "OpenUri",
            "name": "Status",
            "targets": [{"os": "default", "uri": notice.status_url}],
        }
    )
    return {
        "@type": "MessageCard",
        "@context": "https://schema.org/extensions",
        "summary": notice.headline,
        "title": notice.headline,
        "text": html.escape(clean_text(notice.description or "", 1000)),
        "sections": [{"text": "<pre>" + html.escape(notice.data_text()) + "</pre>"}],
        "potentialAction": actions,
    }
