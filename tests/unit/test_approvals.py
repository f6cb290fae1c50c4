"""Deciding an approval, on an in-memory stand-in for the incident store: bound to the
calls shown, narrowed never widened, used once, expired refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from incidents.approvals import ApprovalError, Decision, decide, new_request
from incidents.context_items import ContextItem
from incidents.incident import Incident
from incidents.lifecycle import IncidentStatus as S
from incidents.proposal import Proposal, calls_digest
from incidents.remediation import ApiCall, ProposedCall
from incidents.state_machine import can_move
from queues.events import EventEnvelope

INCIDENT = "inc-1"


class MemoryStore:
    def __init__(self) -> None:
        self.status = S.AWAITING_APPROVAL
        self.items: dict[str, dict[str, Any]] = {}
        self.events: list[EventEnvelope] = []

    def get(self, incident_id: str) -> Incident | None:
        return Incident(
            incident_id=incident_id,
            fingerprint="fn|0",
            resource="fn",
            signature="errors",
            status=self.status,
            version=3,
            opened_at="2026-11-25T20:00:00+00:00",
            updated_at="2026-11-25T20:00:00+00:00",
        )

    def get_context(self, _incident_id: str, item: str) -> dict[str, Any] | None:
        return self.items.get(item)

    def put_context(self, _incident_id: str, item: str, data: dict[str, Any], **_: Any) -> bool:
        self.items[item] = data
        return True

    def transition(
        self,
        _incident_id: str,
        expected: S,
        new: S,
        _actor: str,
        _detail: dict[str, Any] | None = None,
        announce: list[EventEnvelope] | None = None,
    ) -> bool:
        if self.status != expected or not can_move(expected, new):
            return False
        self.status = new
        self.events += announce or []
        return True


def _call(n: int) -> ProposedCall:
    params = {"FunctionName": "fn", "ReservedConcurrentExecutions": n}
    return ProposedCall(
        call=ApiCall(service="lambda", operation="PutFunctionConcurrency", parameters=params),
        inverse=ApiCall(
            service="lambda",
            operation="DeleteFunctionConcurrency",
            parameters={"FunctionName": "fn"},
        ),
    )


@pytest.fixture
def store() -> MemoryStore:
    s = MemoryStore()
    proposal = Proposal(
        function_name="fn",
        baseline_version=1,
        concerns=["concurrency"],
        calls=[_call(1), _call(2)],
        rationale="r",
    )
    s.items["proposal"] = proposal.model_dump(mode="json")
    s.items[ContextItem.APPROVAL] = new_request(INCIDENT, proposal, ["a person"], 600).model_dump(
        mode="json"
    )
    return s


def _digest(store: MemoryStore) -> str:
    return str(store.items[ContextItem.APPROVAL]["calls_digest"])


def test_an_approval_names_exactly_the_calls_and_is_used_once(store: MemoryStore) -> None:
    shown = _digest(store)
    decided = decide(
        store, INCIDENT, Decision(approve=True, decided_by="erin (cli)", seen_digest=shown[:12])
    )
    assert decided.status == "approved" and decided.decided_by == "erin (cli)"
    (event,) = store.events
    assert event.payload["calls_digest"] == shown and event.payload["approved_by"] == "erin (cli)"
    assert store.items[ContextItem.APPROVAL]["status"] == "approved"
    with pytest.raises(ApprovalError, match="not awaiting approval"):
        decide(store, INCIDENT, Decision(approve=True, decided_by="frank (cli)", seen_digest=shown))


def test_calls_other_than_those_shown_are_refused(store: MemoryStore) -> None:
    with pytest.raises(ApprovalError, match="not the ones shown"):
        decide(store, INCIDENT, Decision(approve=True, decided_by="erin", seen_digest="deadbeef"))
    assert store.status == S.AWAITING_APPROVAL and not store.events


def test_an_approver_may_narrow_never_widen(store: MemoryStore) -> None:
    shown = _digest(store)
    with pytest.raises(ApprovalError, match="no call number"):
        decide(
            store,
            INCIDENT,
            Decision(approve=True, decided_by="erin", seen_digest=shown, only_calls=[3]),
        )
    decide(
        store,
        INCIDENT,
        Decision(approve=True, decided_by="erin", seen_digest=shown, only_calls=[2]),
    )
    narrowed = Proposal.model_validate(store.items["proposal"])
    assert [c.call.parameters["ReservedConcurrentExecutions"] for c in narrowed.calls] == [2]
    assert store.events[0].payload["calls_digest"] == calls_digest(narrowed.calls) != shown
    assert len(Proposal.model_validate(store.items["proposal#original"]).calls) == 2


def test_an_expired_request_cannot_be_decided(store: MemoryStore) -> None:
    past = (datetime.now(UTC) - timedelta(seconds=1)).isoformat(timespec="seconds")
    store.items[ContextItem.APPROVAL]["expires_at"] = past
    with pytest.raises(ApprovalError, match="expired"):
        decide(
            store, INCIDENT, Decision(approve=True, decided_by="erin", seen_digest=_digest(store))
        )


def test_a_rejection_needs_a_reason_and_escalates(store: MemoryStore) -> None:
    with pytest.raises(ApprovalError, match="needs a reason"):
        decide(
            store, INCIDENT, Decision(approve=False, decided_by="erin", seen_digest=_digest(store))
        )
    decide(
        store,
        INCIDENT,
        Decision(approve=False, decided_by="erin", seen_digest=_digest(store), reason="freeze"),
    )
    assert store.status == S.ESCALATED
    assert [e.event_type.value for e in store.events] == ["incident.rejected", "incident.escalated"]
