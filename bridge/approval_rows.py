"""Approvals, shell part: decision links, who looked at them, and the rows and messages of an
approval.

A decision from a link (``/approve/<token>``, ``/reject/<token>``) steps the process that waits
for it; a refused attempt is audited in its history without changing it (views are audited
apart from the process: bridge.store.approval_views).
``RequestApproval`` becomes an approval row with a pair of links per seat and a message on the
approvals topic; ``RemindApproval`` becomes a reminder there, with fresh links for the seats that
have not decided (the earlier links keep working: only hashes are kept, so old links cannot be
sent again); ``NotifyApprovers`` becomes deliveries (``bridge.store.deliveries``), one per
address and webhook, which the deliverer sends outside the transaction. What this part uses of
the batch it works for is ``ApprovalsBatch``.
"""

from __future__ import annotations

import secrets
from typing import Any, Protocol

from bridge import messages
from bridge.asl import inputs as core
from bridge.asl.approvals import ApprovalStatus
from bridge.asl.effects import NotifyApprovers, RemindApproval, RequestApproval
from bridge.asl.process import Process
from bridge.batch_parts import Sending, Stepping
from bridge.intake import DecisionReceived, DeliveryEnded, Outcome, SeatChangeRequested
from bridge.metrics import Tally
from bridge.notices import shown_recipient
from bridge.store import deliveries, waits
from bridge.store.deliveries import Delivery


class ApprovalsBatch(Stepping, Sending, Protocol):
    """What the approvals part needs of the batch it works for (``bridge.batch.Batch``)."""

    @property
    def tally(self) -> Tally: ...


class Approvals:
    """The approval inputs and approval effects of one batch."""

    def __init__(self, batch: ApprovalsBatch) -> None:
        self.batch = batch
        #: Approvals opened in this batch, by wait: their rows are not written yet.
        self._opened: dict[str, str] = {}

    async def decision(self, item: DecisionReceived, link: waits.LinkTarget | None) -> Outcome:
        if link is None:
            return Outcome("not_found", "unknown approval link")
        approve = link.approve if item.approve is None else item.approve
        decision = "approve" if approve else "reject"
        if item.forged:
            reason = "a form from another page or with a wrong nonce"
            self._audit(link, "ApprovalAttemptRefused", item, reason=reason, decision=decision)
            return Outcome("conflict", reason)
        if not ApprovalStatus(link.status).open:
            reason = f"the approval is already {link.status.lower()}"
            self._audit(link, "ApprovalAttemptRefused", item, reason=reason, decision=decision)
            return Outcome("conflict", reason)
        outcome = self.batch.step_process(
            link.process_id,
            core.ApprovalDecided(
                link.wait_id,
                approve,
                item.decided_by,
                item.comment,
                seat=link.seat,
                outcome=item.outcome,
                values=item.values,
            ),
        )
        if outcome.status != "applied":
            self._audit(
                link, "ApprovalAttemptRefused", item, reason=outcome.reason, decision=decision
            )
        return outcome

    async def seat_change(self, item: SeatChangeRequested) -> Outcome:
        found = await waits.find_approval_wait(self.batch.conn, item.approval_id)
        if found is None:
            return Outcome("not_found", "no such approval")
        process_id, wait_id = found
        if await self.batch.load(process_id) is None:
            return Outcome("not_found", "no such process")
        change = core.SeatChanged(
            wait_id, item.seat, item.action, item.holder, item.by, admin=item.admin
        )
        return self.batch.step_process(process_id, change)

    def _audit(self, link: waits.LinkTarget, kind: str, item: Any, **details: Any) -> None:
        """A history entry that changes nothing: who looked at or tried a decision link."""
        by = getattr(item, "decided_by", None)
        entry = {"approvalId": link.approval_id, "seat": link.seat, "by": by, **details}
        self.batch.step_process(link.process_id, core.Audit(kind, link.approval.state, entry))

    async def request(self, process: Process, effect: RequestApproval) -> dict[str, Any]:
        """The approval row, a pair of links per seat, and the request on the approvals topic."""
        approval_id = self.batch.entropy.new_id()
        self._opened[effect.wait_id] = approval_id
        base = self.batch.config.base_url
        links, published = mint_links(effect.seats, base)
        await waits.add_approval(
            self.batch.conn,
            approval_id=approval_id,
            process_id=process.id,
            definition=process.definition,
            wait_id=effect.wait_id,
            state=effect.state,
            title=effect.title,
            description=effect.description,
            data=effect.data,
            seats=list(effect.seats),
            rule=effect.rule,
            expires_at=effect.expires_at,
            on_expiry=effect.on_expiry,
            form=effect.form,
            links=links,
            now=self.batch.now,
        )
        message_id = self.batch.entropy.new_id()
        value = {
            "type": "ApprovalRequested",
            "approvalId": approval_id,
            "processId": process.id,
            "definition": process.definition,
            "correlationKey": process.correlation_key,
            "state": effect.state,
            "title": effect.title,
            "description": effect.description,
            "data": effect.data,
            "rule": effect.rule,
            "expiresAt": effect.expires_at.isoformat() if effect.expires_at else None,
            "onExpiry": effect.on_expiry,
            **({"form": effect.form} if effect.form is not None else {}),
            "links": published,
            # The first seat's links, for the common single-approver case.
            "approveUrl": published[0]["approveUrl"],
            "rejectUrl": published[0]["rejectUrl"],
            "requestedAt": self.batch.now.isoformat(),
            "statusUrl": f"{base}/approvals/{approval_id}",
        }
        return messages.about_process(
            message_id,
            process,
            self.batch.config.approvals_topic,
            "bridge.ApprovalRequested",
            value,
            self.batch.now,
        )

    async def reminder(self, process: Process, effect: RemindApproval) -> dict[str, Any]:
        message_id = self.batch.entropy.new_id()
        approval_id = await self._approval_id(effect.wait_id)
        links, published = mint_links(effect.pending, self.batch.config.base_url)
        if approval_id is not None:
            await waits.add_links(self.batch.conn, approval_id, links)
        value = {
            "type": "ApprovalReminder",
            "approvalId": approval_id,
            "links": published,
            "processId": process.id,
            "definition": process.definition,
            "state": effect.state,
            "pending": list(effect.pending),
            "expiresAt": effect.expires_at.isoformat() if effect.expires_at else None,
            "remindedAt": self.batch.now.isoformat(),
            "statusUrl": f"{self.batch.config.base_url}/processes/{process.id}",
        }
        return messages.about_process(
            message_id,
            process,
            self.batch.config.approvals_topic,
            "bridge.ApprovalReminder",
            value,
            self.batch.now,
        )

    async def delivery_ended(self, item: DeliveryEnded) -> Outcome:
        """A delivery is done: its row says so, and the process history tells who was told of
        what (or who could not be, and why), in one transaction. A delivery that failed for
        good also goes to the dead-letter topic. Ending it again changes nothing."""
        batch = self.batch
        found = await deliveries.find(batch.conn, item.delivery_id)
        if found is None:
            return Outcome("not_found", "unknown delivery")
        if found.done_at is not None:
            return Outcome("ignored", f"the delivery has ended already ({found.result})")
        shown = shown_recipient(found.channel, found.recipient)
        await deliveries.finish(
            batch.conn, found.id, item.result, item.error, batch.now, recipient=shown
        )
        if item.result == "failed":
            self._dead_letter(found, item.error or "failed", item.attempts)
        if item.result == "skipped" or await batch.load(found.process_id) is None:
            return Outcome("applied", item.result, (found.process_id,))
        details: dict[str, Any] = {
            "deliveryId": found.id,
            "event": found.event,
            "channel": found.channel,
            "to": shown,
            "seats": list(found.seats),
            "attempts": item.attempts,
        }
        if item.error:
            details["error"] = item.error
        kind = "NotificationSent" if item.result == "sent" else "NotificationFailed"
        return batch.step_process(found.process_id, core.Audit(kind, found.state, details))

    async def delivery_given_up(self, delivery_id: str, reason: str) -> None:
        """Ending the delivery kept failing: it ends as failed, without its history entry."""
        found = await deliveries.find(self.batch.conn, delivery_id)
        if found is not None and found.done_at is None:
            shown = shown_recipient(found.channel, found.recipient)
            await deliveries.finish(
                self.batch.conn, delivery_id, "failed", reason, self.batch.now, recipient=shown
            )
            self._dead_letter(found, reason, found.attempts)

    def _dead_letter(self, found: Delivery, reason: str, attempts: int) -> None:
        batch = self.batch
        batch.tally.dead_letters += 1
        about = {
            "deliveryId": found.id,
            "processId": found.process_id,
            "approvalId": found.approval_id,
            "state": found.state,
            "event": found.event,
            "channel": found.channel,
            "to": shown_recipient(found.channel, found.recipient),
            "attempts": attempts,
        }
        batch.send(
            messages.dead_letter(
                batch.entropy.new_id(),
                batch.config.dlq_topic,
                None,
                f"delivery failed: {reason}",
                batch.now,
                event_key=f"delivery|{found.id}",
                event=about,
            ),
            batch.trace,
        )

    async def _approval_id(self, wait_id: str) -> str | None:
        return self._opened.get(wait_id) or await waits.approval_id_of(self.batch.conn, wait_id)

    async def deliveries(self, process: Process, effect: NotifyApprovers) -> list[dict[str, Any]]:
        """The deliveries of a notice: a mail per seat and address (with that seat's links, for
        everything but Decided), and a post per webhook of the step and of the settings."""
        batch = self.batch
        approval_id = await self._approval_id(effect.wait_id)
        rows: list[dict[str, Any]] = []

        def add(channel: str, recipient: str, seats: tuple[str, ...], format_: str | None) -> None:
            rows.append(
                {
                    "id": batch.entropy.new_id(),
                    "process_id": process.id,
                    "approval_id": approval_id,
                    "state": effect.state,
                    "event": effect.event,
                    "channel": channel,
                    "format": format_,
                    "recipient": recipient,
                    "seats": list(seats),
                    "outcome": effect.outcome,
                    "created_at": batch.now,
                    "next_attempt_at": batch.now,
                }
            )

        if effect.event == "Decided":
            # One notice per address, naming the seats it held.
            held: dict[str, list[str]] = {}
            for seat in effect.seats:
                for address in effect.notify.addresses(seat):
                    held.setdefault(address, []).append(seat)
            for address, seats in held.items():
                add("email", address, tuple(seats), None)
        else:
            for seat in effect.seats:
                for address in effect.notify.addresses(seat):
                    add("email", address, (seat,), None)
        hooks = [*effect.notify.webhooks, *batch.config.notify_webhooks]
        for hook in dict.fromkeys(hooks):
            add("webhook", hook.url, effect.seats, hook.format)
        return rows


def mint_links(
    seats: tuple[str, ...], base: str
) -> tuple[dict[str, tuple[bool, str]], list[dict[str, Any]]]:
    """A fresh pair of links per seat: the tokens (to store as hashes) and the links to send."""
    links: dict[str, tuple[bool, str]] = {}
    published = []
    for seat in seats:
        approve, reject = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        links[approve] = (True, seat)
        links[reject] = (False, seat)
        kind, _, name = seat.partition(":")
        published.append(
            {
                "seat": seat,
                "assignee": name if kind == "user" else None,
                "group": name if kind == "group" else None,
                "approveUrl": f"{base}/approve/{approve}",
                "rejectUrl": f"{base}/reject/{reject}",
            }
        )
    return links, published
