"""The supervisor's intake: an alert opens an incident, or counts on the one already open.

(Diagnosis, the rest of the supervisor, builds on this.) Alerts for one function within the
incident window are one incident, whatever their symptom: an alarm storm opens one and
counts the rest, and a Throttles alarm joins the incident its Errors alarm opened (one
incident per function, so one resolver acts on it). An OK notification is recorded on the
open incident; it opens nothing.
"""

from __future__ import annotations

from datetime import datetime

from queues.events import EventEnvelope, incident_event
from queues.outcomes import NonRetryableError
from queues.topology import EventType
from workers.stage import StageContext

PRODUCER = "supervisor"


def symptom(event: EventEnvelope) -> tuple[str, str, datetime, str]:
    """(resource, fault signature, when, new alarm state) of an alert."""
    if event.event_type == EventType.ALERT_ALARM:
        alarm = event.alarm()
        if alarm.function_name is None:
            raise NonRetryableError(f"alarm {alarm.AlarmName} names no FunctionName dimension")
        when = datetime.fromisoformat(alarm.StateChangeTime.replace("+0000", "+00:00"))
        return alarm.function_name, alarm.Trigger.MetricName.lower(), when, alarm.NewStateValue
    if event.event_type == EventType.ALERT_FAILURE_REPORT:
        report = event.failure_report()
        # A failed run is what the Errors alarm counts: the same symptom, the same incident.
        return report.function_name, "errors", event.produced_at, "ALARM"
    raise NonRetryableError(f"the supervisor takes alerts, not {event.event_type.value}")


def handle_alert(event: EventEnvelope, ctx: StageContext) -> None:
    resource, signature, when, state = symptom(event)
    detail = {
        "alert_event_id": event.event_id,
        "alert_type": event.event_type.value,
        "payload": event.payload,
    }
    if state != "ALARM":
        incident_id = ctx.store.current_incident(resource, when, ctx.settings.incident_window_s)
        if incident_id is not None:
            ctx.store.append_audit(incident_id, PRODUCER, f"alarm {state}", detail)
        return
    ctx.store.open_or_dedupe(
        resource,
        signature,
        when,
        ctx.settings.incident_window_s,
        PRODUCER,
        detail,
        announce=lambda incident_id: [
            incident_event(
                EventType.OPENED,
                PRODUCER,
                incident_id,
                {"resource": resource, "signature": signature, "first_alert": event.event_id},
                event.correlation_id,
            )
        ],
        alert_id=event.event_id,
    )
