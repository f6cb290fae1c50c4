"""What the supervisor concludes about an incident, and the rule that every claim is cited.

The agent returns a :class:`DiagnosisDraft`; :func:`finalize` keeps only the evidence whose
citation names a tool call that really happened and answered without error, and whose
quote appears in that call's output. A diagnosis left with no evidence is not believed.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, Field


class FaultType(StrEnum):
    IAM_PERMISSION_MISSING = "iam_permission_missing"
    IAM_EXPLICIT_DENY = "iam_explicit_deny"
    CONCURRENCY_THROTTLED = "concurrency_throttled"
    NETWORK_BLOCKED = "network_blocked"
    CONFIG_DRIFT = "config_drift"
    TIMEOUT_MISCONFIGURED = "timeout_misconfigured"
    # `live` runs a version other than the baseline's (or other code): roll the alias back.
    BAD_DEPLOY = "bad_deploy"
    # Runs fail with the state at its baseline: the code or its input, not the account.
    # Nothing a restore can fix; a person is told what was seen.
    CODE_BUG = "code_bug"
    INPUT_MISSING = "input_missing"
    NONE = "none"


Severity = Literal["critical", "high", "medium", "low"]


class Evidence(BaseModel):
    claim: str = Field(description="What this evidence shows, in one sentence.")
    tool_call_id: str = Field(description="The id of the tool call whose output shows it.")
    quote: str = Field(
        description="A short exact excerpt of that tool call's output that supports the claim."
    )


class DiagnosisDraft(BaseModel):
    """The structured answer the supervisor's agent gives at the end of its investigation."""

    function_name: str = Field(description="The protected Lambda function concerned.")
    root_cause: str = Field(description="The root cause, in one or two sentences.")
    fault_types: list[FaultType] = Field(
        description="Every fault found; [none] when the function is healthy."
    )
    severity: Severity
    confidence: float = Field(ge=0.0, le=1.0)
    evidence: list[Evidence] = Field(description="Each claim with the tool call it came from.")
    # What a person reads when the fleet will not act (and the record when it does).
    symptoms: list[str] = Field(
        default=[], description="What was seen failing: counts, and error lines quoted."
    )
    drifts: list[str] = Field(
        default=[], description="Every way the live function differs from its baseline."
    )
    ruled_out: list[str] = Field(
        default=[], description="What was checked and found at its baseline or healthy."
    )
    unexplained: list[str] = Field(
        default=[], description="Symptoms that no drift from the baseline explains."
    )
    unseen: list[str] = Field(
        default=[],
        description="What could not be seen: a tool that failed or was refused, logs missing.",
    )
    next_step: str = Field(
        default="", description="What a person should do next if the fleet does not act."
    )


class Diagnosis(DiagnosisDraft):
    """A draft after its citations were checked, with what the investigation cost."""

    dropped_evidence: list[Evidence] = []
    tool_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    escalate: bool = False
    escalation_reason: str | None = None


# Below this, the fleet does not act on its own: a person looks first.
MIN_CONFIDENCE = 0.6
# Faults no restore of the baseline fixes: the fleet says what it saw and changes nothing.
NOT_RESTORABLE = frozenset({FaultType.CODE_BUG, FaultType.INPUT_MISSING})


def finalize(
    draft: DiagnosisDraft,
    tool_outputs: dict[str, str],
    tool_calls: int,
    prompt_tokens: int,
    completion_tokens: int,
) -> Diagnosis:
    """Drop uncited claims; escalate a diagnosis that nothing supports or nobody trusts.

    `tool_outputs` maps each successful tool call's id to its output text.
    """
    kept, dropped = [], []
    for item in draft.evidence:
        output = tool_outputs.get(item.tool_call_id)
        if output is not None and item.quote and _normalized(item.quote) in _normalized(output):
            kept.append(item)
        else:
            dropped.append(item)
    diagnosis = Diagnosis(
        **draft.model_dump(exclude={"evidence"}),
        evidence=kept,
        dropped_evidence=dropped,
        tool_calls=tool_calls,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
    )
    if not kept:
        diagnosis.confidence = min(diagnosis.confidence, 0.2)
        diagnosis.escalate, diagnosis.escalation_reason = True, "no claim is backed by a tool call"
    elif diagnosis.confidence < MIN_CONFIDENCE:
        diagnosis.escalate = True
        diagnosis.escalation_reason = f"confidence {diagnosis.confidence:.2f} < {MIN_CONFIDENCE}"
    elif diagnosis.fault_types and set(diagnosis.fault_types) <= NOT_RESTORABLE:
        diagnosis.escalate = True
        named = ", ".join(f.value for f in diagnosis.fault_types)
        diagnosis.escalation_reason = (
            f"{named}: the function matches its baseline, so no restore fixes it; nothing was "
            "changed"
        )
    return diagnosis


def inconclusive(
    function_name: str, reason: str, tool_calls: int, prompt_tokens: int, completion_tokens: int
) -> Diagnosis:
    """What the supervisor records when the investigation ran out of budget or time:
    low confidence, escalated to a person rather than guessed."""
    return Diagnosis(
        function_name=function_name,
        root_cause=f"inconclusive: {reason}",
        fault_types=[],
        severity="high",
        confidence=0.0,
        evidence=[],
        tool_calls=tool_calls,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        escalate=True,
        escalation_reason=reason,
    )


def _normalized(text: str) -> str:
    # Tool output reaches the model as JSON text: quotes inside it come back escaped.
    return " ".join(text.replace('\\"', '"').split()).lower()
