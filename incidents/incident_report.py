"""One incident's whole story, read back from the store: for `fleet incidents show`, the
postmortem, the demo, game days and the console."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from incidents.context_items import ContextItem, ContextKey, transcript
from incidents.lifecycle import IncidentStatus
from incidents.store import IncidentStore, audit_detail


class TimelineEntry(BaseModel):
    at: str
    actor: str
    action: str
    detail: dict[str, Any]


class IncidentReport(BaseModel):
    incident_id: str
    resource: str
    signature: str
    status: str
    opened_at: str
    closed_at: str | None
    alert_count: int
    timeline: list[TimelineEntry]
    diagnosis: dict[str, Any] | None
    proposal: dict[str, Any] | None
    review: dict[str, Any] | None
    approval: dict[str, Any] | None
    verification: dict[str, Any] | None
    actions: list[dict[str, Any]]  # the calls executed, as recorded
    rollbacks: list[dict[str, Any]]
    tool_calls: int
    prompt_tokens: int
    completion_tokens: int

    @property
    def resolve_s(self) -> float | None:
        """Opened to resolved (None unless resolved)."""
        if self.status != "RESOLVED" or not self.closed_at:
            return None
        opened = datetime.fromisoformat(self.opened_at)
        return round((datetime.fromisoformat(self.closed_at) - opened).total_seconds(), 1)

    def reached(self, status: str) -> str | None:
        """When the incident entered `status` (None if it never did)."""
        for entry in self.timeline:
            if entry.action.endswith(f"-> {status}"):
                return entry.at
        return None


def load_report(store: IncidentStore, incident_id: str) -> IncidentReport | None:
    incident = store.get(incident_id)
    if incident is None:
        return None
    timeline = [
        TimelineEntry(
            at=str(e["at"]), actor=str(e["actor"]), action=str(e["action"]), detail=audit_detail(e)
        )
        for e in sorted(store.audit(incident_id), key=lambda e: int(e["seq"]))
    ]

    def ctx(item: ContextItem | ContextKey) -> dict[str, Any] | None:
        return store.get_context(incident_id, item)

    transcripts = [ctx(transcript(stage)) or {} for stage in ("diagnosis", "proposal", "review")]
    return IncidentReport(
        incident_id=incident_id,
        resource=incident.resource,
        signature=incident.signature,
        status=incident.status.value,
        opened_at=incident.opened_at,
        closed_at=incident.closed_at,
        alert_count=incident.alert_count,
        timeline=timeline,
        diagnosis=ctx(ContextItem.DIAGNOSIS),
        proposal=ctx(ContextItem.PROPOSAL),
        review=ctx(ContextItem.REVIEW),
        approval=ctx(ContextItem.APPROVAL),
        verification=ctx(ContextItem.VERIFICATION),
        actions=[e.detail for e in timeline if e.action == "api_call"],
        rollbacks=[e.detail for e in timeline if e.action == "rollback_call"],
        tool_calls=sum(len(t.get("calls", [])) for t in transcripts),
        prompt_tokens=sum(int(t.get("prompt_tokens", 0)) for t in transcripts),
        completion_tokens=sum(int(t.get("completion_tokens", 0)) for t in transcripts),
    )


def list_incidents(store: IncidentStore, status: str | None = None) -> list[dict[str, Any]]:
    statuses = [IncidentStatus(status)] if status else list(IncidentStatus)
    rows = [i for s in statuses for i in store.by_status(s)]
    return sorted(
        (
            {
                "incident_id": i.incident_id,
                "status": i.status.value,
                "resource": i.resource,
                "signature": i.signature,
                "alerts": i.alert_count,
                "opened_at": i.opened_at,
                "updated_at": i.updated_at,
            }
            for i in rows
        ),
        key=lambda r: str(r["opened_at"]),
        reverse=True,
    )


def _call_line(call: dict[str, Any]) -> str:
    params = ", ".join(f"{k}={_short(v)}" for k, v in call.get("parameters", {}).items())
    return f"{call.get('service')}:{call.get('operation')}({params})"


def _short(value: Any) -> str:
    text = " ".join((value if isinstance(value, str) else json.dumps(value)).split())
    return text if len(text) <= 60 else text[:57] + "..."


def render_text(report: IncidentReport) -> str:
    """The incident as an operator reads it in a terminal."""
    lines = [
        f"{report.incident_id}  {report.status}  {report.resource} ({report.signature}), "
        f"{report.alert_count} alert(s), opened {report.opened_at}",
        "",
        "timeline:",
    ]
    for e in report.timeline:
        if e.action == "tool_call":
            what = f"tool {e.detail.get('tool')}({_short(e.detail.get('args', {}))})"
        elif e.action in ("api_call", "rollback_call"):
            what = f"{e.action.replace('_', ' ')} {_call_line(e.detail)}"
        else:
            reason = e.detail.get("reason")
            what = e.action + (f": {reason}" if reason else "")
        lines.append(f"  {e.at[11:23]}  {e.actor:<22} {what}")
    d = report.diagnosis
    if d:
        lines += [
            "",
            f"diagnosis: {', '.join(d.get('fault_types') or ['none found'])} "
            f"(confidence {d.get('confidence')}, {d.get('tool_calls')} tool calls)",
            f"  root cause: {d.get('root_cause')}",
        ]
        lines += [
            f'  - {ev["claim"]}  [{ev["tool_call_id"]}: "{_short(ev["quote"])}"]'
            for ev in d.get("evidence", [])
        ]
    if report.actions:
        lines += ["", "actions:"] + [
            f"  {_call_line(a)} -> {a.get('outcome')}" for a in report.actions
        ]
    if report.rollbacks:
        lines += ["", "rolled back:"] + [f"  {_call_line(a)}" for a in report.rollbacks]
    if report.verification:
        lines += ["", "verification:"] + [
            f"  [{'ok' if c['ok'] else 'FAILED'}] {c['name']}: {c['detail']}"
            for c in report.verification.get("checks", [])
        ]
    if report.resolve_s is not None:
        lines += ["", f"resolved {report.resolve_s:g}s after the incident opened"]
    return "\n".join(lines)
