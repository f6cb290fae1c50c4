"""What AWS authorizes for one API request: the IAM actions, resources and condition keys.

moto derives a request's resource for S3, SQS (by QueueUrl only), IAM (roles only) and
STS, and hands every other service's request to the evaluator with the resource ``*``.
AWS authorizes most of the calls the fleet, its workload and the operator make against a
resource ARN, and some calls as several authorizations. This module says which, from the
request moto parsed (S3 and STS keep moto's resource):

- DynamoDB: the table (or ``table/T/index/I`` for a Query or Scan on an index);
  TransactWriteItems item by item, as PutItem/UpdateItem/DeleteItem/ConditionCheckItem on
  each item's own table, and TransactGetItems as GetItem (there is no IAM action named
  after either); BatchWriteItem and BatchGetItem as themselves on each table they name.
- SNS: the topic. Lambda: the function, qualified by version or alias where the call
  names one; creating or reconfiguring a function with a role also needs ``iam:PassRole``
  on that role. CloudWatch Logs: the log group (``log-group:NAME:*``, as AWS evaluates it)
  or stream. CloudWatch: the alarm (DescribeAlarms: each alarm it names, or the ones its
  prefix or no filter covers); PutMetricData names no resource and carries
  ``cloudwatch:namespace``. EC2: the security group, with its tags as
  ``aws:ResourceTag/*`` and ``ec2:ResourceTag/*``. SQS: the queue, by URL or by name
  (GetQueueUrl), or a message move task's source queue. IAM: the role, user or policy.
- Calls AWS authorizes only against ``*`` (List*, Describe* of many, metric reads) keep
  ``*``, so only a statement on ``*`` grants them - as on AWS.

Every request also carries the global keys aws:PrincipalArn (a role session's is its
role's ARN), aws:PrincipalAccount, aws:RequestedRegion, aws:SecureTransport (false: the
emulator speaks plain HTTP), aws:SourceIp, aws:CurrentTime and aws:EpochTime.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable, Mapping
from typing import Any

from emulation import world_clock
from emulation.iam_policy import AccessRequest

Params = Mapping[str, Any]


class RequestScope:
    """The account and region of a request, and ARN builders for them."""

    def __init__(self, account: str, region: str):
        self.account = account
        self.region = region

    def arn(self, service: str, resource: str, region: bool = True) -> str:
        return f"arn:aws:{service}:{self.region if region else ''}:{self.account}:{resource}"


def _table(scope: RequestScope, name: str, index: str | None = None) -> str:
    arn = name if name.startswith("arn:") else scope.arn("dynamodb", f"table/{name}")
    return f"{arn}/index/{index}" if index else arn


TRANSACT_WRITE_ACTIONS = {
    "Put": "dynamodb:PutItem",
    "Update": "dynamodb:UpdateItem",
    "Delete": "dynamodb:DeleteItem",
    "ConditionCheck": "dynamodb:ConditionCheckItem",
}


def dynamodb(scope: RequestScope, operation: str, p: Params) -> list[tuple[str, str]]:
    if operation == "TransactWriteItems":
        return [
            (TRANSACT_WRITE_ACTIONS[kind], _table(scope, body["TableName"]))
            for item in p.get("TransactItems", [])
            for kind, body in item.items()
            if kind in TRANSACT_WRITE_ACTIONS
        ]
    if operation == "TransactGetItems":
        return [
            ("dynamodb:GetItem", _table(scope, item["Get"]["TableName"]))
            for item in p.get("TransactItems", [])
            if "Get" in item
        ]
    if operation in ("BatchWriteItem", "BatchGetItem"):
        return [(f"dynamodb:{operation}", _table(scope, t)) for t in p.get("RequestItems", {})]
    if "TableName" in p:
        index = p.get("IndexName") if operation in ("Query", "Scan") else None
        return [(f"dynamodb:{operation}", _table(scope, p["TableName"], index))]
    if "ResourceArn" in p:  # tagging, resource policies
        return [(f"dynamodb:{operation}", p["ResourceArn"])]
    return [(f"dynamodb:{operation}", "*")]


def sns(scope: RequestScope, operation: str, p: Params) -> list[tuple[str, str]]:
    if operation == "CreateTopic" and "Name" in p:
        return [("sns:CreateTopic", scope.arn("sns", p["Name"]))]
    for key in ("TopicArn", "TargetArn", "ResourceArn"):
        if key in p:
            return [(f"sns:{operation}", p[key])]
    return [(f"sns:{operation}", "*")]


def sqs(scope: RequestScope, operation: str, p: Params) -> list[tuple[str, str]]:
    """The queue, from its URL or name (moto reads only QueueUrl, so GetQueueUrl went
    unscoped), or a message move task's source queue."""
    action = f"sqs:{operation}"
    if "SourceArn" in p:
        return [(action, str(p["SourceArn"]))]
    if "TaskHandle" in p:  # AWS's handle is base64 JSON that names the source queue
        try:
            source = json.loads(base64.b64decode(str(p["TaskHandle"])))["sourceArn"]
        except (ValueError, KeyError, TypeError):
            return [(action, "*")]
        return [(action, str(source))]
    queue = p.get("QueueUrl") or p.get("QueueName")
    if operation == "ListQueues" or not queue:
        return [(action, "*")]
    return [(action, scope.arn("sqs", str(queue).rstrip("/").rsplit("/", 1)[-1]))]


def _function(scope: RequestScope, name: str, qualifier: str | None) -> str:
    """A function's ARN from any of the forms Lambda accepts: a name, ``name:qualifier``,
    a partial ARN (``account:function:name``) or a full ARN."""
    if name.startswith("arn:"):
        parts = name.split(":")
        base, qual = ":".join(parts[:7]), (parts[7] if len(parts) > 7 else None)
    elif ":function:" in name:
        account, _, rest = name.split(":", 2)
        fn, _, qual_part = rest.removeprefix("function:").partition(":")
        base = f"arn:aws:lambda:{scope.region}:{account}:function:{fn}"
        qual = qual_part or None
    else:
        fn, _, qual_part = name.partition(":")
        base, qual = scope.arn("lambda", f"function:{fn}"), qual_part or None
    qual = qualifier or qual
    return f"{base}:{qual}" if qual else base


# Calls on a function's versions and aliases that AWS authorizes against the function.
LAMBDA_UNQUALIFIED = frozenset(
    {
        "PublishVersion",
        "ListVersionsByFunction",
        "ListAliases",
        "CreateAlias",
        "GetAlias",
        "UpdateAlias",
        "DeleteAlias",
        "UpdateFunctionCode",
        "UpdateFunctionConfiguration",
        "PutFunctionConcurrency",
        "GetFunctionConcurrency",
        "DeleteFunctionConcurrency",
    }
)
# The IAM action of Lambda operations whose API name carries a version of its own.
LAMBDA_ACTIONS = {"ListTags": "lambda:ListTags", "TagResource": "lambda:TagResource"}


def lambda_(scope: RequestScope, operation: str, p: Params) -> list[tuple[str, str]]:
    action = LAMBDA_ACTIONS.get(operation, f"lambda:{operation}")
    if "Resource" in p and operation in ("ListTags", "TagResource", "UntagResource"):
        return [(action, p["Resource"])]
    if "FunctionName" not in p:
        return [(action, "*")]
    function = _function(scope, p["FunctionName"], p.get("Qualifier"))
    if operation in LAMBDA_UNQUALIFIED:
        function = ":".join(function.split(":")[:7])
    requests = [(action, function)]
    if operation in ("CreateFunction", "UpdateFunctionConfiguration") and p.get("Role"):
        requests.append(("iam:PassRole", p["Role"]))
    return requests


# Log-stream-level calls; the rest name the log group.
LOG_STREAM_OPERATIONS = frozenset({"PutLogEvents", "GetLogEvents"})


def logs(scope: RequestScope, operation: str, p: Params) -> list[tuple[str, str]]:
    group = p.get("logGroupName") or p.get("logGroupIdentifier")
    if not group:
        return [(f"logs:{operation}", "*")]
    group_arn = (
        group.removesuffix(":*")
        if group.startswith("arn:")
        else scope.arn("logs", f"log-group:{group}")
    )
    if operation in LOG_STREAM_OPERATIONS and p.get("logStreamName"):
        return [(f"logs:{operation}", f"{group_arn}:log-stream:{p['logStreamName']}")]
    return [(f"logs:{operation}", f"{group_arn}:*")]


# CloudWatch calls AWS authorizes against the alarms they name.
ALARM_OPERATIONS = frozenset(
    {
        "PutMetricAlarm",
        "SetAlarmState",
        "DeleteAlarms",
        "DescribeAlarmHistory",
        "EnableAlarmActions",
        "DisableAlarmActions",
    }
)


def cloudwatch(scope: RequestScope, operation: str, p: Params) -> list[tuple[str, str]]:
    action = f"cloudwatch:{operation}"
    if operation in ALARM_OPERATIONS:
        names = p.get("AlarmNames") or ([p["AlarmName"]] if "AlarmName" in p else [])
        if names:
            return [(action, scope.arn("cloudwatch", f"alarm:{name}")) for name in names]
    if operation == "DescribeAlarms":
        # The alarm resource type: each alarm named, or every alarm a prefix or no filter
        # can return (a literal "*", which only a statement on all alarms matches).
        names = p.get("AlarmNames") or []
        if names:
            return [(action, scope.arn("cloudwatch", f"alarm:{name}")) for name in names]
        return [(action, scope.arn("cloudwatch", f"alarm:{p.get('AlarmNamePrefix', '')}*"))]
    return [(action, "*")]


# Security-group writes that AWS authorizes against the group (and its tags).
SECURITY_GROUP_OPERATIONS = frozenset(
    {
        "AuthorizeSecurityGroupEgress",
        "AuthorizeSecurityGroupIngress",
        "RevokeSecurityGroupEgress",
        "RevokeSecurityGroupIngress",
        "UpdateSecurityGroupRuleDescriptionsEgress",
        "UpdateSecurityGroupRuleDescriptionsIngress",
        "ModifySecurityGroupRules",
        "DeleteSecurityGroup",
    }
)


def iam(scope: RequestScope, operation: str, p: Params) -> list[tuple[str, str]]:
    action = f"iam:{operation}"
    if "RoleName" in p:
        return [(action, scope.arn("iam", f"role/{p['RoleName']}", region=False))]
    if "UserName" in p:
        return [(action, scope.arn("iam", f"user/{p['UserName']}", region=False))]
    if "PolicyArn" in p:
        return [(action, p["PolicyArn"])]
    return [(action, "*")]


def ec2(scope: RequestScope, operation: str, p: Params) -> list[tuple[str, str]]:
    if operation in SECURITY_GROUP_OPERATIONS and p.get("GroupId"):
        return [(f"ec2:{operation}", scope.arn("ec2", f"security-group/{p['GroupId']}"))]
    return [(f"ec2:{operation}", "*")]


Deriver = Callable[[RequestScope, str, Params], list[tuple[str, str]]]
DERIVERS: dict[str, Deriver] = {
    "dynamodb": dynamodb,
    "sns": sns,
    "lambda": lambda_,
    "logs": logs,
    "cloudwatch": cloudwatch,
    "ec2": ec2,
    "iam": iam,
    "sqs": sqs,
}


# The address the request being served came from (aws:SourceIp), set by the emulator's HTTP
# front for each request (emulation/emulator.py): the thread that serves a request is the
# one that authorizes it.
_origin = threading.local()


def set_source_ip(address: str | None) -> None:
    _origin.address = address


def source_ip() -> str | None:
    """The address the request being served came from."""
    return getattr(_origin, "address", None)


def global_context(principal_arn: str, account: str, region: str) -> dict[str, list[str]]:
    """The keys AWS puts in every request's context. `principal_arn` is the IAM identity's
    ARN: for a role session, the role's (aws:PrincipalArn never names the session)."""
    now = world_clock.now()
    address = source_ip()
    return {
        **({"aws:SourceIp": [address]} if address else {}),
        "aws:PrincipalArn": [principal_arn],
        "aws:PrincipalAccount": [account],
        "aws:RequestedRegion": [region],
        "aws:SecureTransport": ["false"],
        "aws:CurrentTime": [now.strftime("%Y-%m-%dT%H:%M:%SZ")],
        "aws:EpochTime": [str(int(now.timestamp()))],
    }


# The IAM calls that carry iam:PolicyARN, the managed policy they attach or detach.
POLICY_ARN_ACTIONS = frozenset(
    f"iam:{verb}{entity}Policy"
    for verb in ("Attach", "Detach")
    for entity in ("Group", "Role", "User")
)
LAMBDA_CONFIGURATION_ACTIONS = frozenset(
    {"lambda:CreateFunction", "lambda:UpdateFunctionConfiguration"}
)


def action_keys(action: str, p: Params) -> dict[str, list[str]]:
    """The service-specific condition keys an authorization carries, from the request, as
    the Service Authorization Reference lists them for the action:

    - cloudwatch:PutMetricData: ``cloudwatch:namespace``;
    - iam:PassRole (here only Lambda passes roles): ``iam:PassedToService``;
    - iam:Attach/Detach{Group,Role,User}Policy: ``iam:PolicyARN``;
    - lambda:CreateFunction / UpdateFunctionConfiguration: ``lambda:SecurityGroupIds`` and
      ``lambda:SubnetIds`` (from VpcConfig) and ``lambda:Layer`` (the layer version ARNs),
      multi-valued keys, present when the request sets them.

    https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazoncloudwatch.html
    https://docs.aws.amazon.com/service-authorization/latest/reference/list_awsidentityandaccessmanagementiam.html
    https://docs.aws.amazon.com/lambda/latest/dg/lambda-api-permissions-ref.html
    """
    if action == "cloudwatch:PutMetricData" and "Namespace" in p:
        return {"cloudwatch:namespace": [str(p["Namespace"])]}
    if action == "iam:PassRole":
        return {"iam:PassedToService": ["lambda.amazonaws.com"]}
    if action in POLICY_ARN_ACTIONS and "PolicyArn" in p:
        return {"iam:PolicyARN": [str(p["PolicyArn"])]}
    if action not in LAMBDA_CONFIGURATION_ACTIONS:
        return {}
    keys: dict[str, list[str]] = {}
    given = p.get("VpcConfig")
    vpc: Mapping[str, Any] = given if isinstance(given, Mapping) else {}
    for field, key in (
        ("SecurityGroupIds", "lambda:SecurityGroupIds"),
        ("SubnetIds", "lambda:SubnetIds"),
    ):
        if vpc.get(field):
            keys[key] = [str(v) for v in vpc[field]]
    if p.get("Layers"):
        keys["lambda:Layer"] = [str(v) for v in p["Layers"]]
    return keys


def resource_tag_context(tags: Mapping[str, str], service: str) -> dict[str, list[str]]:
    context = {f"aws:ResourceTag/{k}": [v] for k, v in tags.items()}
    context.update({f"{service}:ResourceTag/{k}": [v] for k, v in tags.items()})
    return context


def access_requests(
    action: str,
    operation: str,
    params: Params,
    scope: RequestScope,
    base_context: Mapping[str, list[str]],
    tags_of: Callable[[str], Mapping[str, str]],
    moto_resource: str = "*",
) -> list[AccessRequest]:
    """The authorizations one request needs. `action` and `moto_resource` are what moto
    named (the resource only for S3, SQS, IAM and STS); `tags_of(arn)` returns a
    resource's tags (for aws:ResourceTag/*)."""
    prefix = action.partition(":")[0]
    derive = DERIVERS.get(prefix)
    pairs = derive(scope, operation, params) if derive else [(action, moto_resource)]
    requests = []
    for derived, resource in pairs:
        # The request's own authorization goes by the IAM name moto was given (e.g. an SQS
        # batch call is authorized as its single-message action); the rest as derived.
        name = action if derived == f"{prefix}:{operation}" else derived
        context: dict[str, list[str]] = dict(base_context)
        context.update(action_keys(name, params))
        if resource != "*":
            context.update(resource_tag_context(tags_of(resource), name.split(":")[0]))
        requests.append(AccessRequest(name, resource, context))
    return requests


def json_params(body: bytes | str | None) -> dict[str, Any]:
    if not body:
        return {}
    try:
        parsed = json.loads(body)
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}
