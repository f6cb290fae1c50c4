"""IAM enforcement is real in the emulator, and the moto patches keep it that way."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from core.aws import client, session_from_keys
from core.aws_errors import error_code
from core.credentials import read_launcher_store
from core.principals import Principal
from tests.integration.conftest import RunningWorld
from workload.spec import spec_for

FUNCTION = "data-processor"


def _code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return error_code(exc.value)


@pytest.mark.parametrize(
    "call",
    [
        lambda lam: lam.get_function_configuration(FunctionName=FUNCTION),
        lambda lam: lam.get_function_concurrency(FunctionName=FUNCTION),
        lambda lam: lam.list_functions(),
        lambda lam: lam.list_tags(
            Resource=lam.get_function(FunctionName=FUNCTION)["Configuration"]["FunctionArn"]
        ),
    ],
    ids=["get_function_configuration", "get_function_concurrency", "list_functions", "list_tags"],
)
def test_lambda_gets_pass_for_an_allowed_principal(world: RunningWorld, call: Any) -> None:
    # moto 5.2.5 unpatched answers these with 403 SignatureDoesNotMatch, even for an admin.
    for principal in (Principal.ADMIN, Principal.OPERATOR):
        call(world.clients(principal)("lambda"))


def test_lambda_gets_are_refused_without_permission(world: RunningWorld) -> None:
    critic = world.clients(Principal.CRITIC)("lambda")
    with pytest.raises(ClientError) as refused:
        critic.get_function_configuration(FunctionName=FUNCTION)
    assert "AccessDenied" in _code(refused)
    assert "not authorized to perform: lambda:GetFunctionConfiguration" in str(refused.value)


def test_a_wrong_secret_or_unknown_key_is_refused(world: RunningWorld) -> None:
    keys = read_launcher_store(world.settings)[Principal.ADMIN]
    wrong_secret = session_from_keys({**keys, "SecretAccessKey": "x" * 40}, world.settings)
    with pytest.raises(ClientError) as refused:
        client(wrong_secret, "lambda", world.settings).list_functions()
    assert _code(refused) == "SignatureDoesNotMatch"
    unknown = boto3.Session(
        aws_access_key_id="AKIAUNKNOWNKEY000000",
        aws_secret_access_key="y" * 40,
        region_name=world.settings.region,
    )
    with pytest.raises(ClientError) as refused:
        client(unknown, "sqs", world.settings).list_queues()
    assert _code(refused) in ("InvalidClientTokenId", "UnrecognizedClientException")


def test_supervisor_cannot_change_a_role_or_a_function(world: RunningWorld) -> None:
    supervisor = world.clients(Principal.SUPERVISOR)
    with pytest.raises(ClientError) as refused:
        supervisor("iam").put_role_policy(
            RoleName=f"{FUNCTION}-role",
            PolicyName="escalate",
            PolicyDocument=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
                }
            ),
        )
    assert "AccessDenied" in _code(refused)
    with pytest.raises(ClientError) as refused:
        supervisor("lambda").put_function_concurrency(
            FunctionName=FUNCTION, ReservedConcurrentExecutions=0
        )
    assert "AccessDenied" in _code(refused)
    with pytest.raises(ClientError) as refused:
        supervisor("ec2").revoke_security_group_egress(GroupId="sg-12345678", IpPermissions=[])
    assert "AccessDenied" in _code(refused) or _code(refused) == "UnauthorizedOperation"


def test_operator_and_resolver_may_make_the_allowlisted_writes(world: RunningWorld) -> None:
    for principal in (Principal.OPERATOR, Principal.RESOLVER):
        lam = world.clients(principal)("lambda")
        lam.put_function_concurrency(FunctionName=FUNCTION, ReservedConcurrentExecutions=5)
        lam.delete_function_concurrency(FunctionName=FUNCTION)


def test_the_resolver_cannot_touch_roles_outside_the_workload(
    world: RunningWorld, admin: Any
) -> None:
    # IAM is one of the services where moto checks the resource, so the ARN scope is real.
    admin("iam").create_role(
        RoleName="unrelated-role",
        AssumeRolePolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"Service": "lambda.amazonaws.com"},
                        "Action": "sts:AssumeRole",
                    }
                ],
            }
        ),
    )
    with pytest.raises(ClientError) as refused:
        world.clients(Principal.RESOLVER)("iam").put_role_policy(
            RoleName="unrelated-role",
            PolicyName="p",
            PolicyDocument=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}],
                }
            ),
        )
    assert "AccessDenied" in _code(refused)


def test_each_process_runs_as_its_own_principal(world: RunningWorld) -> None:
    for principal in Principal:
        arn = world.clients(principal)("sts").get_caller_identity()["Arn"]
        assert arn.endswith(f":user/{principal.user_name}")


def test_the_workload_runs_under_its_own_role(world: RunningWorld, admin: Any) -> None:
    # The local runtime assumes the execution role; the session shows up in STS.
    runtime = world.clients(Principal.LAMBDA_RUNTIME)
    creds = runtime("sts").assume_role(
        RoleArn=spec_for(FUNCTION, world.settings).role_arn, RoleSessionName="probe"
    )["Credentials"]
    role = session_from_keys(creds, world.settings)
    assert (
        ":assumed-role/data-processor-role/probe"
        in client(role, "sts", world.settings).get_caller_identity()["Arn"]
    )
    with pytest.raises(ClientError):  # the role is least privilege: no IAM at all
        client(role, "iam", world.settings).list_roles()


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        # The one that turns IAM enforcement off: any number of unauthenticated calls.
        ("POST", "/moto-api/reset-auth", b'{"INITIAL_NO_AUTH_ACTION_COUNT": 1000}'),
        ("POST", "/moto-api/reset", b""),  # forget the whole world
        ("GET", "/moto-api/data.json", None),  # every backend's state, keys and all
        ("GET", "/moto-api/", None),
    ],
    ids=["reset-auth", "reset", "data.json", "dashboard"],
)
def test_motos_control_api_is_closed(
    world: RunningWorld, method: str, path: str, body: bytes | None
) -> None:
    request = urllib.request.Request(f"{world.settings.endpoint_url}{path}", body, method=method)
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 403
    assert "/moto-api/ is closed" in refused.value.read().decode()
    # Nothing happened behind the refusal: IAM still enforced, the world still there.
    with pytest.raises(ClientError) as denied:
        world.clients(Principal.CRITIC)("lambda").list_functions()
    assert "AccessDenied" in _code(denied)
    assert world.clients(Principal.OPERATOR)("lambda").get_function(FunctionName=FUNCTION)
