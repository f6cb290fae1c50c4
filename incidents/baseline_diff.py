"""How a protected function differs from its recorded baseline, one concern at a time."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel

from core.egress import Rule, description, exact_rules, rule_key, single_rules
from core.lambda_versions import LATEST
from incidents.baselines import Baseline


class IamDiff(BaseModel):
    role_name: str
    missing_policies: list[str]  # inline policies of the baseline that are gone
    changed_policies: list[str]  # inline policies whose document differs
    missing_statements: list[dict[str, Any]]  # baseline statements no longer present
    extra_statements: list[dict[str, Any]]  # statements the baseline does not have
    extra_policies: list[str]  # inline policies the baseline does not have
    attached_missing: list[str]
    attached_extra: list[str]
    explicit_denies: list[dict[str, Any]]  # Deny statements that are not in the baseline
    at_baseline: bool


class ConcurrencyDiff(BaseModel):
    baseline: int | None
    current: int | None
    at_baseline: bool


class GroupDiff(BaseModel):
    """Egress rules one peer each, in EC2's shape, descriptions included."""

    group_id: str
    group_name: str
    egress_missing: list[dict[str, Any]]  # baseline rules that are gone (as the baseline has them)
    egress_extra: list[dict[str, Any]]  # rules the baseline does not have (as they are now)
    # Rules that are there but described otherwise: as the baseline describes them.
    egress_description_changed: list[dict[str, Any]] = []
    ingress_changed: bool


class NetworkDiff(BaseModel):
    groups: list[GroupDiff]
    at_baseline: bool


class ConfigDiff(BaseModel):
    timeout_s: tuple[int, int] | None  # (baseline, current) when they differ
    memory_mb: tuple[int, int] | None
    environment_changed: list[str]  # names whose value differs, appeared or vanished
    at_baseline: bool


class DeploymentDiff(BaseModel):
    """What runs against the baseline: where `live` points and the package it runs."""

    live_target: tuple[str | None, str | None] | None  # (baseline, current) when they differ
    code_sha256: tuple[str, str] | None  # (baseline, current) when they differ
    runs_baseline_code: bool  # the version `live` points to runs the baseline's package
    # Versions whose package is the baseline's ("$LATEST" included), newest first.
    versions_with_baseline_code: list[str]
    newest_published_version: str | None  # now; the baseline's is in `baseline_newest`
    baseline_newest: str | None
    at_baseline: bool


def _statements(policies: dict[str, dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for name, doc in policies.items():
        raw = doc.get("Statement", [])
        for statement in [raw] if isinstance(raw, dict) else raw:
            out.append((name, statement))
    return out


def iam_diff(want: Baseline, now: Baseline) -> IamDiff:
    want_s = _statements(want.inline_policies)
    now_s = _statements(now.inline_policies)
    now_docs = [s for _, s in now_s]
    want_docs = [s for _, s in want_s]
    missing = [s for s in want_docs if s not in now_docs]
    extra = [s for s in now_docs if s not in want_docs]
    changed = sorted(
        name
        for name, doc in want.inline_policies.items()
        if name in now.inline_policies and now.inline_policies[name] != doc
    )
    diff = IamDiff(
        role_name=want.role_name,
        missing_policies=sorted(set(want.inline_policies) - set(now.inline_policies)),
        changed_policies=changed,
        missing_statements=missing,
        extra_statements=extra,
        extra_policies=sorted(set(now.inline_policies) - set(want.inline_policies)),
        attached_missing=sorted(set(want.attached_policy_arns) - set(now.attached_policy_arns)),
        attached_extra=sorted(set(now.attached_policy_arns) - set(want.attached_policy_arns)),
        explicit_denies=[s for s in extra if s.get("Effect") == "Deny"],
        at_baseline=True,
    )
    diff.at_baseline = not (
        diff.missing_policies
        or diff.changed_policies
        or diff.extra_policies
        or diff.attached_missing
        or diff.attached_extra
    )
    return diff


def concurrency_diff(want: Baseline, now: Baseline) -> ConcurrencyDiff:
    return ConcurrencyDiff(
        baseline=want.reserved_concurrency,
        current=now.reserved_concurrency,
        at_baseline=want.reserved_concurrency == now.reserved_concurrency,
    )


def network_diff(want: Baseline, now: Baseline) -> NetworkDiff:
    """Egress compared rule by rule, descriptions included: a rule that came back without
    its description is not the baseline's rule."""
    live = {g.group_id: g for g in now.security_groups}
    groups = []
    for g in want.security_groups:
        current = live.get(g.group_id)
        want_egress = {rule_key(r): r for r in single_rules(g.egress)}
        now_egress = {rule_key(r): r for r in single_rules(current.egress)} if current else {}
        groups.append(
            GroupDiff(
                group_id=g.group_id,
                group_name=g.group_name,
                egress_missing=[r for k, r in want_egress.items() if k not in now_egress],
                egress_extra=[r for k, r in now_egress.items() if k not in want_egress],
                egress_description_changed=_described_otherwise(want_egress, now_egress),
                ingress_changed=current is None
                or exact_rules(current.ingress) != exact_rules(g.ingress),
            )
        )
    at = all(
        not (
            d.egress_missing or d.egress_extra or d.egress_description_changed or d.ingress_changed
        )
        for d in groups
    )
    return NetworkDiff(groups=groups, at_baseline=at)


def _described_otherwise(want: dict[Any, Rule], now: dict[Any, Rule]) -> list[Rule]:
    return [
        rule
        for key, rule in want.items()
        if key in now and description(now[key]) != description(rule)
    ]


def config_diff(want: Baseline, now: Baseline) -> ConfigDiff:
    env = sorted(
        k
        for k in set(want.environment) | set(now.environment)
        if want.environment.get(k) != now.environment.get(k)
    )
    timeout = (want.timeout_s, now.timeout_s) if want.timeout_s != now.timeout_s else None
    memory = (want.memory_mb, now.memory_mb) if want.memory_mb != now.memory_mb else None
    return ConfigDiff(
        timeout_s=timeout,
        memory_mb=memory,
        environment_changed=env,
        at_baseline=not (env or timeout or memory),
    )


def deployment_diff(want: Baseline, now: Baseline) -> DeploymentDiff:
    """What `live` runs against the baseline, judged by the code it runs.

    At baseline when `live` runs the baseline's package (CodeSha256) and points either at
    the baseline's own target or at a published version: a published version is
    immutable, so pinning one that holds the baseline's package runs exactly the
    baseline's code, now and later. That is how a rollback ends when `$LATEST` (the
    baseline's target) was itself overwritten with bad code: `live` -> the newest version
    that still holds the good package is running the baseline, and the diff says so,
    while `live_target` still shows the move. `$LATEST` with the baseline's package when
    the baseline pinned a version is not at baseline: `$LATEST` can change under `live`."""
    target = (
        (want.live_target, now.live_target)
        if want.live_target is not None and want.live_target != now.live_target
        else None
    )
    code = (
        (want.code_sha256, now.code_sha256)
        if want.code_sha256 and want.code_sha256 != now.code_sha256
        else None
    )
    runs_baseline_code = code is None
    pinned_to_baseline_code = now.live_target not in (None, LATEST) and runs_baseline_code
    with_code = [v for v, sha in now.code_by_version.items() if sha == want.code_sha256]
    return DeploymentDiff(
        live_target=target,
        code_sha256=code,
        runs_baseline_code=runs_baseline_code,
        versions_with_baseline_code=sorted(with_code, key=_newest_first),
        newest_published_version=now.newest_published_version,
        baseline_newest=want.newest_published_version,
        at_baseline=runs_baseline_code and (target is None or pinned_to_baseline_code),
    )


def _newest_first(version: str) -> tuple[int, int]:
    return (0, 0) if version == LATEST else (1, -int(version))


# What a fix may restore, one concern at a time, and how each differs from the baseline.
Concern = Literal["iam", "concurrency", "network", "configuration", "deployment"]
DIFFS: dict[Concern, Callable[[Baseline, Baseline], Any]] = {
    "iam": iam_diff,
    "concurrency": concurrency_diff,
    "network": network_diff,
    "configuration": config_diff,
    "deployment": deployment_diff,
}
CONCERNS: tuple[Concern, ...] = tuple(DIFFS)
