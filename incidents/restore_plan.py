"""The exact calls that take a function from how it is now to a wanted state, one concern
at a time, each with its inverse.

The resolver's MCP tool `draft_restore` offers them to the agent (wanted = the baseline);
the executor uses the same code to roll back (wanted = the snapshot taken before a fix).
Environment values a function does not mark safe never leave the store: the call carries
:data:`FROM_BASELINE` in their place and the executor fills it in from the baseline.

Restores are exact: egress rules come back with their descriptions (a rule that is there
but described otherwise gets its description back, without being revoked even for a
moment), and a deploy is rolled back by pointing `live` at the version that runs the
baseline's package (see :func:`rollback_target`).
"""

from __future__ import annotations

from typing import Any

from core.egress import Rule, rule_key, single_rules
from core.lambda_versions import LATEST, LIVE_ALIAS
from incidents.baseline_diff import deployment_diff, network_diff
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
    live = {g.group_id: g for g in now.security_groups}
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
        if group.egress_description_changed:
            current = {rule_key(r): r for r in single_rules(live[group.group_id].egress)}
            calls.append(_describe(group.group_id, group.egress_description_changed, current))
    return calls


def _describe(group_id: str, wanted: list[Rule], current: dict[Any, Rule]) -> ProposedCall:
    """The rules' descriptions as wanted; the inverse puts today's back (a rule without
    one is sent without one: EC2 then removes the description)."""
    operation = "UpdateSecurityGroupRuleDescriptionsEgress"
    was = [current[rule_key(r)] for r in wanted]
    return ProposedCall(
        call=ApiCall(
            service="ec2",
            operation=operation,
            parameters={"GroupId": group_id, "IpPermissions": wanted},
        ),
        inverse=ApiCall(
            service="ec2",
            operation=operation,
            parameters={"GroupId": group_id, "IpPermissions": was},
        ),
    )


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


def rollback_target(want: Baseline, now: Baseline) -> str | None:
    """The version `live` should point to so that it runs the baseline's package: the
    baseline's own target if that version still runs it; else the newest published
    version that does (a published version never changes: e.g. when `$LATEST` was itself
    overwritten with the bad code); None when no version runs it any more."""
    if not want.code_sha256:
        return None  # a baseline recorded before what runs was recorded
    if want.live_target and now.code_by_version.get(want.live_target) == want.code_sha256:
        return want.live_target
    published = [
        int(v) for v, sha in now.code_by_version.items() if v != LATEST and sha == want.code_sha256
    ]
    return str(max(published)) if published else None


def _deployment(want: Baseline, now: Baseline) -> list[ProposedCall]:
    if deployment_diff(want, now).at_baseline or now.live_target is None:
        return []
    target = rollback_target(want, now)
    if target is None or target == now.live_target:
        return []

    def point_live(version: str) -> ApiCall:
        return ApiCall(
            service="lambda",
            operation="UpdateAlias",
            parameters={
                "FunctionName": want.function,
                "Name": LIVE_ALIAS,
                "FunctionVersion": version,
            },
        )

    return [ProposedCall(call=point_live(target), inverse=point_live(now.live_target))]


def restore_note(concern: Concern, want: Baseline, now: Baseline) -> str | None:
    """What a person should know about the draft beyond its calls: why none restores a
    concern that differs, or in what way the calls do not restore the exact value."""
    if concern != "deployment" or deployment_diff(want, now).at_baseline:
        return None
    if now.live_target is None:
        return f"{want.function} has no alias {LIVE_ALIAS}: a person must create it"
    target = rollback_target(want, now)
    if target is None:
        return (
            f"no version of {want.function} runs the baseline's code ({want.code_sha256}): "
            "nothing to point the alias back to; a person must redeploy it"
        )
    if target != want.live_target:
        return (
            f"{want.live_target} no longer runs the baseline's code; version {target} (published, "
            f"immutable) does, with the configuration it was published with: {LIVE_ALIAS} -> "
            f"{target} runs the baseline's code, not the baseline's exact target"
        )
    return None


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
        case "deployment":
            return _deployment(want, now)
