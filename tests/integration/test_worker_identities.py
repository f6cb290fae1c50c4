"""Each worker acts under its own identity, and the emulator enforces it: only the
resolver may make a remediation call, and only on the protected resources."""

from __future__ import annotations

import json

import pytest

from core.principals import Principal
from incidents.executor import CallFailed, RefusedCall, run_call
from incidents.remediation import ApiCall
from tests.integration.conftest import RunningWorld

FUNCTION = "data-processor"
ROLE = f"{FUNCTION}-role"
POLICY = "data-processor-baseline"
TRUST = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"Service": "lambda.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }
    ],
}


def _current_policy(world: RunningWorld, role: str) -> str:
    iam = world.clients(Principal.ADMIN)("iam")
    return json.dumps(iam.get_role_policy(RoleName=role, PolicyName=POLICY)["PolicyDocument"])


def _same_policy_again(world: RunningWorld, role: str) -> ApiCall:
    """A remediation call that changes nothing: the role's policy, put back as it is."""
    return ApiCall(
        service="iam",
        operation="PutRolePolicy",
        parameters={
            "RoleName": role,
            "PolicyName": POLICY,
            "PolicyDocument": _current_policy(world, role),
        },
    )


@pytest.mark.parametrize("principal", [Principal.SUPERVISOR, Principal.CRITIC, Principal.WATCHDOG])
def test_only_the_resolver_may_make_a_remediation_call(
    world: RunningWorld, principal: Principal
) -> None:
    clients = world.clients(principal)
    for call in (
        _same_policy_again(world, ROLE),
        ApiCall(
            service="lambda",
            operation="PutFunctionConcurrency",
            parameters={"FunctionName": FUNCTION, "ReservedConcurrentExecutions": 0},
        ),
    ):
        with pytest.raises(CallFailed) as refused:
            run_call(clients, call)
        assert refused.value.code.startswith("AccessDenied"), refused.value
    # The positive control: the resolver's own identity may make the same call.
    assert run_call(world.clients(Principal.RESOLVER), _same_policy_again(world, ROLE)) == "done"


def test_the_resolver_is_refused_outside_the_protected_resources(world: RunningWorld) -> None:
    admin = world.clients(Principal.ADMIN)("iam")
    other = "unprotected-role"
    admin.create_role(RoleName=other, AssumeRolePolicyDocument=json.dumps(TRUST))
    admin.put_role_policy(
        RoleName=other,
        PolicyName=POLICY,
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Deny", "Action": "*", "Resource": "*"}],
            }
        ),
    )
    try:
        with pytest.raises(CallFailed) as refused:
            run_call(world.clients(Principal.RESOLVER), _same_policy_again(world, other))
        assert refused.value.code.startswith("AccessDenied"), refused.value
    finally:
        admin.delete_role_policy(RoleName=other, PolicyName=POLICY)
        admin.delete_role(RoleName=other)


def test_a_call_off_the_allowlist_is_refused_before_any_request(world: RunningWorld) -> None:
    admin_power = ApiCall(
        service="iam",
        operation="AttachRolePolicy",
        parameters={"RoleName": ROLE, "PolicyArn": "arn:aws:iam::aws:policy/AdministratorAccess"},
    )
    # AttachRolePolicy is allowlisted; the critic refuses this one for widening the role.
    create_user = ApiCall(service="iam", operation="CreateUser", parameters={"UserName": "x"})
    with pytest.raises(RefusedCall, match="not on the remediation allowlist"):
        run_call(world.clients(Principal.ADMIN), create_user)
    assert admin_power.operation == "AttachRolePolicy"
