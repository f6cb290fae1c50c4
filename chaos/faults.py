"""Fault injection: each fault is a real change in the (emulated) AWS account.

The workload's next run fails the way it would on AWS: AccessDenied from a revoked or
denied permission, throttling at zero concurrency, a connect timeout with no egress, a
wrong environment, a timeout, a bad release (a published version whose handler fails, with
the alias `live` moved to it). `restore` puts the baseline back (workload/baseline).
"""

from __future__ import annotations

import json
from enum import StrEnum

from pydantic import BaseModel

from core.aws import Clients
from core.errors import FleetError, UsageError
from core.lambda_package import build_zip, deployed_package, read_zip
from core.lambda_versions import LIVE_ALIAS
from incidents.baselines import BaselineStore
from workload.baseline import restore_to, security_group_id
from workload.spec import (
    BASELINE_POLICY_NAME,
    PERMISSION_ACTIONS,
    STATEMENT_IDS,
    FunctionSpec,
    PermissionTarget,
)

DENY_POLICY_NAME = "chaos-explicit-deny"
ALL = "all"
# What revoke and deny take: one group of permissions, or all of them.
TARGETS = (*(t.value for t in PermissionTarget), ALL)


class FaultKind(StrEnum):
    REVOKE = "revoke"
    DENY = "deny"
    THROTTLE = "throttle"
    NETWORK_BLOCK = "network-block"
    ENV_DRIFT = "env-drift"
    TIMEOUT = "timeout"
    BAD_DEPLOY = "bad-deploy"


# The setting the bad release reads and no deployment sets.
MISSING_SETTING = "BATCH_SCHEMA"
# Appended to the handler's module: the release wraps the handler it replaces, and reads
# its new setting first, so every run fails with KeyError before doing any work.
BAD_RELEASE = """

# --- release from `fleet chaos bad-deploy`: it needs a setting no deployment sets.
import os as _release_os

_previous_{func} = {func}


def {func}(event, context):
    batch_schema = _release_os.environ["{setting}"]
    print(f"reading batches as {{batch_schema}}")
    return _previous_{func}(event, context)
"""


def parse_targets(target: str) -> list[PermissionTarget]:
    if target == ALL:
        return list(PermissionTarget)
    try:
        return [PermissionTarget(target)]
    except ValueError:
        raise UsageError(
            f"unknown target {target!r}; choose one of: {', '.join(TARGETS)}"
        ) from None


def revoke(clients: Clients, spec: FunctionSpec, targets: list[PermissionTarget]) -> str:
    """Remove the targets' statements from the role's baseline policy."""
    iam = clients("iam")
    drop = {STATEMENT_IDS[t] for t in targets}
    policy = spec.baseline_policy()
    policy["Statement"] = [s for s in policy["Statement"] if s["Sid"] not in drop]
    # Every permission revoked: the whole baseline policy goes (its VPC access with it).
    if set(targets) != set(PermissionTarget):
        iam.put_role_policy(
            RoleName=spec.role_name,
            PolicyName=BASELINE_POLICY_NAME,
            PolicyDocument=json.dumps(policy),
        )
    else:
        iam.delete_role_policy(RoleName=spec.role_name, PolicyName=BASELINE_POLICY_NAME)
    names = ", ".join(t.value for t in targets)
    return f"{spec.role_name}: revoked {names} permissions"


def deny(clients: Clients, spec: FunctionSpec, targets: list[PermissionTarget]) -> str:
    """Add an explicit Deny for the targets' actions; the Allow stays in place."""
    actions = sorted(a for t in targets for a in PERMISSION_ACTIONS[t])
    policy = {
        "Version": "2012-10-17",
        "Statement": [{"Sid": "ChaosDeny", "Effect": "Deny", "Action": actions, "Resource": "*"}],
    }
    clients("iam").put_role_policy(
        RoleName=spec.role_name, PolicyName=DENY_POLICY_NAME, PolicyDocument=json.dumps(policy)
    )
    return f"{spec.role_name}: explicit deny of {', '.join(actions)}"


def throttle(clients: Clients, spec: FunctionSpec, concurrency: int) -> str:
    if concurrency < 0:
        raise UsageError(f"--concurrency must be 0 or more, not {concurrency}")
    clients("lambda").put_function_concurrency(
        FunctionName=spec.name, ReservedConcurrentExecutions=concurrency
    )
    return f"{spec.name}: reserved concurrency set to {concurrency}"


def network_block(clients: Clients, spec: FunctionSpec) -> str:
    """Remove every egress rule of the function's security group."""
    ec2 = clients("ec2")
    group_id = security_group_id(ec2, spec)
    if group_id is None:
        raise UsageError(f"{spec.name} has no security group {spec.security_group_name}")
    group = ec2.describe_security_groups(GroupIds=[group_id])["SecurityGroups"][0]
    egress = group.get("IpPermissionsEgress", [])
    if egress:
        ec2.revoke_security_group_egress(GroupId=group_id, IpPermissions=egress)
    return f"{spec.security_group_name} ({group_id}): removed {len(egress)} egress rule(s)"


def env_drift(clients: Clients, spec: FunctionSpec, name: str, value: str) -> str:
    lam = clients("lambda")
    variables = dict(
        lam.get_function_configuration(FunctionName=spec.name)
        .get("Environment", {})
        .get("Variables", {})
    )
    variables[name] = value
    lam.update_function_configuration(FunctionName=spec.name, Environment={"Variables": variables})
    return f"{spec.name}: environment {name}={value!r}"


def timeout(clients: Clients, spec: FunctionSpec, seconds: int) -> str:
    if not 1 <= seconds <= 900:
        raise UsageError(f"--seconds must be between 1 and 900, not {seconds}")
    clients("lambda").update_function_configuration(FunctionName=spec.name, Timeout=seconds)
    return f"{spec.name}: timeout set to {seconds}s"


def release_wrapping(package: bytes, handler: str, wrapper: str) -> bytes:
    """The package, with `wrapper` (formatted with the handler's function name as `func`)
    appended to the module that `handler` names: a release that wraps the handler."""
    module, _, func = handler.rpartition(".")
    path = module.replace(".", "/") + ".py"
    files = read_zip(package)
    if not module or path not in files:
        raise FleetError(f"the function's package has no {path} for its handler {handler!r}")
    files[path] += wrapper.format(func=func).encode()
    return build_zip(files)


def failing_release(package: bytes, handler: str) -> bytes:
    """The package, with the module that `handler` names changed to fail on every run."""
    return release_wrapping(package, handler, BAD_RELEASE.replace("{setting}", MISSING_SETTING))


def bad_deploy(clients: Clients, spec: FunctionSpec) -> str:
    """Publish a version whose handler fails, keep $LATEST's code, point `live` at it."""
    lam = clients("lambda")
    handler = lam.get_function_configuration(FunctionName=spec.name)["Handler"]
    good = deployed_package(lam, spec.name)
    bad = failing_release(good, handler)
    updated = lam.update_function_code(FunctionName=spec.name, ZipFile=bad)
    version = lam.publish_version(
        FunctionName=spec.name,
        CodeSha256=updated["CodeSha256"],
        Description=f"release that needs {MISSING_SETTING} (fleet chaos bad-deploy)",
    )["Version"]
    lam.update_function_code(FunctionName=spec.name, ZipFile=good)
    lam.update_alias(FunctionName=spec.name, Name=LIVE_ALIAS, FunctionVersion=version)
    return (
        f"{spec.name}: published version {version} (its handler reads the unset "
        f"{MISSING_SETTING}); $LATEST keeps its code; alias {LIVE_ALIAS} -> {version}"
    )


def restore(clients: Clients, spec: FunctionSpec) -> str:
    """Back to the function's latest recorded baseline."""
    baseline = BaselineStore(clients("dynamodb")).latest(spec.name)
    if baseline is None:
        raise FleetError(
            f"no baseline recorded for {spec.name}: capture one with "
            f"`fleet baseline capture --function {spec.name}` while it is healthy"
        )
    changes = restore_to(clients, baseline)
    if not changes:
        return f"{spec.name}: already at baseline v{baseline.version}"
    return f"{spec.name}: " + "; ".join(changes) + f" (baseline v{baseline.version})"


class FaultOptions(BaseModel):
    """A fault's options, as `fleet chaos` and game-day scenarios give them."""

    target: str = "s3"  # revoke, deny: s3 | logs | metrics | sns | all
    concurrency: int = 0  # throttle
    var: str = "DATA_PREFIX"  # env-drift
    value: str = "drifted/"  # env-drift
    seconds: int = 1  # timeout


def inject(clients: Clients, spec: FunctionSpec, kind: FaultKind, options: FaultOptions) -> str:
    """Apply one fault to one function; what changed, in a line."""
    match kind:
        case FaultKind.REVOKE:
            return revoke(clients, spec, parse_targets(options.target))
        case FaultKind.DENY:
            return deny(clients, spec, parse_targets(options.target))
        case FaultKind.THROTTLE:
            return throttle(clients, spec, options.concurrency)
        case FaultKind.NETWORK_BLOCK:
            return network_block(clients, spec)
        case FaultKind.ENV_DRIFT:
            return env_drift(clients, spec, options.var, options.value)
        case FaultKind.TIMEOUT:
            return timeout(clients, spec, options.seconds)
        case FaultKind.BAD_DEPLOY:
            return bad_deploy(clients, spec)
