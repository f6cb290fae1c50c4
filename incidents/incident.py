"""An incident as the store keeps it: one resource's symptoms, its status and its history's
counters. The store returns this, never a raw item."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, field_validator

from incidents.lifecycle import IncidentStatus


class Incident(BaseModel):
    model_config = ConfigDict(frozen=True)

    incident_id: str
    # resource|window start[#generation]: alerts with one fingerprint are one incident.
    fingerprint: str
    resource: str
    signature: str  # the first alert's symptom
    symptoms: list[str] = []  # every symptom seen (errors, throttles...), sorted
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
    # Which round of investigate-fix-verify the incident is in (another starts when a fix
    # did its part and the function still fails, or it relapsed while watched).
    round: int = 1
    # The W3C traceparent of the span that opened it (the first alert's): the incident's
    # trace, which later alerts link to and a person's decision continues.
    trace_parent: str | None = None

    @field_validator("symptoms", mode="before")
    @classmethod
    def _sorted(cls, value: object) -> object:
        # Stored as a string set (ADD keeps it duplicate-free under concurrent alerts).
        return sorted(value) if isinstance(value, set | frozenset) else value
