"""What the stages record for an incident, as they record it: the diagnoses, proposals and
verifications of an incident that took two rounds and then needed a person. The unit tests
lay them out as the store keeps them; the integration tests write them through the store.

Round 1 restored a revoked S3 permission; the fix verified its part, but runs still failed,
so round 2 began. Round 2 found the environment drifted too and a `KeyError` it could not
pin on the drift, trusted itself too little to act, and escalated. Its log quote is hostile
(markup, a terminal escape): pages and terminals must show it as text.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any

from incidents.context_items import ContextItem
from incidents.diagnosis import Diagnosis, Evidence, FaultType
from incidents.escalation import escalate
from incidents.executor import shown
from incidents.lifecycle import IncidentStatus as S
from incidents.proposal import Proposal
from incidents.remediation import ApiCall, ProposedCall
from incidents.store import IncidentStore
from incidents.verification import Check, Verification

FUNCTION = "data-processor"
HOSTILE_LOG_LINE = (
    "KeyError: 'records' <script>window.__owned = 1</script>"
    '<img src=x onerror="window.__owned = 2"> \x1b[2J'
)
NEXT_STEP = (
    "Read the failing batch in s3://data/input/batch.json; restore DATA_PREFIX if unintended"
)
ROUND_2_BECAUSE = "the fix verified its part (iam at baseline) and runs still fail"
ESCALATED_BECAUSE = "confidence 0.45 < 0.6"

IAM_CALL = ApiCall(
    service="iam",
    operation="PutRolePolicy",
    parameters={"RoleName": f"{FUNCTION}-role", "PolicyName": "s3-access"},
)


def round_1_diagnosis() -> dict[str, Any]:
    return Diagnosis(
        function_name=FUNCTION,
        root_cause="The role lost s3:GetObject",
        fault_types=[FaultType.IAM_PERMISSION_MISSING],
        severity="high",
        confidence=0.9,
        evidence=[
            Evidence(
                claim="Runs are denied s3:GetObject",
                tool_call_id="call-1",
                quote="AccessDenied: s3:GetObject",
            )
        ],
        symptoms=["12 failed runs: AccessDenied: s3:GetObject"],
        drifts=["iam: inline policy s3-access deleted"],
        ruled_out=["concurrency: at baseline"],
        next_step="Restore the policy s3-access",
        tool_calls=4,
        prompt_tokens=1000,
        completion_tokens=100,
    ).model_dump(mode="json")


def round_1_proposal() -> dict[str, Any]:
    return Proposal(
        function_name=FUNCTION,
        baseline_version=1,
        concerns=["iam"],
        calls=[ProposedCall(call=IAM_CALL)],
        rationale="Put the baseline's policy back",
        valid=True,
    ).model_dump(mode="json")


def round_1_verification() -> dict[str, Any]:
    return Verification(
        ok=False,
        checks=[
            Check(name="iam at baseline", ok=True, detail="matches baseline v1"),
            Check(name="clean runs", ok=False, detail="0 of 3 runs succeeded"),
        ],
        elapsed_s=20.0,
    ).model_dump(mode="json")


def round_2_diagnosis() -> dict[str, Any]:
    return Diagnosis(
        function_name=FUNCTION,
        root_cause="Runs fail with a KeyError; DATA_PREFIX also differs from the baseline",
        fault_types=[FaultType.CODE_BUG, FaultType.CONFIG_DRIFT],
        severity="high",
        confidence=0.45,
        evidence=[
            Evidence(
                claim="The handler fails reading the batch",
                tool_call_id="call-7",
                quote=HOSTILE_LOG_LINE,
            )
        ],
        symptoms=["9 failed runs since round 1's fix: KeyError: 'records'"],
        drifts=["configuration: DATA_PREFIX is 'drifted/' (baseline 'input/')"],
        ruled_out=["iam: at baseline (restored in round 1)", "concurrency: at baseline"],
        unexplained=["KeyError: 'records' is not what a wrong prefix gives (NoSuchKey)"],
        unseen=["logs before 10:02: the log group has none"],
        next_step=NEXT_STEP,
        tool_calls=6,
        prompt_tokens=2000,
        completion_tokens=200,
        escalate=True,
        escalation_reason=ESCALATED_BECAUSE,
    ).model_dump(mode="json")


def record_two_rounds_then_escalated(store: IncidentStore, resource: str) -> str:
    """Write the whole story through the store, as the stages do; the incident's id."""
    now = datetime.now(UTC)
    opened = store.open_or_dedupe(
        resource, "errors", now, 1800, "supervisor", {}, lambda _: [], f"{resource}-a1"
    )
    incident_id = opened.incident_id
    store.open_or_dedupe(
        resource, "throttles", now, 1800, "supervisor", {}, lambda _: [], f"{resource}-a2"
    )
    steps = (S.RECEIVED, S.INVESTIGATING, S.DIAGNOSED, S.PROPOSED, S.APPROVED, S.EXECUTING)
    for old, new in itertools.pairwise(steps):
        assert store.transition(incident_id, old, new, "test")
    store.append_audit(incident_id, "resolver", "api_call", {**shown(IAM_CALL), "outcome": "ok"})
    assert store.transition(incident_id, S.EXECUTING, S.VERIFYING, "resolver")
    # Round 1's records, moved aside as the supervisor does when round 2 starts.
    for item, data in (
        (ContextItem.DIAGNOSIS, round_1_diagnosis()),
        (ContextItem.PROPOSAL, round_1_proposal()),
        (ContextItem.VERIFICATION, round_1_verification()),
    ):
        store.put_context(incident_id, item, data)
    detail = {"round": 2, "reason": ROUND_2_BECAUSE}
    assert store.transition(
        incident_id, S.VERIFYING, S.INVESTIGATING, "resolver", detail, round_number=2
    )
    assert store.archive_round(incident_id, 1) == 3
    store.put_context(incident_id, ContextItem.DIAGNOSIS, round_2_diagnosis())
    assert escalate(store, incident_id, S.INVESTIGATING, "supervisor", ESCALATED_BECAUSE)
    return incident_id
