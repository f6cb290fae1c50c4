"""Giving up on an incident: the one way every stage ends it as ESCALATED and says why."""

from __future__ import annotations

from typing import Any

from incidents.lifecycle import IncidentStatus
from incidents.store import IncidentStore
from queues.events import incident_event
from queues.topology import EventType


def escalate(
    store: IncidentStore,
    incident_id: str,
    current: IncidentStatus,
    actor: str,
    reason: str,
    correlation_id: str | None = None,
    facts: dict[str, Any] | None = None,
) -> bool:
    """Move the incident from `current` to ESCALATED; the reason (and any facts worth a
    person's time) goes in the audit entry and in the ESCALATED event, which the outbox also
    pages to incident-approvals. False if the incident was no longer in `current`."""
    detail = {**(facts or {}), "reason": reason}
    return store.transition(
        incident_id,
        current,
        IncidentStatus.ESCALATED,
        actor,
        detail,
        announce=[incident_event(EventType.ESCALATED, actor, incident_id, detail, correlation_id)],
    )
