"""Put a protected function back to its known-good baseline, piece by piece.

Each function returns what it had to change. Deploying puts the code's definition back
(`restore_role_policies`, `restore_function_code`, `restore_function_config`,
`restore_live_alias`, `ensure_baseline_egress`); `fleet chaos restore` puts the latest
recorded baseline back (`restore_to`).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, cast

from core.aws import Clients
from core.egress import exact_rules
from core.lambda_concurrency import reserved_concurrency
from core.lambda_package import code_sha256
from core.lambda_versions import LIVE_ALIAS, live_target
from incidents.baselines import Baseline, read_live

if TYPE_CHECKING:
    # The baseline keeps egress rules as EC2 returned them: EC2's own rule shape.
    from mypy_boto3_ec2.type_defs import IpPermissionTypeDef

from workload.spec import BASELINE_POLICY_NAME, HTTPS_PORT, MEMORY_MB, FunctionSpec

BASELINE_EGRESS = [
    {
        "IpProtocol": "tcp",
        "FromPort": HTTPS_PORT,
        "ToPort": HTTPS_PORT,
        "IpRanges": [{"CidrIp": "0.0.0.0/0", "Description": "AWS APIs over HTTPS"}],
    }
]


def security_group_id(ec2: Any, spec: FunctionSpec) -> str | None:
    groups = ec2.describe_security_groups(
        Filters=[{"Name": "group-name", "Values": [spec.security_group_name]}]
    )["SecurityGroups"]
    return groups[0]["GroupId"] if groups else None


def ensure_baseline_egress(ec2: Any, group_id: str) -> bool:
    """Make the group's egress exactly the baseline (HTTPS out, described). Returns whether
    it changed."""
    group = ec2.describe_security_groups(GroupIds=[group_id])["SecurityGroups"][0]
    current = group.get("IpPermissionsEgress", [])
    if exact_rules(current) == exact_rules(BASELINE_EGRESS):
        return False
    if current:
        ec2.revoke_security_group_egress(GroupId=group_id, IpPermissions=current)
    ec2.authorize_security_group_egress(GroupId=group_id, IpPermissions=BASELINE_EGRESS)
    return True


def restore_role_policies(iam: Any, spec: FunctionSpec) -> list[str]:
    """Baseline inline policy exactly; no other inline or attached policy."""
    changes = []
    wanted = spec.baseline_policy()
    try:
        current = iam.get_role_policy(RoleName=spec.role_name, PolicyName=BASELINE_POLICY_NAME)[
            "PolicyDocument"
        ]
        if isinstance(current, str):
            current = json.loads(current)
    except iam.exceptions.NoSuchEntityException:
        current = None
    if current != wanted:
        iam.put_role_policy(
            RoleName=spec.role_name,
            PolicyName=BASELINE_POLICY_NAME,
            PolicyDocument=json.dumps(wanted),
        )
        changes.append(f"role policy {BASELINE_POLICY_NAME} restored")
    for name in iam.list_role_policies(RoleName=spec.role_name)["PolicyNames"]:
        if name != BASELINE_POLICY_NAME:
            iam.delete_role_policy(RoleName=spec.role_name, PolicyName=name)
            changes.append(f"inline policy {name} removed")
    attached = iam.list_attached_role_policies(RoleName=spec.role_name)["AttachedPolicies"]
    for policy in attached:
        iam.detach_role_policy(RoleName=spec.role_name, PolicyArn=policy["PolicyArn"])
        changes.append(f"managed policy {policy['PolicyName']} detached")
    return changes


def restore_function_code(lam: Any, function_name: str, package: bytes) -> list[str]:
    """`$LATEST` holds this package (published versions keep theirs)."""
    config = lam.get_function_configuration(FunctionName=function_name)
    if config["CodeSha256"] == code_sha256(package):
        return []
    lam.update_function_code(FunctionName=function_name, ZipFile=package)
    return ["code of $LATEST restored"]


def restore_live_alias(lam: Any, function_name: str, version: str) -> list[str]:
    """The alias `live` points to `version` (created if it is missing)."""
    current = live_target(lam, function_name)
    if current == version:
        return []
    if current is None:
        lam.create_alias(FunctionName=function_name, Name=LIVE_ALIAS, FunctionVersion=version)
        return [f"alias {LIVE_ALIAS} created -> {version}"]
    lam.update_alias(FunctionName=function_name, Name=LIVE_ALIAS, FunctionVersion=version)
    return [f"alias {LIVE_ALIAS} -> {version} (was {current})"]


def restore_function_config(clients: Clients, spec: FunctionSpec) -> list[str]:
    """Timeout, memory and environment as in the baseline; concurrency unreserved."""
    lam = clients("lambda")
    changes = []
    config = lam.get_function_configuration(FunctionName=spec.name)
    update: dict[str, Any] = {}
    if config.get("Timeout") != spec.timeout_s:
        update["Timeout"] = spec.timeout_s
    if config.get("MemorySize") != MEMORY_MB:
        update["MemorySize"] = MEMORY_MB
    if config.get("Environment", {}).get("Variables", {}) != spec.environment():
        update["Environment"] = {"Variables": spec.environment()}
    if update:
        lam.update_function_configuration(FunctionName=spec.name, **update)
        changes.append("configuration restored: " + ", ".join(sorted(update)))
    if reserved_concurrency(lam, spec.name) is not None:
        lam.delete_function_concurrency(FunctionName=spec.name)
        changes.append("reserved concurrency removed")
    return changes


def restore_to(clients: Clients, want: Baseline) -> list[str]:
    """To a recorded baseline: what `fleet chaos restore` does. Returns what it changed."""
    lam, iam, ec2 = clients("lambda"), clients("iam"), clients("ec2")
    now = read_live(clients, want.function)
    changes = []
    for name, doc in want.inline_policies.items():
        if now.inline_policies.get(name) != doc:
            iam.put_role_policy(
                RoleName=want.role_name, PolicyName=name, PolicyDocument=json.dumps(doc)
            )
            changes.append(f"role policy {name} restored")
    for name in sorted(set(now.inline_policies) - set(want.inline_policies)):
        iam.delete_role_policy(RoleName=want.role_name, PolicyName=name)
        changes.append(f"inline policy {name} removed")
    for arn in sorted(set(want.attached_policy_arns) - set(now.attached_policy_arns)):
        iam.attach_role_policy(RoleName=want.role_name, PolicyArn=arn)
        changes.append(f"managed policy {arn} attached")
    for arn in sorted(set(now.attached_policy_arns) - set(want.attached_policy_arns)):
        iam.detach_role_policy(RoleName=want.role_name, PolicyArn=arn)
        changes.append(f"managed policy {arn} detached")
    update: dict[str, Any] = {}
    if now.timeout_s != want.timeout_s:
        update["Timeout"] = want.timeout_s
    if now.memory_mb != want.memory_mb:
        update["MemorySize"] = want.memory_mb
    if now.environment != want.environment:
        update["Environment"] = {"Variables": want.environment}
    if update:
        lam.update_function_configuration(FunctionName=want.function, **update)
        changes.append("configuration restored: " + ", ".join(sorted(update)))
    if now.reserved_concurrency != want.reserved_concurrency:
        if want.reserved_concurrency is None:
            lam.delete_function_concurrency(FunctionName=want.function)
            changes.append("reserved concurrency removed")
        else:
            lam.put_function_concurrency(
                FunctionName=want.function, ReservedConcurrentExecutions=want.reserved_concurrency
            )
            changes.append(f"reserved concurrency set to {want.reserved_concurrency}")
    if want.live_target is not None:
        changes += restore_live_alias(lam, want.function, want.live_target)
    live_groups = {g.group_id: g for g in now.security_groups}
    for group in want.security_groups:
        live = live_groups.get(group.group_id)
        # Descriptions included: a rule described otherwise is put back as the baseline has it.
        if live is None or exact_rules(live.egress) == exact_rules(group.egress):
            continue
        if live.egress:
            ec2.revoke_security_group_egress(
                GroupId=group.group_id, IpPermissions=cast("list[IpPermissionTypeDef]", live.egress)
            )
        if group.egress:
            ec2.authorize_security_group_egress(
                GroupId=group.group_id,
                IpPermissions=cast("list[IpPermissionTypeDef]", group.egress),
            )
        changes.append(f"egress of {group.group_name} restored")
    return changes
