"""The service-specific condition keys a request carries, and the guardrails people write on
them (the scoped-fixes work pins a fix's session with these)."""

from __future__ import annotations

from typing import Any

from emulation.iam_policy import AccessRequest, Decision, evaluate
from emulation.iam_requests import RequestScope, access_requests

SCOPE = RequestScope("123456789012", "ca-central-1")
ROLE = "arn:aws:iam::123456789012:role/data-processor-role"
READ_ONLY = "arn:aws:iam::aws:policy/ReadOnlyAccess"
ADMIN = "arn:aws:iam::aws:policy/AdministratorAccess"
LAYER = "arn:aws:lambda:ca-central-1:123456789012:layer:shared:3"


def authorizations(action: str, params: dict[str, Any]) -> list[AccessRequest]:
    return access_requests(action, action.split(":")[1], params, SCOPE, {}, lambda arn: {})


def decided(statement: dict[str, Any], request: AccessRequest) -> Decision:
    return evaluate([{"Version": "2012-10-17", "Statement": [statement]}], request)


def test_attaching_a_policy_carries_its_arn_so_a_guardrail_can_name_which() -> None:
    """iam:PolicyARN is the managed policy an Attach/Detach{Group,Role,User}Policy names:
    "allow attaching only ReadOnlyAccess" refuses AdministratorAccess.
    https://docs.aws.amazon.com/service-authorization/latest/reference/list_awsidentityandaccessmanagementiam.html
    """
    only_read_only = {
        "Effect": "Allow",
        "Action": ["iam:AttachRolePolicy", "iam:DetachRolePolicy"],
        "Resource": ROLE,
        "Condition": {"ArnEquals": {"iam:PolicyARN": READ_ONLY}},
    }
    for action in ("iam:AttachRolePolicy", "iam:DetachRolePolicy"):
        for policy_arn, expected in ((READ_ONLY, Decision.ALLOW), (ADMIN, Decision.IMPLICIT_DENY)):
            [request] = authorizations(
                action, {"RoleName": "data-processor-role", "PolicyArn": policy_arn}
            )
            assert request.context["iam:PolicyARN"] == [policy_arn]
            assert decided(only_read_only, request) == expected
    [put] = authorizations("iam:PutRolePolicy", {"RoleName": "r", "PolicyName": "p"})
    assert "iam:PolicyARN" not in put.context


def test_a_functions_network_and_layers_are_keys_of_its_configuration_calls() -> None:
    """lambda:SecurityGroupIds and lambda:SubnetIds (from VpcConfig) and lambda:Layer (the
    layer version ARNs) are multi-valued keys of CreateFunction and
    UpdateFunctionConfiguration: "only these security groups" refuses a call that adds
    another, and a call that sets no VPC carries no such key.
    https://docs.aws.amazon.com/lambda/latest/dg/lambda-api-permissions-ref.html
    https://docs.aws.amazon.com/lambda/latest/dg/configuration-vpc.html#vpc-conditions
    """
    only_our_groups = {
        "Effect": "Allow",
        "Action": "lambda:UpdateFunctionConfiguration",
        "Resource": "*",
        "Condition": {"ForAllValues:StringEquals": {"lambda:SecurityGroupIds": ["sg-1", "sg-2"]}},
    }
    no_foreign_layers = {
        "Effect": "Deny",
        "Action": "lambda:*",
        "Resource": "*",
        "Condition": {
            "ForAnyValue:StringNotLike": {"lambda:Layer": "arn:aws:lambda:*:123456789012:layer:*"}
        },
    }

    def update(**config: Any) -> AccessRequest:
        return authorizations(
            "lambda:UpdateFunctionConfiguration", {"FunctionName": "data-processor", **config}
        )[0]

    ours = update(VpcConfig={"SecurityGroupIds": ["sg-2"], "SubnetIds": ["subnet-a", "subnet-b"]})
    assert ours.context["lambda:SubnetIds"] == ["subnet-a", "subnet-b"]
    assert decided(only_our_groups, ours) == Decision.ALLOW
    moved = update(VpcConfig={"SecurityGroupIds": ["sg-2", "sg-9"], "SubnetIds": ["subnet-a"]})
    assert decided(only_our_groups, moved) == Decision.IMPLICIT_DENY
    assert "lambda:SecurityGroupIds" not in update(Timeout=10).context
    assert decided(no_foreign_layers, update(Layers=[LAYER])) == Decision.IMPLICIT_DENY
    foreign = update(Layers=[LAYER, "arn:aws:lambda:ca-central-1:999999999999:layer:x:1"])
    assert decided(no_foreign_layers, foreign) == Decision.EXPLICIT_DENY
    [create, pass_role] = authorizations(
        "lambda:CreateFunction", {"FunctionName": "f", "Role": ROLE, "Layers": [LAYER]}
    )
    assert create.context["lambda:Layer"] == [LAYER]
    assert pass_role.context["iam:PassedToService"] == ["lambda.amazonaws.com"]
    assert "lambda:Layer" not in pass_role.context
