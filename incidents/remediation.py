"""Remediation policy: which AWS calls a fix may make, and whether a proposal restores the
baseline (and nothing more), with a known inverse for each call.

Used by the resolver's MCP tool `validate_proposal` now, and by the critic and the
executor with the resolver worker.

A deploy is rolled back by pointing the alias `live` (and no other) back at a version
that exists and runs the baseline's package; whether that version exists and what it
runs is read live (`FunctionVersions`), since no baseline can know versions published
after it. A call that restores the baseline's state, but not to the very value the
baseline records (the alias to another version than the baseline's with the same code),
is valid with a caveat: the critic leaves it to a person.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, Field

from core.egress import Rule, description, rule_key, single_rules
from core.lambda_versions import LIVE_ALIAS, FunctionVersions
from incidents.baselines import Baseline

# (service, operation): the only calls any remediation may make.
ALLOWLIST: frozenset[tuple[str, str]] = frozenset(
    {
        ("iam", "PutRolePolicy"),
        ("iam", "DeleteRolePolicy"),
        ("iam", "AttachRolePolicy"),
        ("iam", "DetachRolePolicy"),
        ("lambda", "PutFunctionConcurrency"),
        ("lambda", "DeleteFunctionConcurrency"),
        ("lambda", "UpdateFunctionConfiguration"),
        ("lambda", "UpdateAlias"),  # `live` only, back to a version with the baseline's code
        ("ec2", "AuthorizeSecurityGroupEgress"),
        ("ec2", "RevokeSecurityGroupEgress"),
        ("ec2", "UpdateSecurityGroupRuleDescriptionsEgress"),
    }
)


# Stands for an environment value the function does not mark safe to show: the value in
# the baseline this proposal restores (filled in by the executor, never shown to a model).
FROM_BASELINE = "{{baseline}}"


class ApiCall(BaseModel):
    service: str
    operation: str
    parameters: dict[str, Any] = Field(default_factory=dict)

    def with_baseline_values(self, want: Baseline) -> ApiCall:
        """The call with every FROM_BASELINE environment value taken from `want`."""
        variables = self.parameters.get("Environment", {}).get("Variables")
        if not isinstance(variables, dict) or FROM_BASELINE not in variables.values():
            return self
        filled = {
            k: (want.environment.get(k, v) if v == FROM_BASELINE else v)
            for k, v in variables.items()
        }
        return self.model_copy(
            update={"parameters": {**self.parameters, "Environment": {"Variables": filled}}}
        )


class ProposedCall(BaseModel):
    call: ApiCall
    inverse: ApiCall | None = None


class CallVerdict(BaseModel):
    call: ApiCall
    allowlisted: bool
    restores_baseline: bool
    inverse_known: bool
    problems: list[str]
    # Valid, but not to the exact value the baseline records: for a person to weigh.
    caveats: list[str] = []

    @property
    def ok(self) -> bool:
        return not self.problems


class ProposalVerdict(BaseModel):
    function_name: str
    baseline_version: int
    valid: bool
    calls: list[CallVerdict]


def _doc(raw: Any) -> dict[str, Any]:
    return dict(json.loads(raw)) if isinstance(raw, str) else dict(raw or {})


def _restores(call: ApiCall, want: Baseline, live: FunctionVersions | None) -> str | None:
    """None if the call moves the function toward its baseline; else what is wrong."""
    p, op = call.parameters, call.operation
    if call.service == "iam":
        if p.get("RoleName") != want.role_name:
            return f"role {p.get('RoleName')!r} is not this function's ({want.role_name})"
        if op == "PutRolePolicy":
            name = p.get("PolicyName")
            if name not in want.inline_policies:
                return f"inline policy {name!r} is not in the baseline"
            wanted = want.inline_policies[name].get("Statement", [])
            wanted = [wanted] if isinstance(wanted, dict) else wanted
            given = _doc(p.get("PolicyDocument")).get("Statement", [])
            given = [given] if isinstance(given, dict) else given
            wider = [s for s in given if s not in wanted]
            return f"statements beyond the baseline: {wider}" if wider else None
        if op == "DeleteRolePolicy":
            return (
                None
                if p.get("PolicyName") not in want.inline_policies
                else f"{p.get('PolicyName')!r} is a baseline policy"
            )
        if op == "AttachRolePolicy":
            return (
                None
                if p.get("PolicyArn") in want.attached_policy_arns
                else f"{p.get('PolicyArn')!r} is not attached in the baseline"
            )
        if op == "DetachRolePolicy":
            return (
                None
                if p.get("PolicyArn") not in want.attached_policy_arns
                else f"{p.get('PolicyArn')!r} is attached in the baseline"
            )
    if call.service == "lambda":
        if p.get("FunctionName") != want.function:
            return f"function {p.get('FunctionName')!r} is not {want.function}"
        if op == "PutFunctionConcurrency":
            return (
                None
                if p.get("ReservedConcurrentExecutions") == want.reserved_concurrency
                else f"baseline concurrency is {want.reserved_concurrency}"
            )
        if op == "DeleteFunctionConcurrency":
            return (
                None if want.reserved_concurrency is None else "the baseline reserves concurrency"
            )
        if op == "UpdateFunctionConfiguration":
            expected = {
                "Timeout": want.timeout_s,
                "MemorySize": want.memory_mb,
                "Environment": {"Variables": want.environment},
            }
            unknown = sorted(set(p) - set(expected) - {"FunctionName"})
            if unknown:
                return f"changes settings outside the baseline: {unknown}"
            off = sorted(k for k in expected if k in p and p[k] != expected[k])
            return f"values differ from the baseline: {off}" if off else None
        if op == "UpdateAlias":
            return _alias_problem(p, want, live)
    if call.service == "ec2":
        group = next((g for g in want.security_groups if g.group_id == p.get("GroupId")), None)
        if group is None:
            return f"security group {p.get('GroupId')!r} is not this function's"
        return _egress_problem(op, single_rules(p.get("IpPermissions", [])), group.egress)
    return f"{call.service}:{op} has no baseline rule"


def _egress_problem(
    op: str, rules: list[Rule], baseline_egress: list[dict[str, Any]]
) -> str | None:
    """Rules are matched as EC2 matches them (protocol, ports, peer); descriptions must be
    the baseline's wherever a call sets them."""
    baseline = {rule_key(r): r for r in single_rules(baseline_egress)}
    unknown = [r for r in rules if rule_key(r) not in baseline]
    described_otherwise = [
        r
        for r in rules
        if rule_key(r) in baseline and description(r) != description(baseline[rule_key(r)])
    ]
    if op == "RevokeSecurityGroupEgress":
        kept = [r for r in rules if rule_key(r) in baseline]
        return f"revokes baseline egress: {kept}" if kept else None
    if unknown:
        return f"egress beyond the baseline: {unknown}"
    if described_otherwise:
        return f"descriptions differ from the baseline: {described_otherwise}"
    return None


def _alias_problem(p: dict[str, Any], want: Baseline, live: FunctionVersions | None) -> str | None:
    if p.get("Name") != LIVE_ALIAS:
        return f"only the alias {LIVE_ALIAS!r} may be moved, not {p.get('Name')!r}"
    # RoutingConfig would split traffic between versions; a description is no restore.
    beyond = sorted(set(p) - {"FunctionName", "Name", "FunctionVersion"})
    if beyond:
        return f"changes alias settings beyond its target: {beyond}"
    if live is None:
        return "the function's versions were not read: the target cannot be checked"
    target = str(p.get("FunctionVersion"))
    if target not in live.code_by_version:
        return f"version {target!r} of {want.function} does not exist"
    if live.code_by_version[target] != want.code_sha256:
        return (
            f"version {target} runs code {live.code_by_version[target]}, not the baseline's "
            f"({want.code_sha256 or 'not recorded'})"
        )
    return None


def _caveats(call: ApiCall, want: Baseline) -> list[str]:
    """What a valid call leaves different from the exact value the baseline records."""
    p = call.parameters
    if (call.service, call.operation) == ("lambda", "UpdateAlias"):
        target = str(p.get("FunctionVersion"))
        if target != want.live_target:
            return [
                f"alias {LIVE_ALIAS} -> {target} runs the baseline's code, but the baseline "
                f"points it at {want.live_target}: not the baseline's exact target"
            ]
    return []


def _inverse_problem(proposed: ProposedCall, live: FunctionVersions | None) -> str | None:
    inverse = proposed.inverse
    if inverse is None:
        return "no inverse given: the call could not be rolled back"
    if (inverse.service, inverse.operation) not in ALLOWLIST:
        return f"inverse {inverse.service}:{inverse.operation} is not on the allowlist"
    target_keys = ("RoleName", "FunctionName", "GroupId", "Name")
    for key in target_keys:
        if (
            key in proposed.call.parameters
            and inverse.parameters.get(key) != (proposed.call.parameters[key])
        ):
            return f"the inverse acts on another {key}"
    if (proposed.call.service, proposed.call.operation) == ("lambda", "UpdateAlias"):
        # Undoing a rollback is pointing the alias back where it points now, and only that.
        back_to = None if live is None else live.live_target
        if inverse.operation != "UpdateAlias" or inverse.parameters.get("FunctionVersion") != (
            back_to
        ):
            return f"the inverse must point {LIVE_ALIAS} back at its current target ({back_to})"
    return None


def validate(
    function_name: str,
    want: Baseline,
    calls: list[ProposedCall],
    live: FunctionVersions | None = None,
) -> ProposalVerdict:
    """`live`: where `live` points and what each version runs now, read from the account;
    needed for a call that moves the alias (without it, such a call is not valid)."""
    verdicts = []
    for proposed in calls:
        call = proposed.call
        problems = []
        allowlisted = (call.service, call.operation) in ALLOWLIST
        if not allowlisted:
            problems.append(f"{call.service}:{call.operation} is not on the allowlist")
        restore_problem = (
            _restores(call.with_baseline_values(want), want, live) if allowlisted else "not checked"
        )
        if allowlisted and restore_problem:
            problems.append(restore_problem)
        inverse_problem = _inverse_problem(proposed, live)
        if inverse_problem:
            problems.append(inverse_problem)
        verdicts.append(
            CallVerdict(
                call=call,
                allowlisted=allowlisted,
                restores_baseline=restore_problem is None,
                inverse_known=inverse_problem is None,
                problems=problems,
                caveats=_caveats(call, want) if not problems else [],
            )
        )
    return ProposalVerdict(
        function_name=function_name,
        baseline_version=want.version,
        valid=bool(verdicts) and all(v.ok for v in verdicts),
        calls=verdicts,
    )
