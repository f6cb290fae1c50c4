"""An incident as the store keeps it: one resource's symptom, its status and its history's
counters. The store returns this, never a raw item."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from incidents.lifecycle import IncidentStatus


class Incident(BaseModel):
    model_config = ConfigDict(frozen=True)

    incident_id: str
    # resource|signature|window start[#generation]: alerts with one fingerprint are one incident.
    fingerprint: str
    resource: str
    signature: str
    status: IncidentStatus
    # Raised by every transition: a transition applies only to the version its caller saw.
    version: int
    alert_count: int = 0
    opened_at: str
    updated_at: str
    last_alert_at: str | None = None
    closed_at: str | None = None
    # The last audit sequence number used (audit entries are numbered per incident).
    audit_seq: int = 0
