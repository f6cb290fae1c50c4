"""Put a protected function back to its known-good baseline, piece by piece.

Each function returns what it had to change, so `fleet chaos restore` can say what it did
and deploying twice can say "unchanged". The workload deployer and chaos share these:
there is one definition of "healthy".
"""

from __future__ import annotations

import json
from typing import Any

from chaos.workload.spec import BASELINE_POLICY_NAME, HTTPS_PORT, MEMORY_MB, FunctionSpec
from fleet.aws import Clients
from fleet.lambda_concurrency import reserved_concurrency

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
    """Make the group's egress exactly the baseline (HTTPS out). Returns whether it changed."""
    group = ec2.describe_security_groups(GroupIds=[group_id])["SecurityGroups"][0]
    current = group.get("IpPermissionsEgress", [])
    if egress_signature(current) == egress_signature(BASELINE_EGRESS):
        return False
    if current:
        ec2.revoke_security_group_egress(GroupId=group_id, IpPermissions=current)
    ec2.authorize_security_group_egress(GroupId=group_id, IpPermissions=BASELINE_EGRESS)
    return True


def egress_signature(permissions: list[dict[str, Any]]) -> set[tuple[Any, ...]]:
    return {
        (p.get("IpProtocol"), p.get("FromPort"), p.get("ToPort"), r["CidrIp"])
        for p in permissions
        for r in p.get("IpRanges", [])
    }


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


def restore_network(clients: Clients, spec: FunctionSpec) -> list[str]:
    ec2 = clients("ec2")
    group_id = security_group_id(ec2, spec)
    if group_id is None:
        raise LookupError(f"security group {spec.security_group_name} is missing: redeploy")
    return ["egress restored to HTTPS only"] if ensure_baseline_egress(ec2, group_id) else []


def restore_all(clients: Clients, spec: FunctionSpec) -> list[str]:
    return [
        *restore_role_policies(clients("iam"), spec),
        *restore_function_config(clients, spec),
        *restore_network(clients, spec),
    ]
