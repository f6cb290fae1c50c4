"""Restoring a baseline: the drafted calls restore exactly what drifted (egress rules with
their descriptions, a deploy by pointing `live` back), pass validation, and the critic's
code checks reject anything that reaches beyond the baseline and leave to a person what
does not restore the baseline's exact value."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from incidents.baseline_diff import deployment_diff, network_diff
from incidents.baselines import Baseline, SecurityGroupRules
from incidents.proposal import Concern, Proposal
from incidents.remediation import FROM_BASELINE, ApiCall, ProposedCall, validate
from incidents.restore_plan import restore_calls, restore_note
from workers.critic import code_checks

POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {"Sid": "S3", "Effect": "Allow", "Action": ["s3:GetObject"], "Resource": ["arn:s3"]},
        {"Sid": "Logs", "Effect": "Allow", "Action": ["logs:PutLogEvents"], "Resource": ["*"]},
    ],
}
HTTPS = "AWS APIs over HTTPS"
EGRESS = [
    {
        "IpProtocol": "tcp",
        "FromPort": 443,
        "ToPort": 443,
        "IpRanges": [{"CidrIp": "0.0.0.0/0", "Description": HTTPS}],
        "Ipv6Ranges": [],
        "PrefixListIds": [],
        "UserIdGroupPairs": [],
    }
]
GOOD, BAD = "sha-good", "sha-bad"


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
        live_target="$LATEST",
        code_sha256=GOOD,
        newest_published_version="1",
        code_by_version={"$LATEST": GOOD, "1": GOOD},
    )


def bad_deploy(baseline_code_on_latest: bool = True) -> Baseline:
    """Version 2 with bad code and `live` on it: as `fleet chaos bad-deploy` leaves it
    ($LATEST keeps the good code), or as a person who uploaded the bad code to $LATEST
    and published it leaves it."""
    now = baseline().model_copy(deep=True)
    now.live_target, now.code_sha256, now.newest_published_version = "2", BAD, "2"
    latest = GOOD if baseline_code_on_latest else BAD
    now.code_by_version = {"$LATEST": latest, "1": GOOD, "2": BAD}
    return now


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
    elif concern == "deployment":
        now = bad_deploy()
    else:
        now.environment = {"DATA_PREFIX": "drifted/", "API_TOKEN": "changed"}
        now.timeout_s = 1
    return now


@pytest.mark.parametrize(
    "concern", ["iam", "concurrency", "network", "configuration", "deployment"]
)
def test_drafted_calls_restore_the_baseline_and_validate(concern: Concern) -> None:
    want, now = baseline(), drifted(concern)
    calls = restore_calls(concern, want, now, safe_env={"DATA_PREFIX"})
    assert calls
    verdict = validate("fn", want, calls, now.versions())
    assert verdict.valid, [v.problems for v in verdict.calls]
    assert not any(v.caveats for v in verdict.calls)  # each restores the exact value
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


# ---------------------------------------------------------------- exact egress


def _described(text: str | None) -> list[dict[str, Any]]:
    rule = copy.deepcopy(EGRESS)
    ranges = rule[0]["IpRanges"][0]
    ranges.pop("Description")
    if text is not None:
        ranges["Description"] = text
    return rule


def test_a_blocked_rule_comes_back_with_its_description() -> None:
    want = baseline()
    (call,) = restore_calls("network", want, drifted("network"))
    assert call.call.operation == "AuthorizeSecurityGroupEgress"
    assert call.call.parameters["IpPermissions"] == [
        {
            "IpProtocol": "tcp",
            "FromPort": 443,
            "ToPort": 443,
            "IpRanges": [{"CidrIp": "0.0.0.0/0", "Description": HTTPS}],
        }
    ]


@pytest.mark.parametrize("now_described", ["edited by hand", None])
def test_a_rule_described_otherwise_is_drift_and_its_description_is_restored(
    now_described: str | None,
) -> None:
    want, now = baseline(), baseline()
    now.security_groups[0].egress = _described(now_described)
    diff = network_diff(want, now)
    assert not diff.at_baseline
    (group,) = diff.groups
    assert not group.egress_missing and not group.egress_extra  # the rule itself is there
    assert group.egress_description_changed[0]["IpRanges"] == [
        {"CidrIp": "0.0.0.0/0", "Description": HTTPS}
    ]

    (call,) = restore_calls("network", want, now)
    # Described in place: the rule is never revoked, not even for a moment.
    assert call.call.operation == "UpdateSecurityGroupRuleDescriptionsEgress"
    assert call.call.parameters["IpPermissions"][0]["IpRanges"] == [
        {"CidrIp": "0.0.0.0/0", "Description": HTTPS}
    ]
    was = call.inverse.parameters["IpPermissions"][0]["IpRanges"][0] if call.inverse else {}
    assert was.get("Description") == now_described
    assert validate("fn", want, [call]).valid

    now.security_groups[0].egress = copy.deepcopy(EGRESS)  # as the call leaves it
    assert network_diff(want, now).at_baseline and restore_calls("network", want, now) == []


def test_validation_holds_egress_to_the_baseline_descriptions() -> None:
    want = baseline()

    def egress(operation: str, rules: list[dict[str, Any]]) -> ProposedCall:
        params = {"GroupId": "sg-1", "IpPermissions": rules}
        return ProposedCall(
            call=ApiCall(service="ec2", operation=operation, parameters=params),
            inverse=ApiCall(service="ec2", operation=operation, parameters=params),
        )

    for bad, problem in (
        (egress("AuthorizeSecurityGroupEgress", _described(None)), "descriptions differ"),
        (egress("AuthorizeSecurityGroupEgress", _described("other")), "descriptions differ"),
        (egress("UpdateSecurityGroupRuleDescriptionsEgress", _described("x")), "descriptions"),
        # EC2 revokes by protocol, ports and peer: another description is the same rule.
        (egress("RevokeSecurityGroupEgress", _described("not the baseline's")), "revokes"),
    ):
        verdict = validate("fn", want, [bad])
        assert not verdict.valid
        assert any(problem in p for p in verdict.calls[0].problems), verdict.calls[0].problems


def test_an_all_traffic_rule_is_drafted_without_ports() -> None:
    want, now = baseline(), baseline()
    everything = {"IpProtocol": "-1", "IpRanges": [{"CidrIp": "10.0.0.0/8"}]}
    now.security_groups[0].egress = [*copy.deepcopy(EGRESS), everything]
    (call,) = restore_calls("network", want, now)
    assert call.call.operation == "RevokeSecurityGroupEgress"
    assert call.call.parameters["IpPermissions"] == [everything]  # no FromPort: None


# ---------------------------------------------------------------- deployment


def _alias(version: str, back_to: str, name: str = "live", **extra: Any) -> ProposedCall:
    def point(to: str) -> ApiCall:
        return ApiCall(
            service="lambda",
            operation="UpdateAlias",
            parameters={"FunctionName": "fn", "Name": name, "FunctionVersion": to, **extra},
        )

    return ProposedCall(call=point(version), inverse=point(back_to))


def _deploy_proposal(calls: list[ProposedCall]) -> Proposal:
    return _proposal(calls).model_copy(update={"concerns": ["deployment"]})


def test_a_bad_deploy_is_rolled_back_to_the_baseline_target_and_approved_unattended() -> None:
    want, now = baseline(), bad_deploy()
    assert deployment_diff(want, now).model_dump() == {
        "live_target": ("$LATEST", "2"),
        "code_sha256": (GOOD, BAD),
        "runs_baseline_code": False,
        "versions_with_baseline_code": ["$LATEST", "1"],
        "newest_published_version": "2",
        "baseline_newest": "1",
        "at_baseline": False,
    }
    (call,) = restore_calls("deployment", want, now)
    assert call == _alias("$LATEST", back_to="2")
    assert restore_note("deployment", want, now) is None
    _, reject, ask = code_checks(_deploy_proposal([call]), want, 4, now.versions())
    assert not reject and not ask


def test_when_latest_runs_the_bad_code_too_live_goes_to_the_newest_good_version() -> None:
    want, now = baseline(), bad_deploy(baseline_code_on_latest=False)
    (call,) = restore_calls("deployment", want, now)
    assert call == _alias("1", back_to="2")
    assert "version 1" in (restore_note("deployment", want, now) or "")
    verdict = validate("fn", want, [call], now.versions())
    assert verdict.valid and verdict.calls[0].caveats
    # Not the baseline's exact target: valid, but a person decides.
    _, reject, ask = code_checks(_deploy_proposal([call]), want, 4, now.versions())
    assert not reject and any("not the baseline's exact target" in a for a in ask)

    # Once live runs version 1, the function runs the baseline's code: at baseline, and
    # nothing more to draft (the move stays visible).
    rolled = now.model_copy(update={"live_target": "1", "code_sha256": GOOD})
    diff = deployment_diff(want, rolled)
    assert diff.at_baseline and diff.live_target == ("$LATEST", "1")
    assert restore_calls("deployment", want, rolled) == []


def test_with_no_version_running_the_baseline_code_nothing_is_drafted() -> None:
    want, now = baseline(), bad_deploy(baseline_code_on_latest=False)
    now.code_by_version = {"$LATEST": BAD, "2": BAD}  # version 1 deleted
    assert not deployment_diff(want, now).at_baseline
    assert restore_calls("deployment", want, now) == []
    assert "a person must redeploy" in (restore_note("deployment", want, now) or "")


def test_latest_with_the_baseline_code_is_not_the_baseline_when_it_pinned_a_version() -> None:
    want = baseline().model_copy(update={"live_target": "1"})
    now = baseline()  # live -> $LATEST, same package today, but $LATEST can change
    assert not deployment_diff(want, now).at_baseline
    assert restore_calls("deployment", want, now) == [_alias("1", back_to="$LATEST")]


def test_validation_moves_only_live_to_an_existing_version_with_the_baseline_code() -> None:
    want, now = baseline(), bad_deploy()
    live = now.versions()
    for bad, problem in (
        (_alias("$LATEST", "2", name="other"), "only the alias 'live'"),
        (_alias("7", "2"), "does not exist"),
        (_alias("2", "2"), "not the baseline's"),
        (_alias("$LATEST", "1"), "back at its current target (2)"),
        (_alias("$LATEST", "2", RoutingConfig={"AdditionalVersionWeights": {"2": 0.5}}), "beyond"),
    ):
        verdict = validate("fn", want, [bad], live)
        assert not verdict.valid
        assert any(problem in p for p in verdict.calls[0].problems), verdict.calls[0].problems
    # Without the versions read live, a move of the alias cannot be checked: refused.
    _, reject, _ = code_checks(_deploy_proposal([_alias("$LATEST", "2")]), want, 4, None)
    assert any("versions were not read" in r for r in reject)
