"""The exact calls that take a function from how it is now to a wanted state, one concern
at a time, each with its inverse.

The resolver's MCP tool `draft_restore` offers them to the agent (wanted = the baseline);
the executor uses the same code to roll back (wanted = the snapshot taken before a fix).
Environment values a function does not mark safe never leave the store: the call carries
:data:`FROM_BASELINE` in their place and the executor fills it in from the baseline.
"""

from __future__ import annotations

from typing import Any

from incidents.baseline_diff import network_diff
from incidents.baselines import Baseline
from incidents.proposal import Concern
from incidents.remediation import FROM_BASELINE, ApiCall, ProposedCall


def _iam(want: Baseline, now: Baseline) -> list[ProposedCall]:
    role = want.role_name
    calls = []
    for name, doc in sorted(want.inline_policies.items()):
        current = now.inline_policies.get(name)
        if current == doc:
            continue
        inverse = (
            ApiCall(
                service="iam",
                operation="PutRolePolicy",
                parameters={"RoleName": role, "PolicyName": name, "PolicyDocument": current},
            )
            if current is not None
            else ApiCall(
                service="iam",
                operation="DeleteRolePolicy",
                parameters={"RoleName": role, "PolicyName": name},
            )
        )
        calls.append(
            ProposedCall(
                call=ApiCall(
                    service="iam",
                    operation="PutRolePolicy",
                    parameters={"RoleName": role, "PolicyName": name, "PolicyDocument": doc},
                ),
                inverse=inverse,
            )
        )
    for name in sorted(set(now.inline_policies) - set(want.inline_policies)):
        calls.append(
            ProposedCall(
                call=ApiCall(
                    service="iam",
                    operation="DeleteRolePolicy",
                    parameters={"RoleName": role, "PolicyName": name},
                ),
                inverse=ApiCall(
                    service="iam",
                    operation="PutRolePolicy",
                    parameters={
                        "RoleName": role,
                        "PolicyName": name,
                        "PolicyDocument": now.inline_policies[name],
                    },
                ),
            )
        )
    for arn, attach in [
        *(
            (a, True)
            for a in sorted(set(want.attached_policy_arns) - set(now.attached_policy_arns))
        ),
        *(
            (a, False)
            for a in sorted(set(now.attached_policy_arns) - set(want.attached_policy_arns))
        ),
    ]:
        do, undo = ("AttachRolePolicy", "DetachRolePolicy")[:: 1 if attach else -1]
        params = {"RoleName": role, "PolicyArn": arn}
        calls.append(
            ProposedCall(
                call=ApiCall(service="iam", operation=do, parameters=params),
                inverse=ApiCall(service="iam", operation=undo, parameters=params),
            )
        )
    return calls


def _concurrency_call(function: str, value: int | None) -> ApiCall:
    if value is None:
        return ApiCall(
            service="lambda",
            operation="DeleteFunctionConcurrency",
            parameters={"FunctionName": function},
        )
    return ApiCall(
        service="lambda",
        operation="PutFunctionConcurrency",
        parameters={"FunctionName": function, "ReservedConcurrentExecutions": value},
    )


def _concurrency(want: Baseline, now: Baseline) -> list[ProposedCall]:
    if want.reserved_concurrency == now.reserved_concurrency:
        return []
    return [
        ProposedCall(
            call=_concurrency_call(want.function, want.reserved_concurrency),
            inverse=_concurrency_call(want.function, now.reserved_concurrency),
        )
    ]


def _network(want: Baseline, now: Baseline) -> list[ProposedCall]:
    calls = []
    for group in network_diff(want, now).groups:
        for rules, do, undo in (
            (group.egress_extra, "RevokeSecurityGroupEgress", "AuthorizeSecurityGroupEgress"),
            (group.egress_missing, "AuthorizeSecurityGroupEgress", "RevokeSecurityGroupEgress"),
        ):
            if rules:
                params = {"GroupId": group.group_id, "IpPermissions": rules}
                calls.append(
                    ProposedCall(
                        call=ApiCall(service="ec2", operation=do, parameters=params),
                        inverse=ApiCall(service="ec2", operation=undo, parameters=params),
                    )
                )
    return calls


def _configuration(want: Baseline, now: Baseline, safe_env: set[str] | None) -> list[ProposedCall]:
    do: dict[str, Any] = {}
    undo: dict[str, Any] = {}
    if want.timeout_s != now.timeout_s:
        do["Timeout"], undo["Timeout"] = want.timeout_s, now.timeout_s
    if want.memory_mb != now.memory_mb:
        do["MemorySize"], undo["MemorySize"] = want.memory_mb, now.memory_mb
    if want.environment != now.environment:

        def shown(env: dict[str, str], secret: str) -> dict[str, str]:
            if safe_env is None:
                return dict(env)
            return {k: (v if k in safe_env else secret) for k, v in env.items()}

        do["Environment"] = {"Variables": shown(want.environment, FROM_BASELINE)}
        # Rolling back to a drifted secret value is never proposed blind: it stays redacted
        # in the inverse, which the executor refuses to run without the snapshot.
        undo["Environment"] = {"Variables": shown(now.environment, "[redacted]")}
    if not do:
        return []
    return [
        ProposedCall(
            call=ApiCall(
                service="lambda",
                operation="UpdateFunctionConfiguration",
                parameters={"FunctionName": want.function, **do},
            ),
            inverse=ApiCall(
                service="lambda",
                operation="UpdateFunctionConfiguration",
                parameters={"FunctionName": want.function, **undo},
            ),
        )
    ]


def restore_calls(
    concern: Concern, want: Baseline, now: Baseline, safe_env: set[str] | None = None
) -> list[ProposedCall]:
    """Calls that make `concern` of the function as in `want`; [] when it already is.

    `safe_env`: environment names whose values may be shown; None shows every value (the
    executor's own rollback, which never leaves the process)."""
    match concern:
        case "iam":
            return _iam(want, now)
        case "concurrency":
            return _concurrency(want, now)
        case "network":
            return _network(want, now)
        case "configuration":
            return _configuration(want, now, safe_env)
