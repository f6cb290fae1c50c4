"""Remediation policy: which AWS calls a fix may make, and whether a proposal restores the
baseline (and nothing more), with a known inverse for each call.

Used by the resolver's MCP tool `validate_proposal` now, and by the critic and the
executor with the resolver worker.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, Field

from incidents.baseline_diff import flat_rules
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
        ("ec2", "AuthorizeSecurityGroupEgress"),
        ("ec2", "RevokeSecurityGroupEgress"),
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


def _restores(call: ApiCall, want: Baseline) -> str | None:
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
    if call.service == "ec2":
        group = next((g for g in want.security_groups if g.group_id == p.get("GroupId")), None)
        if group is None:
            return f"security group {p.get('GroupId')!r} is not this function's"
        rules, baseline_rules = flat_rules(p.get("IpPermissions", [])), flat_rules(group.egress)
        if op == "AuthorizeSecurityGroupEgress":
            wider = [r for r in rules if r not in baseline_rules]
            return f"egress beyond the baseline: {wider}" if wider else None
        if op == "RevokeSecurityGroupEgress":
            kept = [r for r in rules if r in baseline_rules]
            return f"revokes baseline egress: {kept}" if kept else None
    return f"{call.service}:{op} has no baseline rule"


def _inverse_problem(proposed: ProposedCall) -> str | None:
    inverse = proposed.inverse
    if inverse is None:
        return "no inverse given: the call could not be rolled back"
    if (inverse.service, inverse.operation) not in ALLOWLIST:
        return f"inverse {inverse.service}:{inverse.operation} is not on the allowlist"
    target_keys = ("RoleName", "FunctionName", "GroupId")
    for key in target_keys:
        if (
            key in proposed.call.parameters
            and inverse.parameters.get(key) != (proposed.call.parameters[key])
        ):
            return f"the inverse acts on another {key}"
    return None


def validate(function_name: str, want: Baseline, calls: list[ProposedCall]) -> ProposalVerdict:
    verdicts = []
    for proposed in calls:
        call = proposed.call
        problems = []
        allowlisted = (call.service, call.operation) in ALLOWLIST
        if not allowlisted:
            problems.append(f"{call.service}:{call.operation} is not on the allowlist")
        restore_problem = (
            _restores(call.with_baseline_values(want), want) if allowlisted else "not checked"
        )
        if allowlisted and restore_problem:
            problems.append(restore_problem)
        inverse_problem = _inverse_problem(proposed)
        if inverse_problem:
            problems.append(inverse_problem)
        verdicts.append(
            CallVerdict(
                call=call,
                allowlisted=allowlisted,
                restores_baseline=restore_problem is None,
                inverse_known=inverse_problem is None,
                problems=problems,
            )
        )
    return ProposalVerdict(
        function_name=function_name,
        baseline_version=want.version,
        valid=bool(verdicts) and all(v.ok for v in verdicts),
        calls=verdicts,
    )
