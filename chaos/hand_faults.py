"""Faults made by hand: what a person changes with the AWS API directly, not `fleet chaos`.

Each is a plain AWS call (or a few) under the caller's principal (the game day uses the
world's admin: "a person"), and breaks the workload the way such a change would on AWS:
a Deny in a policy named as people name them, a typo in a setting, every inline policy
deleted, egress rules dropped, concurrency reserved at zero, a release with a bug.

Two more change the workload's data, not its configuration: no restore of the account can
fix them (even the known-good code fails on them), so a responder should change nothing
and say what it saw.
"""

from __future__ import annotations

import json

from chaos.faults import env_drift, release_wrapping
from core.aws import Clients
from core.errors import FleetError, UsageError
from core.lambda_package import deployed_package
from core.lambda_versions import LIVE_ALIAS
from workload.baseline import security_group_id
from workload.spec import HTTPS_PORT, PERMISSION_ACTIONS, FunctionSpec, PermissionTarget

# Appended to the handler's module by a hand-made release: it expects a field the
# schedule's event does not carry, so every run fails with KeyError before doing any work.
BUGGY_RELEASE = """

# --- hand-made release: reads the batch date from the event.
_before_batch_date_{func} = {func}


def {func}(event, context):
    print(f"processing the batch of {{event['batch_date']}}")
    return _before_batch_date_{func}(event, context)
"""


def deny_policy(clients: Clients, spec: FunctionSpec, policy_name: str, target: str) -> str:
    """An inline policy of its own name with a Deny of one group of the role's actions."""
    actions = sorted(PERMISSION_ACTIONS[PermissionTarget(target)])
    document = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Deny", "Action": actions, "Resource": "*"}],
    }
    clients("iam").put_role_policy(
        RoleName=spec.role_name, PolicyName=policy_name, PolicyDocument=json.dumps(document)
    )
    return f"{spec.role_name}: inline policy {policy_name} denies {', '.join(actions)}"


def misspell(value: str, at: int) -> str:
    """`value` with the two characters at `at` (modulo its length) swapped, or, where they
    are the same, the one at `at` left out: a typo, never the value itself."""
    if not value:
        return "x"
    i = at % max(1, len(value) - 1)
    if i + 1 < len(value) and value[i] != value[i + 1]:
        return value[:i] + value[i + 1] + value[i] + value[i + 2 :]
    return value[:i] + value[i + 1 :]


def environment_typo(clients: Clients, spec: FunctionSpec, name: str, at: int) -> str:
    variables = (
        clients("lambda")
        .get_function_configuration(FunctionName=spec.name)
        .get("Environment", {})
        .get("Variables", {})
    )
    if name not in variables:
        raise UsageError(f"{spec.name} has no environment variable {name} to misspell")
    return env_drift(clients, spec, name, misspell(variables[name], at)) + " (a typo)"


def delete_inline_policies(clients: Clients, spec: FunctionSpec) -> str:
    iam = clients("iam")
    names = iam.list_role_policies(RoleName=spec.role_name)["PolicyNames"]
    for name in names:
        iam.delete_role_policy(RoleName=spec.role_name, PolicyName=name)
    return f"{spec.role_name}: deleted every inline policy ({', '.join(names) or 'none'})"


def drop_egress(clients: Clients, spec: FunctionSpec, only_https: bool) -> str:
    """Revoke every egress rule, or only the HTTPS one as a person names it: by protocol,
    port and range (EC2 matches the rule whatever its description)."""
    ec2 = clients("ec2")
    group_id = security_group_id(ec2, spec)
    if group_id is None:
        raise FleetError(f"{spec.name} has no security group {spec.security_group_name}")
    if only_https:
        ec2.revoke_security_group_egress(
            GroupId=group_id,
            IpPermissions=[
                {
                    "IpProtocol": "tcp",
                    "FromPort": HTTPS_PORT,
                    "ToPort": HTTPS_PORT,
                    "IpRanges": [{"CidrIp": "0.0.0.0/0"}],
                }
            ],
        )
        return f"{spec.security_group_name} ({group_id}): revoked egress tcp 443 to 0.0.0.0/0"
    group = ec2.describe_security_groups(GroupIds=[group_id])["SecurityGroups"][0]
    egress = group.get("IpPermissionsEgress", [])
    if egress:
        ec2.revoke_security_group_egress(GroupId=group_id, IpPermissions=egress)
    return f"{spec.security_group_name} ({group_id}): revoked all {len(egress)} egress rule(s)"


def zero_concurrency(clients: Clients, spec: FunctionSpec) -> str:
    clients("lambda").put_function_concurrency(
        FunctionName=spec.name, ReservedConcurrentExecutions=0
    )
    return f"{spec.name}: reserved concurrency 0"


def buggy_release(package: bytes, handler: str) -> bytes:
    return release_wrapping(package, handler, BUGGY_RELEASE)


def bad_deploy(clients: Clients, spec: FunctionSpec) -> str:
    """Deploy buggy code to `$LATEST`, publish it, point `live` at it: unlike `fleet chaos
    bad-deploy`, `$LATEST` holds the bad code too."""
    lam = clients("lambda")
    handler = lam.get_function_configuration(FunctionName=spec.name)["Handler"]
    bad = buggy_release(deployed_package(lam, spec.name), handler)
    updated = lam.update_function_code(FunctionName=spec.name, ZipFile=bad)
    version = lam.publish_version(
        FunctionName=spec.name, CodeSha256=updated["CodeSha256"], Description="reads batch_date"
    )["Version"]
    lam.update_alias(FunctionName=spec.name, Name=LIVE_ALIAS, FunctionVersion=version)
    return (
        f"{spec.name}: deployed code that reads event['batch_date'] to $LATEST, published "
        f"version {version}, alias {LIVE_ALIAS} -> {version}"
    )


# --- faults in the data: the known-good code fails on them too ----------------------------

# What a batch looks like when its producer is broken: each fails in the handler itself.
BROKEN_BATCHES: dict[str, dict[str, object]] = {
    # `records` renamed: KeyError: 'records'
    "no-records": {"batch_id": "b-0002", "rows": [3, 1, 4]},
    # numbers as text: TypeError in sum()
    "not-numbers": {"batch_id": "b-0002", "records": ["3", "1", "4"]},
}


def corrupt_input(clients: Clients, spec: FunctionSpec, variant: str) -> str:
    if variant not in BROKEN_BATCHES:
        raise UsageError(
            f"unknown broken batch {variant!r}; choose one of {sorted(BROKEN_BATCHES)}"
        )
    clients("s3").put_object(
        Bucket=spec.bucket, Key=spec.input_key, Body=json.dumps(BROKEN_BATCHES[variant]).encode()
    )
    return f"s3://{spec.bucket}/{spec.input_key}: rewritten ({variant})"


def delete_input(clients: Clients, spec: FunctionSpec) -> str:
    clients("s3").delete_object(Bucket=spec.bucket, Key=spec.input_key)
    return f"s3://{spec.bucket}/{spec.input_key}: deleted"
