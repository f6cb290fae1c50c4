"""The incident lifecycle's states (ARCHITECTURE.md, the life of an alert)."""

from __future__ import annotations

from enum import StrEnum


class IncidentStatus(StrEnum):
    RECEIVED = "RECEIVED"
    INVESTIGATING = "INVESTIGATING"
    DIAGNOSED = "DIAGNOSED"
    PROPOSED = "PROPOSED"
    APPROVED = "APPROVED"
    AWAITING_APPROVAL = "AWAITING_APPROVAL"
    REJECTED = "REJECTED"
    EXECUTING = "EXECUTING"
    VERIFYING = "VERIFYING"
    # Runs since the fix are clean and the state is at its baseline; watched for a window
    # (the alarms back to OK, no failure) before RESOLVED. MTTR is measured to here.
    RECOVERED = "RECOVERED"
    RESOLVED = "RESOLVED"
    ROLLED_BACK = "ROLLED_BACK"
    FAILED = "FAILED"
    ESCALATED = "ESCALATED"
