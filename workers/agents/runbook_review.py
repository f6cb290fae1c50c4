"""The offline model's review runbook: does the proposal fix what was diagnosed, and only
that? (The code checks ran before; this is the second opinion an approver reads.)"""

from __future__ import annotations

from workers.agents.offline_model import Step, Transcript
from workers.agents.runbook_remediation import CONCERNS_OF


def review(t: Transcript) -> Step:
    task = t.task_data()
    faults = list(task.get("diagnosis", {}).get("fault_types", []))
    proposal = task.get("proposal", {})
    proposed = set(proposal.get("concerns", []))
    implicated = {c for f in faults for c in CONCERNS_OF.get(f, ())}
    concerns = []
    if not proposal.get("calls"):
        concerns.append("the proposal makes no call")
    beyond = sorted(proposed - implicated) if implicated else []
    if beyond:
        concerns.append(f"restores {', '.join(beyond)}, which the diagnosis does not implicate")
    unaddressed = sorted(implicated - proposed)
    if unaddressed:
        concerns.append(f"leaves {', '.join(unaddressed)} as they are, though diagnosed")
    confidence = float(task.get("diagnosis", {}).get("confidence", 0))
    if confidence < 0.6:
        concerns.append(f"the diagnosis is not confident ({confidence:.2f})")
    return Step(
        "Review complete.",
        "ReviewDraft",
        {"approve": not concerns, "concerns": concerns},
    )
