"""A proposed fix: the exact AWS calls that restore a function's baseline, each with its
inverse, and what the critic and a person decide about it."""

from __future__ import annotations

import hashlib
import json
from enum import StrEnum

from pydantic import BaseModel, Field

from incidents.baseline_diff import Concern
from incidents.remediation import ProposedCall


class ProposalDraft(BaseModel):
    """The structured answer the resolver's agent gives once it has a validated fix."""

    function_name: str
    baseline_version: int = Field(description="The baseline version the calls restore.")
    concerns: list[Concern] = Field(description="What the calls restore.")
    calls: list[ProposedCall] = Field(description="Exact calls in order, each with its inverse.")
    rationale: str = Field(description="Why these calls fix the diagnosed fault.")


class Proposal(ProposalDraft):
    valid: bool = False  # what the resolver server's validate_proposal said
    problems: list[str] = []
    tool_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def calls_digest(self) -> str:
        """Binds an approval to these exact calls and parameters."""
        return calls_digest(self.calls)


def calls_digest(calls: list[ProposedCall]) -> str:
    canonical = json.dumps([c.model_dump(mode="json") for c in calls], sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


class Verdict(StrEnum):
    APPROVE = "approve"  # restores the baseline exactly: runs without a person
    ASK_HUMAN = "ask_human"
    REJECT = "reject"  # widens something beyond the baseline, or cannot be checked


class ReviewDraft(BaseModel):
    """The critic model's opinion of a proposal that passed the code checks."""

    approve: bool = Field(description="True if the calls fix the diagnosed fault and no more.")
    concerns: list[str] = Field(description="Anything a person should look at first.")


class Review(BaseModel):
    verdict: Verdict
    reasons: list[str]
    code_checks: list[str]  # each check and its outcome, as shown to an approver
    model_concerns: list[str] = []
    calls_digest: str
