"""The resolver's proposal carries the server's verdict on exactly its calls: the verdict
of the agent's own last validation when that was on exactly the calls it answered with
(no second read of the function for the same answer), and none otherwise, so that the
server is asked again (workers/agents/propose.py)."""

from __future__ import annotations

import json
from typing import Any

from incidents.proposal import ProposalDraft
from workers.agents.propose import verdict_in_run
from workers.agents.runner import ToolCallRecord

FN = "data-processor"
PUT = {
    "call": {
        "service": "iam",
        "operation": "PutRolePolicy",
        "parameters": {"RoleName": "r", "PolicyName": "p", "PolicyDocument": "{}"},
    },
    "inverse": {
        "service": "iam",
        "operation": "DeleteRolePolicy",
        "parameters": {"RoleName": "r", "PolicyName": "p"},
    },
}
OTHER = {
    **PUT,
    "call": {**PUT["call"], "parameters": {**PUT["call"]["parameters"], "PolicyName": "q"}},
}


def verdict(valid: bool) -> str:
    return json.dumps({"function_name": FN, "baseline_version": 3, "valid": valid, "calls": []})


def validation(calls: list[dict[str, Any]], output: str, ok: bool = True) -> ToolCallRecord:
    return ToolCallRecord(
        "c1", "validate_proposal", {"function_name": FN, "calls": calls}, ok, output
    )


def draft(calls: list[dict[str, Any]]) -> ProposalDraft:
    return ProposalDraft.model_validate(
        {
            "function_name": FN,
            "baseline_version": 3,
            "concerns": ["iam"],
            "calls": calls,
            "rationale": "r",
        }
    )


def test_the_agents_validation_of_exactly_the_answered_calls_is_the_verdict() -> None:
    found = verdict_in_run([validation([PUT], verdict(False))], draft([PUT]))
    assert found is not None and not found.valid and found.baseline_version == 3


def test_a_validation_of_other_calls_or_none_at_all_asks_the_server_again() -> None:
    assert verdict_in_run([], draft([PUT])) is None
    assert verdict_in_run([validation([OTHER], verdict(True))], draft([PUT])) is None
    assert verdict_in_run([validation([PUT, OTHER], verdict(True))], draft([PUT])) is None
    # Only the last validation counts: an earlier one on these calls may be out of date.
    later = validation([OTHER], verdict(True))
    assert verdict_in_run([validation([PUT], verdict(True)), later], draft([PUT])) is None


def test_a_failed_or_unreadable_validation_is_no_verdict() -> None:
    assert verdict_in_run([validation([PUT], "boom", ok=False)], draft([PUT])) is None
    assert verdict_in_run([validation([PUT], "not json")], draft([PUT])) is None
    other_function = ToolCallRecord(
        "c1", "validate_proposal", {"function_name": "x", "calls": [PUT]}, True, verdict(True)
    )
    assert verdict_in_run([other_function], draft([PUT])) is None
