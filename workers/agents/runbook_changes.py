"""Who made a drift: the diagnosis runbook's reading of CloudTrail (the `recent_changes` tool).

A drift says what differs from the baseline; the trail says who changed it and when. Each
change that took effect, made by anyone but the fleet, is matched to the concern its call
changes (a role policy: iam; reserved concurrency; a security group rule: network; the
function's configuration; its code or alias: deployment), and the latest one is cited
beside the drift of that concern, quoting the tool's own line. The trail lags calls by
minutes on AWS: when it has nothing yet, the diagnosis says so rather than guessing.
"""

from __future__ import annotations

import re
from typing import Any

from workers.agents.offline_model import ToolResult
from workers.agents.runbook_findings import Account, Finding

# The calls that change each concern the baseline records (Lambda's carry their version).
CHANGE_CONCERNS: tuple[tuple[str, str], ...] = (
    ("PutRolePolicy", "iam"),
    ("DeleteRolePolicy", "iam"),
    ("AttachRolePolicy", "iam"),
    ("DetachRolePolicy", "iam"),
    ("PutRolePermissionsBoundary", "iam"),
    ("DeleteRolePermissionsBoundary", "iam"),
    ("CreatePolicyVersion", "iam"),
    ("SetDefaultPolicyVersion", "iam"),
    ("PutFunctionConcurrency", "concurrency"),
    ("DeleteFunctionConcurrency", "concurrency"),
    ("AuthorizeSecurityGroup", "network"),
    ("RevokeSecurityGroup", "network"),
    ("ModifySecurityGroupRules", "network"),
    ("UpdateFunctionConfiguration", "configuration"),
    ("UpdateFunctionCode", "deployment"),
    ("UpdateAlias", "deployment"),
    ("PublishVersion", "deployment"),
)
NOT_YET = (
    "who made the drift: nothing in CloudTrail's event history yet (events appear minutes "
    "after a call; the postmortem reads it again)"
)


def concern_of(event: str) -> str | None:
    return next((c for prefix, c in CHANGE_CONCERNS if event.startswith(prefix)), None)


def changes_by_concern(changes: ToolResult) -> dict[str, dict[str, str]]:
    """Per concern, the evidence citing the latest change of it by anyone but the fleet."""
    data: dict[str, Any] = changes.data() or {}
    cited: dict[str, dict[str, str]] = {}
    for change, line in zip(data.get("changes", []), data.get("told", []), strict=False):
        concern = concern_of(str(change.get("event", "")))
        if concern is None or change.get("by_fleet") or change.get("error"):
            continue
        if re.search(re.escape(str(line)), changes.text) is None:
            continue  # only what the tool's output says, word for word
        cited[concern] = {  # oldest first: the latest wins
            "claim": f"{concern} was changed by {change.get('who')} at {change.get('at')}",
            "tool_call_id": changes.call_id,
            "quote": str(line),
        }
    return cited


def cite_who_changed(changes: ToolResult | None, findings: list[Finding], account: Account) -> None:
    """Beside each drift, who made it, where the trail has it."""
    if changes is None or not findings:
        return
    if not changes.ok:
        account.unseen.append(
            f"who made the drift: CloudTrail could not be read: {changes.text[:200]}"
        )
        return
    cited = changes_by_concern(changes)
    for f in findings:
        if f.concern in cited:
            f.evidence.append(cited[f.concern])
    if not any(f.concern in cited for f in findings):
        account.unseen.append(NOT_YET)
