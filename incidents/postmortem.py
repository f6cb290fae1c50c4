"""A Markdown postmortem of one incident, written from its record: what happened, when,
what the fleet believed and why, what it changed, who approved, and what to change so it
does not happen again. Log text is quoted as code, never as Markdown."""

from __future__ import annotations

from typing import Any

from incidents.incident_report import IncidentReport

WHAT_TO_CHANGE: dict[str, str] = {
    "iam_permission_missing": (
        "Manage the execution role's policy as code and alarm on drift from the baseline "
        "(e.g. an AWS Config rule on the role), so a removed permission is caught before "
        "the next run fails."
    ),
    "iam_explicit_deny": (
        "Find who attached the Deny (CloudTrail PutRolePolicy) and review the guardrail "
        "that allowed it; explicit denies on workload roles belong in SCPs with an owner."
    ),
    "concurrency_throttled": (
        "Alert on PutFunctionConcurrency for protected functions and keep reserved "
        "concurrency in the deployment template, not set by hand."
    ),
    "network_blocked": (
        "Keep security-group egress in code and alarm on RevokeSecurityGroupEgress for the "
        "function's groups; consider VPC endpoints so AWS APIs do not depend on 0.0.0.0/0."
    ),
    "config_drift": (
        "Deploy configuration only through the pipeline and alarm on "
        "UpdateFunctionConfiguration outside it; validate resource names at start-up."
    ),
    "timeout_misconfigured": (
        "Set the timeout from measured p99 duration with headroom, in the template; alarm "
        "on Duration approaching the timeout."
    ),
}


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _code(text: Any) -> str:
    return "`" + str(text).replace("`", "'") + "`"


def postmortem_markdown(report: IncidentReport, detect_s: float | None = None) -> str:
    d = report.diagnosis or {}
    faults = d.get("fault_types") or []
    out = [
        f"# Postmortem: {report.resource} ({report.signature}), {report.incident_id}",
        "",
        "## Summary",
        "",
        f"- **Status:** {report.status}",
        f"- **Opened:** {report.opened_at}; **closed:** {report.closed_at or 'not yet'}",
        f"- **Alerts:** {report.alert_count}",
        f"- **Root cause:** {d.get('root_cause', 'not diagnosed')}",
        f"- **Faults:** {', '.join(faults) or 'none identified'}",
    ]
    if report.resolve_s is not None:
        out.append(f"- **Time to resolve (opened → resolved):** {report.resolve_s:g} s")
    if detect_s is not None:
        out.append(f"- **Time to detect (fault → opened):** {detect_s:g} s")
    out += [
        f"- **Agent cost:** {report.tool_calls} tool calls, ~{report.prompt_tokens} prompt and "
        f"~{report.completion_tokens} completion tokens",
        "",
        "## Timeline",
        "",
        "| time (UTC) | actor | what |",
        "|---|---|---|",
    ]
    for e in report.timeline:
        what = e.action
        if e.action == "tool_call":
            what = f"tool {_code(e.detail.get('tool'))} {_code(e.detail.get('args'))}"
        elif e.detail.get("reason"):
            what += f": {e.detail['reason']}"
        out.append(f"| {e.at} | {_cell(e.actor)} | {_cell(what)} |")
    out += ["", "## Hypotheses and evidence", ""]
    if d:
        out.append(
            f"**Accepted:** {d.get('root_cause')} (confidence {d.get('confidence')}, "
            f"severity {d.get('severity')})"
        )
        out.append("")
        for ev in d.get("evidence", []):
            out.append(f"- {ev['claim']} (tool call `{ev['tool_call_id']}`): {_code(ev['quote'])}")
        dropped = d.get("dropped_evidence", [])
        if dropped:
            out += ["", "**Discarded claims** (no tool output supports them):", ""]
            out += [f"- {ev['claim']}" for ev in dropped]
        if d.get("escalate"):
            out += ["", f"Escalated instead of acting: {d.get('escalation_reason')}"]
    else:
        out.append("No diagnosis was recorded.")
    out += ["", "## Actions", ""]
    p = report.proposal or {}
    if p:
        out.append(f"Proposal (baseline v{p.get('baseline_version')}): {p.get('rationale')}")
        out.append("")
    if report.actions:
        out += [
            f"1. {_code(a.get('service'))}:{_code(a.get('operation'))} "
            f"{_code(a.get('parameters'))} → {a.get('outcome')}"
            for a in report.actions
        ]
    else:
        out.append("No call was executed.")
    if report.rollbacks:
        out += ["", "Rolled back:", ""]
        out += [
            f"1. {_code(r.get('operation'))} {_code(r.get('parameters'))}" for r in report.rollbacks
        ]
    out += ["", "## Review and approvals", ""]
    r = report.review or {}
    if r:
        out.append(f"Critic: **{r.get('verdict')}**: " + "; ".join(r.get("reasons", [])))
        out += [f"- {c}" for c in r.get("code_checks", [])]
    a = report.approval or {}
    if a:
        out.append(
            f"\nApproval request {a.get('status')}"
            + (f" by {a.get('decided_by')} at {a.get('decided_at')}" if a.get("decided_by") else "")
            + (f": {a.get('reason')}" if a.get("reason") else "")
            + f" (expires {a.get('expires_at')}, calls digest `{str(a.get('calls_digest'))[:12]}`)"
        )
    if not r and not a:
        out.append("No review was needed.")
    out += ["", "## Verification", ""]
    v = report.verification or {}
    out += [
        f"- [{'x' if c['ok'] else ' '}] {c['name']}: {c['detail']}" for c in v.get("checks", [])
    ] or ["Not verified."]
    out += ["", "## What to change", ""]
    out += [f"- {WHAT_TO_CHANGE[f]}" for f in faults if f in WHAT_TO_CHANGE] or [
        "- Nothing was found broken; review the alarm's threshold if this was a false alarm."
    ]
    return "\n".join(out) + "\n"
