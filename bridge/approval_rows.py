"""Approvals, shell part: decision links, who looked at them, and the rows and messages of an
approval.

A decision from a link (``/approve/<token>``, ``/reject/<token>``) steps the process that waits
for it; a refused attempt is audited in its history without changing it (views are audited
apart from the process: bridge.store.approval_views).
``RequestApproval`` becomes an approval row with a pair of links per seat and a message on the
approvals topic; ``RemindApproval`` becomes a reminder there.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any

from bridge import messages
from bridge.asl import inputs as core
from bridge.asl.approvals import ApprovalStatus
from bridge.asl.effects import RemindApproval, RequestApproval
from bridge.asl.process import Process
from bridge.intake import DecisionReceived, Outcome, SeatChangeRequested
from bridge.store import waits

if TYPE_CHECKING:
    from bridge.batch import Batch


class Approvals:
    """The approval inputs and approval effects of one batch."""

    def __init__(self, batch: Batch) -> None:
        self.batch = batch

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
        outcome = self.batch._step(
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
        if await self.batch._load(process_id) is None:
            return Outcome("not_found", "no such process")
        change = core.SeatChanged(
            wait_id, item.seat, item.action, item.holder, item.by, admin=item.admin
        )
        return self.batch._step(process_id, change)

    def _audit(self, link: waits.LinkTarget, kind: str, item: Any, **details: Any) -> None:
        """A history entry that changes nothing: who looked at or tried a decision link."""
        by = getattr(item, "decided_by", None)
        entry = {"approvalId": link.approval_id, "seat": link.seat, "by": by, **details}
        self.batch._step(link.process_id, core.Audit(kind, link.approval.state, entry))

    async def request(self, process: Process, effect: RequestApproval) -> dict[str, Any]:
        """The approval row, a pair of links per seat, and the request on the approvals topic."""
        approval_id = self.batch.engine.entropy.new_id()
        base = self.batch.config.base_url
        links: dict[str, tuple[bool, str]] = {}
        published = []
        for seat in effect.seats:
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
        message_id = self.batch.engine.entropy.new_id()
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
        message_id = self.batch.engine.entropy.new_id()
        value = {
            "type": "ApprovalReminder",
            "approvalId": await waits.approval_id_of(self.batch.conn, effect.wait_id),
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
