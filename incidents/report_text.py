"""An incident report as an operator reads it in a terminal (`fleet incidents show`, the
demo): when the fleet stopped, what a person needs comes first. Every string from the record
may be tool output or a log line: it is shown on one line with its control characters
escaped, so a quoted line cannot move the cursor or recolour the terminal."""

from __future__ import annotations

import json
from typing import Any

from incidents.diagnosis import Evidence
from incidents.incident_report import Handover, IncidentReport, Round, TimelineEntry, starts_round


def plain(value: Any) -> str:
    """Untrusted text (tool output, log lines, the model's words) made safe for a terminal:
    on one line, with control characters (escape sequences too) shown, never sent."""
    text = " ".join((value if isinstance(value, str) else json.dumps(value)).split())
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


def _short(value: Any) -> str:
    text = plain(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _call_line(call: dict[str, Any]) -> str:
    params = ", ".join(f"{k}={_short(v)}" for k, v in call.get("parameters", {}).items())
    return f"{plain(call.get('service'))}:{plain(call.get('operation'))}({params})"


def _evidence_line(ev: Evidence | dict[str, Any], whole: bool = False) -> str:
    e = ev if isinstance(ev, Evidence) else Evidence.model_validate(ev)
    quote = plain(e.quote) if whole else _short(e.quote)
    return f'{plain(e.claim)}  [{plain(e.tool_call_id)}: "{quote}"]'


def _hypothesis_line(h: Handover) -> str:
    if h.hypothesis is None:
        return "no diagnosis was recorded"
    faults = ", ".join(h.fault_types) or "no fault type"
    return f"{plain(h.hypothesis)} ({faults}, confidence {h.confidence})"


def _listed(title: str, items: list[str], indent: str = "  ") -> list[str]:
    return [f"{indent}{title}:"] + [f"{indent}  - {plain(i)}" for i in items] if items else []


def _handover_text(h: Handover) -> list[str]:
    """The account a person acts on, in full."""
    lines = [
        "WHAT A PERSON NEEDS" + (f": {plain(h.why)}" if h.why else ""),
        f"  best hypothesis: {_hypothesis_line(h)}",
        f"  next step: {plain(h.next_step) or 'none was recorded'}",
    ]
    lines += _listed("symptoms seen", h.symptoms)
    lines += _listed("drift from the baseline", h.drifts)
    if h.evidence:
        lines += ["  evidence (quoted from tool output):"]
        lines += [f"    - {_evidence_line(ev, whole=True)}" for ev in h.evidence]
    lines += _listed("ruled out", h.ruled_out)
    lines += _listed("no drift explains", h.unexplained)
    lines += _listed("could not see", h.unseen)
    if h.who_changed:
        lines.append(f"  who made the change: {plain(h.who_changed)}")
    return lines


def _compact(h: Handover) -> list[str]:
    """The same account in a few lines, for an incident the fleet is handling."""
    lines = []
    for title, items in (
        ("drift", h.drifts),
        ("ruled out", h.ruled_out),
        ("no drift explains", h.unexplained),
        ("could not see", h.unseen),
    ):
        if items:
            lines.append(f"  {title}: " + "; ".join(plain(i) for i in items))
    if h.who_changed:
        lines.append(f"  who made the change: {plain(h.who_changed)}")
    return lines


def _timeline_line(e: TimelineEntry) -> str:
    if e.action == "tool_call":
        what = f"tool {plain(e.detail.get('tool'))}({_short(e.detail.get('args', {}))})"
    elif e.action in ("api_call", "rollback_call"):
        what = f"{e.action.replace('_', ' ')} {_call_line(e.detail)}"
    else:
        reason = e.detail.get("reason")
        what = plain(e.action) + (f": {plain(reason)}" if reason else "")
    return f"  {e.at[11:23]}  {plain(e.actor):<22} {what}"


def _round_sections(r: Round, compact: Handover | None) -> list[list[str]]:
    """A round's diagnosis, actions, rollbacks and verification: one block of lines each."""
    sections: list[list[str]] = []
    d = r.diagnosis
    if d:
        sections.append(
            [
                f"diagnosis: {', '.join(d.get('fault_types') or ['none found'])} "
                f"(confidence {d.get('confidence')}, {d.get('tool_calls')} tool calls)",
                f"  root cause: {plain(d.get('root_cause'))}",
                *(f"  - {_evidence_line(ev)}" for ev in d.get("evidence", [])),
                *(_compact(compact) if compact is not None else []),
            ]
        )
    if r.actions:
        sections.append(
            ["actions:"] + [f"  {_call_line(a)} -> {plain(a.get('outcome'))}" for a in r.actions]
        )
    if r.rollbacks:
        sections.append(["rolled back:"] + [f"  {_call_line(a)}" for a in r.rollbacks])
    if r.verification:
        sections.append(
            ["verification:"]
            + [
                f"  [{'ok' if c['ok'] else 'FAILED'}] {plain(c['name'])}: {plain(c['detail'])}"
                for c in r.verification.get("checks", [])
            ]
        )
    return sections


def render_text(report: IncidentReport) -> str:
    """The incident as an operator reads it in a terminal: when the fleet stopped, what a
    person needs comes first."""
    h = report.handover
    of_round = f", round {report.round}" if report.round > 1 else ""
    lines = [
        f"{report.incident_id}  {report.status}  {plain(report.resource)} "
        f"({', '.join(plain(s) for s in report.symptoms)}), "
        f"{report.alert_count} alert(s), opened {report.opened_at}{of_round}",
    ]
    if h.needs_a_person:
        lines += ["", *_handover_text(h)]
    lines += ["", "timeline:"]
    for e in report.timeline:
        if (number := starts_round(e)) is not None:
            lines.append(f"  -- round {number} --")
        lines.append(_timeline_line(e))
    for r in report.rounds:
        # The account in brief beside the diagnosis it comes from, when not shown in full.
        compact = h if r.number == h.diagnosed_in_round and not h.needs_a_person else None
        sections = _round_sections(r, compact)
        if report.round == 1:
            lines += [line for section in sections for line in ["", *section]]
            continue
        ended = f", ended {r.ended_at[11:23]}: {plain(r.ended_because)}" if r.ended_at else ""
        lines += ["", f"round {r.number} (started {r.started_at[11:23]}{ended})"]
        lines += [f"  {line}" for section in sections for line in section] or ["  nothing recorded"]
    if report.recover_s is not None:
        lines += ["", f"recovered {report.recover_s:g}s after the incident opened"]
    if report.resolve_s is not None:
        lines += [f"resolved {report.resolve_s:g}s after the incident opened"]
    lines += ["", f"agent cost: {report.agent_cost()}"]
    return "\n".join(lines)
