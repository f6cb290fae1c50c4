"""Restoring a baseline: the drafted calls restore exactly what drifted, pass validation,
and the critic's code checks reject anything that reaches beyond the baseline."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from incidents.baselines import Baseline, SecurityGroupRules
from incidents.proposal import Concern, Proposal
from incidents.remediation import FROM_BASELINE, ApiCall, ProposedCall, validate
from incidents.restore_plan import restore_calls
from workers.critic import code_checks

POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {"Sid": "S3", "Effect": "Allow", "Action": ["s3:GetObject"], "Resource": ["arn:s3"]},
        {"Sid": "Logs", "Effect": "Allow", "Action": ["logs:PutLogEvents"], "Resource": ["*"]},
    ],
}
EGRESS = [
    {"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}
]


def baseline() -> Baseline:
    return Baseline(
        function="fn",
        version=3,
        role_name="fn-role",
        inline_policies={"base": POLICY},
        attached_policy_arns=[],
        reserved_concurrency=None,
        environment={"DATA_PREFIX": "fn/", "API_TOKEN": "s3cr3t"},
        timeout_s=10,
        memory_mb=256,
        security_groups=[
            SecurityGroupRules(group_id="sg-1", group_name="fn-sg", egress=EGRESS, ingress=[])
        ],
    )


def drifted(concern: Concern) -> Baseline:
    now = baseline().model_copy(deep=True)
    if concern == "iam":
        revoked = copy.deepcopy(POLICY)
        revoked["Statement"] = revoked["Statement"][1:]
        now.inline_policies = {
            "base": revoked,
            "deny": {"Statement": [{"Effect": "Deny", "Action": "s3:*", "Resource": "*"}]},
        }
        now.attached_policy_arns = ["arn:aws:iam::aws:policy/ReadOnlyAccess"]
    elif concern == "concurrency":
        now.reserved_concurrency = 0
    elif concern == "network":
        now.security_groups[0].egress = []
    else:
        now.environment = {"DATA_PREFIX": "drifted/", "API_TOKEN": "changed"}
        now.timeout_s = 1
    return now


@pytest.mark.parametrize("concern", ["iam", "concurrency", "network", "configuration"])
def test_drafted_calls_restore_the_baseline_and_validate(concern: Concern) -> None:
    want = baseline()
    calls = restore_calls(concern, want, drifted(concern), safe_env={"DATA_PREFIX"})
    assert calls
    verdict = validate("fn", want, calls)
    assert verdict.valid, [v.problems for v in verdict.calls]
    assert restore_calls(concern, want, want) == []  # at baseline: nothing to do
    # A secret value never appears in a draft; the executor fills it in from the baseline.
    assert "s3cr3t" not in str([c.model_dump() for c in calls])
    assert "changed" not in str([c.call.model_dump() for c in calls])


def test_the_placeholder_is_filled_from_the_baseline_only_when_executed() -> None:
    want = baseline()
    (call,) = restore_calls("configuration", want, drifted("configuration"), safe_env=set())
    variables = call.call.parameters["Environment"]["Variables"]
    assert set(variables.values()) == {FROM_BASELINE}
    filled = call.call.with_baseline_values(want).parameters["Environment"]["Variables"]
    assert filled == want.environment


def _proposal(calls: list[ProposedCall]) -> Proposal:
    return Proposal(
        function_name="fn",
        baseline_version=3,
        concerns=["iam"],
        calls=calls,
        rationale="r",
    )


def _call(operation: str, **params: Any) -> ProposedCall:
    return ProposedCall(
        call=ApiCall(
            service="iam", operation=operation, parameters={"RoleName": "fn-role", **params}
        ),
        inverse=ApiCall(
            service="iam",
            operation="DetachRolePolicy",
            parameters={"RoleName": "fn-role", **params},
        ),
    )


def test_the_critic_rejects_a_call_that_widens_the_role() -> None:
    admin = _call("AttachRolePolicy", PolicyArn="arn:aws:iam::aws:policy/AdministratorAccess")
    _, reject, _ = code_checks(_proposal([admin]), baseline(), max_auto_calls=4)
    assert reject and "AdministratorAccess" in reject[0]


def test_the_critic_rejects_calls_off_the_allowlist_and_asks_for_large_fixes() -> None:
    off_list = ProposedCall(call=ApiCall(service="iam", operation="CreateUser", parameters={}))
    _, reject, _ = code_checks(_proposal([off_list]), baseline(), max_auto_calls=4)
    assert any("not on the allowlist" in r for r in reject)

    calls = restore_calls("iam", baseline(), drifted("iam"))
    _, reject, ask = code_checks(_proposal(calls), baseline(), max_auto_calls=2)
    assert not reject and any("run only with a person" in a for a in ask)
    _, reject, ask = code_checks(_proposal(calls), baseline(), max_auto_calls=4)
    assert not reject and not ask
