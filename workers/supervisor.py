"""The supervisor worker: alerts open (or count on) an incident; each incident, once
opened, is investigated by the diagnosis agent and its typed Diagnosis recorded.

The investigation is driven by the incident's own `incident.opened` event, not by the
alerts: a storm of 500 alerts opens one incident and runs one investigation. If the worker
dies mid-investigation, the event comes back and the investigation runs again. Another
round of the same incident (`incident.next_round`, from the resolver: the function still
fails after a fix, or relapsed) is investigated the same way, on the evidence since the
last fix.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog

from incidents.context_items import ContextItem
from incidents.diagnosis import Diagnosis
from incidents.escalation import escalate
from incidents.lifecycle import IncidentStatus as S
from incidents.store import IncidentStore, audit_detail
from queues.events import EventEnvelope, incident_event
from queues.outcomes import NonRetryableError
from queues.topology import EventType
from workers import intake
from workers.agents.diagnose import diagnose
from workers.agents.mcp_tools import ToolsUnavailable
from workers.agents.model_quota import ModelQuotaExhausted, model_bucket
from workers.agents.transcript import record_transcript
from workers.outages import tools_away
from workers.stage import StageContext, deduplicates

log = structlog.get_logger()
PRODUCER = "supervisor"


# An alert counts once by its own marker (workers/intake.py): the runtime need not claim it.
@deduplicates(EventType.ALERT_ALARM, EventType.ALERT_FAILURE_REPORT, when=intake.marks_itself)
def handle(event: EventEnvelope, ctx: StageContext) -> None:
    if event.event_type in (EventType.ALERT_ALARM, EventType.ALERT_FAILURE_REPORT):
        intake.handle_alert(event, ctx)
    elif event.event_type in (EventType.OPENED, EventType.NEXT_ROUND):
        investigate(event, ctx)
    else:
        raise NonRetryableError(f"the supervisor does not take {event.event_type.value}")


def first_alert(store: IncidentStore, incident_id: str) -> dict[str, Any]:
    for entry in store.audit(incident_id):
        if entry["action"] == "incident.opened":
            return audit_detail(entry)
    return {}


def investigate(event: EventEnvelope, ctx: StageContext) -> None:
    incident_id = event.incident_id
    if incident_id is None:
        raise NonRetryableError("incident.opened without an incident_id")
    incident = ctx.store.get(incident_id)
    if incident is None:
        raise NonRetryableError(f"incident {incident_id} does not exist")
    status = incident.status
    since: str | None = None
    if event.event_type == EventType.NEXT_ROUND:
        if status != S.INVESTIGATING or incident.round != event.payload.get("round"):
            log.info("round already investigated", status=status.value, round=incident.round)
            return
        # The round before is over: its records move aside, and the evidence that counts
        # is what happened since its fix.
        ctx.store.archive_round(incident_id, incident.round - 1)
        since = event.payload.get("since")
    elif status == S.RECEIVED:
        ctx.store.transition(incident_id, S.RECEIVED, S.INVESTIGATING, PRODUCER, current=incident)
    elif status != S.INVESTIGATING or incident.round != 1:
        log.info("already investigated", status=status.value)
        return
    try:
        diagnosis, run = asyncio.run(
            diagnose(
                ctx.settings,
                incident,
                first_alert(ctx.store, incident_id),
                since,
                quota=model_bucket(ctx.clients("dynamodb"), ctx.settings),
            )
        )
    except (ToolsUnavailable, ModelQuotaExhausted) as exc:
        tools_away(
            ctx,
            exc,
            lambda reason: escalate(
                ctx.store,
                incident_id,
                S.INVESTIGATING,
                PRODUCER,
                f"diagnosis: {reason}",
                event.correlation_id,
            ),
        )
        return
    record_transcript(ctx.store, incident_id, PRODUCER, "diagnosis", run)
    ctx.store.put_context(incident_id, ContextItem.DIAGNOSIS, diagnosis.model_dump(mode="json"))
    conclude(ctx, incident_id, diagnosis, event.correlation_id)


def conclude(
    ctx: StageContext, incident_id: str, diagnosis: Diagnosis, correlation_id: str
) -> None:
    summary = {
        "fault_types": [f.value for f in diagnosis.fault_types],
        "confidence": diagnosis.confidence,
        "root_cause": diagnosis.root_cause,
        "tool_calls": diagnosis.tool_calls,
    }
    if diagnosis.escalate:
        # What the page says: enough for a person to start from.
        summary |= {
            "drifts": diagnosis.drifts,
            "unexplained": diagnosis.unexplained,
            "unseen": diagnosis.unseen,
            "next_step": diagnosis.next_step,
        }
        escalate(
            ctx.store,
            incident_id,
            S.INVESTIGATING,
            PRODUCER,
            f"diagnosis: {diagnosis.escalation_reason}",
            correlation_id,
            facts=summary,
        )
        return
    ctx.store.transition(
        incident_id,
        S.INVESTIGATING,
        S.DIAGNOSED,
        PRODUCER,
        summary,
        announce=[
            incident_event(
                EventType.DIAGNOSED,
                PRODUCER,
                incident_id,
                {"diagnosis": diagnosis.model_dump(mode="json")},
                correlation_id,
            )
        ],
    )
