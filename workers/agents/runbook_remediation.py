"""The offline model's remediation runbook: compare what the diagnosis implicates with the
baseline, draft the calls that restore it, validate them, and propose exactly those.

The fix is scoped to the diagnosis: concerns the diagnosis does not implicate are left
alone (a wider fix is a wider blast radius). With no fault named, every concern is checked.
"""

from __future__ import annotations

from typing import Any

from incidents.baseline_diff import CONCERNS, Concern
from workers.agents.offline_model import Step, Transcript

CONCERNS_OF: dict[str, tuple[Concern, ...]] = {
    "iam_permission_missing": ("iam",),
    "iam_explicit_deny": ("iam",),
    "concurrency_throttled": ("concurrency",),
    "network_blocked": ("network",),
    "config_drift": ("configuration",),
    "timeout_misconfigured": ("configuration",),
    "bad_deploy": ("deployment",),
}
ALL_CONCERNS = CONCERNS


def _concerns(fault_types: list[str]) -> list[Concern]:
    wanted = {c for f in fault_types for c in CONCERNS_OF.get(f, ())}
    return [c for c in ALL_CONCERNS if c in wanted] or list(ALL_CONCERNS)


def propose(t: Transcript) -> Step:
    task = t.task_data()
    fn = str(task.get("function_name", ""))
    concerns = _concerns(list(task.get("fault_types", [])))
    drifted: list[Concern] = []
    for concern in concerns:
        compared = t.last(f"compare_{concern}")
        if compared is None:
            return Step(
                f"Compare the function's {concern} with its baseline.",
                f"compare_{concern}",
                {"function_name": fn},
            )
        data = compared.data() if compared.ok else None
        if data is None or not data.get("at_baseline", False):
            drifted.append(concern)
    calls: list[dict[str, Any]] = []
    restored: list[Concern] = []  # what the calls restore: what verification will check
    notes: list[str] = []  # what the drafts say they could not restore, or not exactly
    for concern in drifted:
        drafted = t.last("draft_restore", concern=concern)
        if drafted is None:
            return Step(
                f"Draft the calls that restore {concern} to the baseline.",
                "draft_restore",
                {"function_name": fn, "concern": concern},
            )
        data = (drafted.data() if drafted.ok else None) or {}
        calls.extend(data.get("calls", []))
        if data.get("calls"):
            restored.append(concern)
        if data.get("note"):
            notes.append(f"{concern}: {data['note']}")
    baseline_version = 0
    if calls:
        verdict = t.last("validate_proposal")
        if verdict is None:
            return Step(
                "Validate the drafted calls before proposing them.",
                "validate_proposal",
                {"function_name": fn, "calls": calls},
            )
        baseline_version = int((verdict.data() or {}).get("baseline_version", 0))
    rationale = (
        f"restore {', '.join(restored)} of {fn} to baseline v{baseline_version}, which the "
        f"diagnosis implicates ({', '.join(task.get('fault_types', [])) or 'no fault named'})"
        if calls
        else f"{', '.join(concerns)} of {fn} already match the baseline: nothing to change"
        if not drifted
        else f"nothing drafted restores {', '.join(drifted)} of {fn}"
    )
    if notes:
        rationale += "; " + "; ".join(notes)
    return Step(
        "Propose the validated calls.",
        "ProposalDraft",
        {
            "function_name": fn,
            "baseline_version": baseline_version,
            "concerns": restored,
            "calls": calls,
            "rationale": rationale,
        },
    )
