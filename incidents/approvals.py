"""Asking a person, and their answer: an approval is bound to the exact calls shown, has a
time to live, is used once, and records who decided.

The critic opens a request; `fleet approve|reject` (and the console) decide it through
:func:`decide`. The approval event names the digest of the calls approved; the resolver
runs only a proposal with that digest. An approver may narrow a proposal to some of its
calls, never add to it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel

from core.errors import FleetError
from core.tracing import continuing
from incidents.context_items import ContextItem
from incidents.escalation import escalate
from incidents.executor import shown
from incidents.lifecycle import IncidentStatus as S
from incidents.proposal import Proposal, calls_digest
from incidents.store import IncidentStore
from queues.events import EventEnvelope, incident_event
from queues.outbox import flush_outbox
from queues.publisher import Publisher
from queues.topology import EventType


class ApprovalError(FleetError):
    """A decision that cannot be taken (no request, expired, already decided, changed)."""


class ApprovalRequest(BaseModel):
    incident_id: str
    function_name: str
    calls: list[dict[str, Any]]  # as shown to the approver (secret values left out)
    calls_digest: str
    reasons: list[str]
    requested_at: str
    expires_at: str
    status: str = "pending"  # pending | approved | rejected | expired
    decided_by: str | None = None
    decided_at: str | None = None
    reason: str | None = None
    approved_calls: list[int] | None = None

    def expired(self, now: datetime | None = None) -> bool:
        return (now or datetime.now(UTC)) >= datetime.fromisoformat(self.expires_at)


def new_request(
    incident_id: str, proposal: Proposal, reasons: list[str], ttl_s: int
) -> ApprovalRequest:
    now = datetime.now(UTC)
    return ApprovalRequest(
        incident_id=incident_id,
        function_name=proposal.function_name,
        calls=[
            {"call": shown(c.call), "inverse": c.inverse and shown(c.inverse)}
            for c in proposal.calls
        ],
        calls_digest=proposal.calls_digest(),
        reasons=reasons,
        requested_at=now.isoformat(timespec="seconds"),
        expires_at=(now + timedelta(seconds=ttl_s)).isoformat(timespec="seconds"),
    )


def pending_request(store: IncidentStore, incident_id: str) -> ApprovalRequest:
    incident = store.get(incident_id)
    if incident is None:
        raise ApprovalError(f"no incident {incident_id}")
    raw = store.get_context(incident_id, ContextItem.APPROVAL)
    if raw is None:
        raise ApprovalError(f"{incident_id} has no approval request (status {incident.status})")
    request = ApprovalRequest.model_validate(raw)
    if incident.status != S.AWAITING_APPROVAL or request.status != "pending":
        raise ApprovalError(
            f"{incident_id} is not awaiting approval (status {incident.status}, request "
            f"{request.status}{' by ' + request.decided_by if request.decided_by else ''})"
        )
    if request.expired():
        raise ApprovalError(
            f"the approval request for {incident_id} expired at {request.expires_at}"
        )
    return request


class Decision(BaseModel, frozen=True):
    """A person's answer to an approval request, as they gave it."""

    approve: bool
    decided_by: str
    # The digest (or its prefix) of the calls the person was shown: a proposal that changed
    # since is refused.
    seen_digest: str
    reason: str | None = None
    # 1-based call numbers: an approval of only some of the calls.
    only_calls: list[int] | None = None


def decide(store: IncidentStore, incident_id: str, decision: Decision) -> ApprovalRequest:
    """Approve or reject the pending request as `decision` says."""
    approve, decided_by, seen_digest = decision.approve, decision.decided_by, decision.seen_digest
    reason, only_calls = decision.reason, decision.only_calls
    request = pending_request(store, incident_id)
    if not seen_digest or not request.calls_digest.startswith(seen_digest):
        raise ApprovalError(
            f"the calls of {incident_id} are not the ones shown (digest "
            f"{request.calls_digest[:12]}, shown {seen_digest[:12] or 'none'}): look again "
            "before deciding"
        )
    if not approve and not reason:
        raise ApprovalError("a rejection needs a reason")
    proposal = Proposal.model_validate(store.get_context(incident_id, ContextItem.PROPOSAL))
    now = datetime.now(UTC).isoformat(timespec="seconds")
    decided = request.model_copy(
        update={
            "status": "approved" if approve else "rejected",
            "decided_by": decided_by,
            "decided_at": now,
            "reason": reason,
        }
    )
    detail = {"decided_by": decided_by, "reason": reason, "calls_digest": request.calls_digest}
    # The guarded transition first: a decision someone else took first changes nothing.
    # The records follow; the approval's event is published only after this returns, so
    # the resolver reads the narrowed proposal (and a crash in between leaves digests
    # that differ: the resolver then runs nothing and escalates).
    if approve:
        narrowed = proposal.calls
        if only_calls:
            bad = [i for i in only_calls if not 1 <= i <= len(proposal.calls)]
            if bad:
                raise ApprovalError(f"no call number {bad} (1..{len(proposal.calls)})")
            narrowed = [proposal.calls[i - 1] for i in sorted(set(only_calls))]
            decided.approved_calls = sorted(set(only_calls))
        digest = calls_digest(narrowed)
        detail["approved_digest"] = digest
        if not store.transition(
            incident_id,
            S.AWAITING_APPROVAL,
            S.APPROVED,
            decided_by,
            detail,
            announce=[approved_event(incident_id, digest, decided_by)],
        ):
            raise ApprovalError(f"{incident_id} was decided by someone else first")
        if only_calls:
            store.put_context(
                incident_id, ContextItem.PROPOSAL_ORIGINAL, proposal.model_dump(mode="json")
            )
            store.put_context(
                incident_id,
                ContextItem.PROPOSAL,
                proposal.model_copy(update={"calls": narrowed}).model_dump(mode="json"),
            )
        store.put_context(incident_id, ContextItem.APPROVAL, decided.model_dump(mode="json"))
        return decided
    if not store.transition(
        incident_id,
        S.AWAITING_APPROVAL,
        S.REJECTED,
        decided_by,
        detail,
        announce=[_event(EventType.REJECTED, incident_id, decided_by, detail)],
    ):
        raise ApprovalError(f"{incident_id} was decided by someone else first")
    store.put_context(incident_id, ContextItem.APPROVAL, decided.model_dump(mode="json"))
    escalate(store, incident_id, S.REJECTED, decided_by, f"fix rejected by {decided_by}: {reason}")
    return decided


def approved_event(incident_id: str, digest: str, approved_by: str) -> EventEnvelope:
    return _event(
        EventType.APPROVED,
        incident_id,
        approved_by,
        {"calls_digest": digest, "approved_by": approved_by},
    )


def _event(
    kind: EventType, incident_id: str, producer: str, payload: dict[str, Any]
) -> EventEnvelope:
    return incident_event(kind, producer, incident_id, payload)


def decide_and_announce(
    store: IncidentStore, publisher: Publisher, incident_id: str, decision: Decision
) -> ApprovalRequest:
    """A person's decision, as the console, the CLI and game days take it: decide, then
    publish what the decision put in the outbox (the approval the resolver waits for). A
    span in the incident's own trace, so the fix it lets run stays in that trace."""
    incident = store.get(incident_id)
    with continuing(
        "incident.decision",
        incident.trace_parent if incident else None,
        incident_id,
        **{"fleet.approved": decision.approve, "enduser.id": decision.decided_by},
    ):
        decided = decide(store, incident_id, decision)
        flush_outbox(store, publisher, incident_id)
    return decided
