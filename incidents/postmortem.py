"""A Markdown postmortem of one incident, written from its record: what happened, when,
what the fleet believed and why, what it changed, who approved, and what to change so it
does not happen again; each round of investigate-fix-verify in its own section; and, when
the fleet stopped, what a person needs to take over. Log text and tool output are quoted as
code, and the model's prose is escaped: neither is read as Markdown or HTML."""

from __future__ import annotations

import re
from typing import Any

from incidents.diagnosis import Evidence
from incidents.incident_report import (
    Handover,
    IncidentReport,
    Round,
    starts_round,
    who_changed,
)
from incidents.report_text import plain

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
    "bad_deploy": (
        "Deploy through a pipeline that shifts the alias gradually (CodeDeploy's Lambda "
        "traffic shifting) with the Errors alarm as its rollback trigger, and capture the "
        "baseline as part of every intended deploy."
    ),
    "code_bug": (
        "Fix the code and add a test with the failing input; the fleet changes nothing for "
        "a bug, so an alarm on Errors with an owner is what catches the next one."
    ),
    "input_missing": (
        "Make the producer of the input part of the alarm's story: alarm on the input's "
        "absence (or its age) upstream, and let the function fail with a clear message."
    ),
}


# What Markdown (or HTML inside it) acts on inside a line; `|` only matters in a table
# (`_cell`). What starts a block (a heading, a list, a quote) is escaped at the start only.
_INLINE_SPECIAL = re.compile(r"([\\`*_\[\]<~])")
_BLOCK_MARK = re.compile(r"^([#>+=-])")
_ORDERED_MARK = re.compile(r"^(\d+)([.)])")


def _text(value: Any) -> str:
    """The model's prose (or anything else from the record) as literal Markdown text: on
    one line, each character Markdown or HTML would act on escaped."""
    text = _INLINE_SPECIAL.sub(r"\\\1", plain(value)).replace("&", "&amp;")
    return _ORDERED_MARK.sub(r"\1\\\2", _BLOCK_MARK.sub(r"\\\1", text))


def _code(value: Any) -> str:
    """Log text or tool output, quoted as inline code (a backtick in it cannot end it), with
    its control characters shown: `fleet incidents postmortem` prints to a terminal."""
    return "`" + plain(value).replace("`", "'") + "`"


def _cell(text: str) -> str:
    """Markdown made fit for a table cell: a `|`, even in code, would end the cell."""
    return text.replace("|", "\\|")


def _evidence(ev: Evidence | dict[str, Any]) -> str:
    e = ev if isinstance(ev, Evidence) else Evidence.model_validate(ev)
    return f"- {_text(e.claim)} (tool call {_code(e.tool_call_id)}): {_code(e.quote)}"


def _items(title: str, items: list[str]) -> list[str]:
    return [f"**{title}:**", "", *(f"- {_text(i)}" for i in items), ""] if items else []


def _handover(h: Handover) -> list[str]:
    """The escalation account: what a person needs to take over."""
    out = [f"**Why the fleet stopped:** {_text(h.why or 'not recorded')}", ""]
    if h.hypothesis is None:
        out += ["**Best hypothesis:** none: no diagnosis was recorded.", ""]
    else:
        faults = ", ".join(h.fault_types) or "no fault type"
        out += [
            f"**Best hypothesis** (round {h.diagnosed_in_round}, {faults}, confidence "
            f"{h.confidence}): {_text(h.hypothesis)}",
            "",
        ]
    out += [f"**Next step for a person:** {_text(h.next_step or 'none was recorded')}", ""]
    out += _items("Symptoms seen", h.symptoms)
    out += _items("Drift from the baseline", h.drifts)
    if h.evidence:
        out += ["**Evidence** (quoted from tool output):", "", *map(_evidence, h.evidence), ""]
    out += _items("Ruled out", h.ruled_out)
    out += _items("No drift explains", h.unexplained)
    out += _items("Could not see", h.unseen)
    if h.who_changed:
        out += [f"**Who made the change:** {_text(h.who_changed)}", ""]
    return out


def _diagnosis(d: dict[str, Any], who: str) -> list[str]:
    out = [
        f"**Accepted:** {_text(d.get('root_cause'))} (confidence {d.get('confidence')}, "
        f"severity {d.get('severity')})",
        "",
        *map(_evidence, d.get("evidence", [])),
    ]
    dropped = d.get("dropped_evidence", [])
    if dropped:
        out += ["", "**Discarded claims** (no tool output supports them):", ""]
        out += [f"- {_text(ev['claim'])}" for ev in dropped]
    out.append("")
    out += _items("Drift from the baseline", d.get("drifts", []))
    out += _items("Ruled out", d.get("ruled_out", []))
    out += _items("No drift explains", d.get("unexplained", []))
    out += _items("Could not see", d.get("unseen", []))
    if d.get("drifts"):
        out += [f"**Who made the change:** {_text(who)}", ""]
    if d.get("escalate"):
        out += [f"Escalated instead of acting: {_text(d.get('escalation_reason'))}", ""]
    return out


def _round_sections(r: Round, level: str, who: str) -> list[str]:
    """A round's hypotheses, actions, review and verification, as sections at `level`."""
    out = [f"{level} Hypotheses and evidence", ""]
    out += _diagnosis(r.diagnosis, who) if r.diagnosis else ["No diagnosis was recorded.", ""]
    out += [f"{level} Actions", ""]
    p = r.proposal or {}
    if p:
        out += [
            f"Proposal (baseline v{p.get('baseline_version')}): {_text(p.get('rationale'))}",
            "",
        ]
    if r.actions:
        out += [
            f"1. {_code(a.get('service'))}:{_code(a.get('operation'))} "
            f"{_code(a.get('parameters'))} → {_text(a.get('outcome'))}"
            for a in r.actions
        ]
    else:
        out.append("No call was executed.")
    if r.rollbacks:
        out += ["", "Rolled back:", ""]
        out += [f"1. {_code(b.get('operation'))} {_code(b.get('parameters'))}" for b in r.rollbacks]
    out += ["", f"{level} Review and approvals", ""]
    review, approval = r.review or {}, r.approval or {}
    if review:
        out.append(
            f"Critic: **{_text(review.get('verdict'))}**: "
            + "; ".join(_text(reason) for reason in review.get("reasons", []))
        )
        out += [f"- {_text(c)}" for c in review.get("code_checks", [])]
    if approval:
        decided = approval.get("decided_by")
        out.append(
            f"\nApproval request {approval.get('status')}"
            + (f" by {_text(decided)} at {approval.get('decided_at')}" if decided else "")
            + (f": {_text(approval['reason'])}" if approval.get("reason") else "")
            + f" (expires {approval.get('expires_at')}, calls digest "
            f"`{str(approval.get('calls_digest'))[:12]}`)"
        )
    if not review and not approval:
        out.append("No review was needed.")
    out += ["", f"{level} Verification", ""]
    checks = (r.verification or {}).get("checks", [])
    out += [
        f"- [{'x' if c['ok'] else ' '}] {_text(c['name'])}: {_text(c['detail'])}" for c in checks
    ]
    out += [] if checks else ["Not verified."]
    return [*out, ""]


def postmortem_markdown(report: IncidentReport, detect_s: float | None = None) -> str:
    h = report.handover
    symptoms = _text(", ".join(report.symptoms))
    faults = sorted(
        {f for r in report.rounds for f in (r.diagnosis or {}).get("fault_types") or []}
    )
    out = [
        f"# Postmortem: {_text(report.resource)} ({symptoms}), {report.incident_id}",
        "",
        "## Summary",
        "",
        f"- **Status:** {report.status}",
        f"- **Opened:** {report.opened_at}; **closed:** {report.closed_at or 'not yet'}",
        f"- **Alerts:** {report.alert_count} ({symptoms})",
        f"- **Rounds of investigate-fix-verify:** {report.round}",
        f"- **Root cause:** {_text(h.hypothesis or 'not diagnosed')}",
        f"- **Faults:** {', '.join(faults) or 'none identified'}",
    ]
    if report.recover_s is not None:
        out.append(f"- **Time to recover, the MTTR (opened → recovered):** {report.recover_s:g} s")
    if report.resolve_s is not None:
        out.append(f"- **Time to resolve (opened → resolved):** {report.resolve_s:g} s")
    if detect_s is not None:
        out.append(f"- **Time to detect (fault → opened):** {detect_s:g} s")
    out += [
        f"- **Agent cost:** {report.agent_cost()}",
        "",
    ]
    if h.needs_a_person:
        out += ["## Escalation: what a person needs", "", *_handover(h)]
    out += [
        "## Timeline",
        "",
        "| time (UTC) | round | actor | what |",
        "|---|---|---|---|",
    ]
    for e in report.timeline:
        if e.action == "tool_call":
            what = f"tool {_code(e.detail.get('tool'))} {_code(e.detail.get('args'))}"
        elif e.action in ("api_call", "rollback_call"):
            call = f"{e.detail.get('service')}:{e.detail.get('operation')}"
            what = f"{e.action.replace('_', ' ')} {_code(call)} {_code(e.detail.get('parameters'))}"
        else:
            what = _text(e.action)
            if e.detail.get("reason"):
                what += f": {_text(e.detail['reason'])}"
            if starts_round(e) is not None:
                what = f"**round {e.round} begins** ({what})"
        out.append(f"| {e.at} | {e.round} | {_cell(_text(e.actor))} | {_cell(what)} |")
    out.append("")
    if report.round == 1:
        out += _round_sections(report.rounds[0], "##", who_changed(report))
    else:
        for r in report.rounds:
            why = _text(r.ended_because or "not recorded")
            ended = (
                f"ended {r.ended_at}: another round because {why}"
                if r.ended_at
                else f"the current round ({report.status})"
            )
            out += [f"## Round {r.number}", "", f"Started {r.started_at}; {ended}.", ""]
            out += _round_sections(r, "###", who_changed(report))
    out += ["## What to change", ""]
    out += [f"- {WHAT_TO_CHANGE[f]}" for f in faults if f in WHAT_TO_CHANGE] or [
        "- Nothing was found broken; review the alarm's threshold if this was a false alarm."
    ]
    return "\n".join(out) + "\n"
