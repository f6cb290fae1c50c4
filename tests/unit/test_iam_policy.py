"""The embedded world's IAM evaluation: AWS's rules, one by one."""

from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path
from typing import Any

import pytest

from emulation.iam_policy import AccessRequest, Decision, evaluate
from emulation.iam_requests import RequestScope, access_requests
from workload.spec import METRICS_NAMESPACE, FunctionSpec

TABLE = "arn:aws:dynamodb:ca-central-1:123456789012:table/incident-state"
AUDIT = "arn:aws:dynamodb:ca-central-1:123456789012:table/incident-audit"


def policy(*statements: dict[str, Any]) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def allow(action: str | list[str], resource: str | list[str], **more: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": action, "Resource": resource, **more}


def decide(statements: list[dict[str, Any]], action: str, resource: str) -> Decision:
    return evaluate([policy(*statements)], AccessRequest(action, resource))


def test_a_resource_scoped_allow_grants_that_resource_only() -> None:
    statements = [allow("dynamodb:UpdateItem", TABLE)]
    assert decide(statements, "dynamodb:UpdateItem", TABLE) == Decision.ALLOW
    assert decide(statements, "dynamodb:UpdateItem", AUDIT) == Decision.IMPLICIT_DENY
    # A call AWS authorizes against "*" is granted only by a statement on "*".
    assert decide(statements, "dynamodb:UpdateItem", "*") == Decision.IMPLICIT_DENY


def test_wildcards_in_actions_and_resources() -> None:
    statements = [allow("dynamodb:*Item", "arn:aws:dynamodb:*:*:table/incident-*")]
    assert decide(statements, "DynamoDB:getitem", TABLE) == Decision.ALLOW  # actions: any case
    assert decide(statements, "dynamodb:Query", TABLE) == Decision.IMPLICIT_DENY
    statements = [allow("lambda:GetFunction", "arn:aws:lambda:r:1:function:data-processor?")]
    assert decide(statements, "lambda:GetFunction", "arn:aws:lambda:r:1:function:data-processor2")
    assert (
        decide(statements, "lambda:GetFunction", "arn:aws:lambda:r:1:function:data-processor22")
        == Decision.IMPLICIT_DENY
    )


def test_an_explicit_deny_wins_and_not_elements_invert() -> None:
    statements = [
        allow("dynamodb:*", "*"),
        {"Effect": "Deny", "Action": "dynamodb:*", "NotResource": TABLE},
    ]
    assert decide(statements, "dynamodb:PutItem", TABLE) == Decision.ALLOW
    assert decide(statements, "dynamodb:PutItem", AUDIT) == Decision.EXPLICIT_DENY
    statements = [{"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"}]
    assert decide(statements, "sqs:SendMessage", "*") == Decision.ALLOW
    assert decide(statements, "iam:PassRole", "*") == Decision.IMPLICIT_DENY


NAMESPACE = {"StringEquals": {"cloudwatch:namespace": "IncidentFleet/Runtime"}}


def test_a_failed_condition_makes_an_allow_not_apply_rather_than_deny() -> None:
    statements = [
        allow("cloudwatch:PutMetricData", "*", Condition=NAMESPACE),
        allow(
            "cloudwatch:PutMetricData",
            "*",
            Condition={"StringEquals": {"cloudwatch:namespace": "Other"}},
        ),
    ]
    for namespace in ("IncidentFleet/Runtime", "Other"):
        request = AccessRequest(
            "cloudwatch:PutMetricData", "*", {"cloudwatch:namespace": [namespace]}
        )
        assert evaluate([policy(*statements)], request) == Decision.ALLOW
    request = AccessRequest(
        "cloudwatch:PutMetricData", "*", {"cloudwatch:namespace": ["AWS/Lambda"]}
    )
    assert evaluate([policy(*statements)], request) == Decision.IMPLICIT_DENY


def test_missing_keys_negated_operators_and_if_exists() -> None:
    tag = "aws:ResourceTag/fleet-protected"
    cases = [
        ({"StringEquals": {tag: "true"}}, {}, False),
        ({"StringEquals": {tag: "true"}}, {tag: ["true"]}, True),
        ({"StringEquals": {tag: ["yes", "true"]}}, {tag: ["true"]}, True),  # values: OR
        ({"StringNotEquals": {tag: "true"}}, {}, True),  # negated, key missing: true
        ({"StringNotEquals": {tag: "true"}}, {tag: ["true"]}, False),
        ({"StringEqualsIfExists": {tag: "true"}}, {}, True),
        ({"StringEqualsIfExists": {tag: "true"}}, {tag: ["false"]}, False),
        ({"Null": {tag: "true"}}, {}, True),
        ({"Null": {tag: "false"}}, {}, False),
        ({"StringLike": {tag: "tr*"}}, {tag: ["true"]}, True),
        (
            {"ArnLike": {"aws:SourceArn": "arn:aws:sns:*:*:incident-*"}},
            {"aws:SourceArn": ["arn:aws:sns:r:1:incident-alerts"]},
            True,
        ),
        (
            {"ArnLike": {"aws:SourceArn": "arn:aws:sns:*:*:incident-*"}},
            {"aws:SourceArn": ["arn:aws:sqs:r:1:incident-alerts"]},
            False,
        ),
        ({"NumericLessThan": {"aws:EpochTime": "100"}}, {"aws:EpochTime": ["99"]}, True),
        ({"Bool": {"aws:SecureTransport": "false"}}, {"aws:SecureTransport": ["false"]}, True),
        # Both blocks must hold (AND across operators and keys).
        (
            {"StringEquals": {tag: "true"}, "Null": {"aws:SourceArn": "false"}},
            {tag: ["true"]},
            False,
        ),
        # Keys are case-insensitive.
        ({"StringEquals": {"AWS:RESOURCETAG/fleet-protected": "true"}}, {tag: ["true"]}, True),
    ]
    for condition, context, granted in cases:
        request = AccessRequest("ec2:RevokeSecurityGroupEgress", "*", context)
        decision = evaluate([policy(allow("ec2:*", "*", Condition=condition))], request)
        assert (decision == Decision.ALLOW) is granted, (condition, context)


def test_set_operators() -> None:
    key = "aws:TagKeys"
    any_of = {"ForAnyValue:StringEquals": {key: ["team", "owner"]}}
    all_of = {"ForAllValues:StringEquals": {key: ["team", "owner"]}}
    for condition, values, granted in [
        (any_of, ["team", "cost"], True),
        (any_of, ["cost"], False),
        (any_of, None, False),
        (all_of, ["team", "owner"], True),
        (all_of, ["team", "cost"], False),
        (all_of, None, True),  # nothing to check: vacuously true, as AWS documents
    ]:
        context = {key: values} if values is not None else {}
        request = AccessRequest("ec2:CreateTags", "*", context)
        decision = evaluate([policy(allow("ec2:*", "*", Condition=condition))], request)
        assert (decision == Decision.ALLOW) is granted, (condition, values)


def test_an_unknown_operator_never_grants() -> None:
    statements = [allow("s3:GetObject", "*", Condition={"StringEqualsMaybe": {"aws:x": "1"}})]
    request = AccessRequest("s3:GetObject", "*", {"aws:x": ["1"]})
    assert evaluate([policy(*statements)], request) == Decision.IMPLICIT_DENY


LAMBDA = "arn:aws:lambda:ca-central-1:123456789012"
SCOPE = RequestScope("123456789012", "ca-central-1")


def requests(
    action: str, params: dict[str, Any], tags: dict[str, str] | None = None
) -> list[tuple[str, str]]:
    operation = action.split(":")[1]
    return [
        (r.action, r.resource)
        for r in access_requests(action, operation, params, SCOPE, {}, lambda arn: tags or {})
    ]


def test_a_transaction_is_authorized_item_by_item_on_each_items_table() -> None:
    params = {
        "TransactItems": [
            {"Update": {"TableName": "incident-state", "Key": {}}},
            {"Put": {"TableName": "incident-audit", "Item": {}}},
            {"Delete": {"TableName": "incident-audit", "Key": {}}},
            {"ConditionCheck": {"TableName": "incident-state", "Key": {}}},
        ]
    }
    assert requests("dynamodb:TransactWriteItems", params) == [
        ("dynamodb:UpdateItem", TABLE),
        ("dynamodb:PutItem", AUDIT),
        ("dynamodb:DeleteItem", AUDIT),
        ("dynamodb:ConditionCheckItem", TABLE),
    ]
    batch: dict[str, Any] = {"RequestItems": {"incident-state": [], "incident-audit": []}}
    assert requests("dynamodb:BatchWriteItem", batch) == [
        ("dynamodb:BatchWriteItem", TABLE),
        ("dynamodb:BatchWriteItem", AUDIT),
    ]
    assert requests(
        "dynamodb:Query", {"TableName": "incident-state", "IndexName": "by-status"}
    ) == [("dynamodb:Query", f"{TABLE}/index/by-status")]


@pytest.mark.parametrize(
    ("params", "resource"),
    [
        ({"FunctionName": "data-processor"}, "function:data-processor"),
        ({"FunctionName": "data-processor", "Qualifier": "live"}, "function:data-processor:live"),
        ({"FunctionName": "data-processor:3"}, "function:data-processor:3"),
        ({"FunctionName": "123456789012:function:data-processor"}, "function:data-processor"),
        (
            {"FunctionName": f"{LAMBDA}:function:data-processor:live"},
            "function:data-processor:live",
        ),
    ],
)
def test_a_lambda_function_is_named_in_every_form_lambda_accepts(
    params: dict[str, Any], resource: str
) -> None:
    arn = f"{LAMBDA}:{resource}"
    assert requests("lambda:GetFunction", params) == [("lambda:GetFunction", arn)]


def test_handing_a_role_over_needs_pass_role() -> None:
    role = "arn:aws:iam::123456789012:role/data-processor-role"
    assert requests(
        "lambda:UpdateFunctionConfiguration", {"FunctionName": "data-processor", "Role": role}
    ) == [
        (
            "lambda:UpdateFunctionConfiguration",
            "arn:aws:lambda:ca-central-1:123456789012:function:data-processor",
        ),
        ("iam:PassRole", role),
    ]


def test_logs_metrics_alarms_and_security_groups() -> None:
    group = "arn:aws:logs:ca-central-1:123456789012:log-group:/aws/lambda/data-processor"
    assert requests("logs:FilterLogEvents", {"logGroupName": "/aws/lambda/data-processor"}) == [
        ("logs:FilterLogEvents", f"{group}:*")
    ]
    assert requests(
        "logs:PutLogEvents", {"logGroupName": "/aws/lambda/data-processor", "logStreamName": "s"}
    ) == [("logs:PutLogEvents", f"{group}:log-stream:s")]
    assert requests("logs:DescribeLogGroups", {}) == [("logs:DescribeLogGroups", "*")]
    assert requests("cloudwatch:SetAlarmState", {"AlarmName": "a"}) == [
        ("cloudwatch:SetAlarmState", "arn:aws:cloudwatch:ca-central-1:123456789012:alarm:a")
    ]
    put = access_requests(
        "cloudwatch:PutMetricData",
        "PutMetricData",
        {"Namespace": "AWS/Lambda"},
        SCOPE,
        {},
        lambda arn: {},
    )
    assert put[0].resource == "*" and put[0].value("cloudwatch:namespace") == ["AWS/Lambda"]
    revoke = access_requests(
        "ec2:RevokeSecurityGroupEgress",
        "RevokeSecurityGroupEgress",
        {"GroupId": "sg-1"},
        SCOPE,
        {},
        lambda arn: {"fleet-protected": "true"},
    )[0]
    assert revoke.resource == "arn:aws:ec2:ca-central-1:123456789012:security-group/sg-1"
    assert revoke.value("aws:ResourceTag/fleet-protected") == ["true"]
    assert revoke.value("ec2:ResourceTag/fleet-protected") == ["true"]


def test_sqs_queues_by_url_name_or_move_task_source() -> None:
    queue = "arn:aws:sqs:ca-central-1:123456789012:watchdog"
    assert requests("sqs:GetQueueUrl", {"QueueName": "watchdog"}) == [("sqs:GetQueueUrl", queue)]
    url = "http://127.0.0.1:5000/123456789012/watchdog"
    # A batch call goes by the single-message action moto was told (emulation.moto_patches).
    batch = access_requests(
        "sqs:DeleteMessage", "DeleteMessageBatch", {"QueueUrl": url}, SCOPE, {}, lambda arn: {}
    )
    assert [(r.action, r.resource) for r in batch] == [("sqs:DeleteMessage", queue)]
    assert requests("sqs:ListQueues", {}) == [("sqs:ListQueues", "*")]
    assert requests("sqs:StartMessageMoveTask", {"SourceArn": queue}) == [
        ("sqs:StartMessageMoveTask", queue)
    ]


def test_a_resource_policy_grants_only_the_principal_it_names() -> None:
    queue = "arn:aws:sqs:ca-central-1:123456789012:supervisor"
    topic = "arn:aws:sns:ca-central-1:123456789012:incident-alerts"
    statement = {
        "Effect": "Allow",
        "Principal": {"Service": "sns.amazonaws.com"},
        "Action": "sqs:SendMessage",
        "Resource": queue,
        "Condition": {"ArnEquals": {"aws:SourceArn": [topic]}},
    }
    sns = ("Service", "sns.amazonaws.com")

    def send(principal: tuple[str, str] | None, source: str) -> Decision:
        context = {"aws:SourceArn": [source]}
        return evaluate(
            [policy(statement)], AccessRequest("sqs:SendMessage", queue, context, principal)
        )

    assert send(sns, topic) == Decision.ALLOW
    assert send(sns, topic.replace("alerts", "events")) == Decision.IMPLICIT_DENY
    assert send(("Service", "events.amazonaws.com"), topic) == Decision.IMPLICIT_DENY
    assert send(None, topic) == Decision.IMPLICIT_DENY  # not an identity-policy statement


def _holds(condition: dict[str, Any], context: dict[str, list[str]]) -> bool:
    request = AccessRequest("ec2:CreateTags", "*", context)
    return evaluate([policy(allow("ec2:*", "*", Condition=condition))], request) == Decision.ALLOW


def test_if_exists_with_a_set_operator_holds_when_the_key_is_missing() -> None:
    """`...IfExists`: "If the key is not present, evaluate the condition element as true",
    with or without a set operator; so a Deny on it applies to a request without the key.
    https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_condition_operators.html#Conditions_IfExists
    """
    key = "aws:TagKeys"
    for operator in ("ForAnyValue:StringLikeIfExists", "ForAllValues:StringEqualsIfExists"):
        assert _holds({operator: {key: "team"}}, {})
    assert not _holds({"ForAnyValue:StringLikeIfExists": {key: "team"}}, {key: ["cost"]})
    deny = {
        "Effect": "Deny",
        "Action": "ec2:*",
        "Resource": "*",
        "Condition": {"ForAnyValue:StringLikeIfExists": {key: "secret*"}},
    }
    request = AccessRequest("ec2:CreateTags", "*", {})
    assert evaluate([policy(allow("ec2:*", "*"), deny)], request) == Decision.EXPLICIT_DENY


def test_dates_in_every_documented_form_compare() -> None:
    """Date condition values are "one of the W3C implementations of the ISO 8601 date
    formats, or in epoch (UNIX) time", and compare as instants.
    https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_condition_operators.html#Conditions_Date
    """
    now = {"aws:CurrentTime": ["2026-12-08T10:00:00Z"]}
    for value in ("2026-12-01", "2026-12-08T09:59:59Z", "2026-12-08T11:00:00+02:00", "1765000000"):
        assert _holds({"DateGreaterThan": {"aws:CurrentTime": value}}, now), value
    for value in ("2027-01-01", "2026-12-08T10:00:01Z", "1900000000"):
        assert not _holds({"DateGreaterThan": {"aws:CurrentTime": value}}, now), value
    epoch = {"aws:EpochTime": ["1765188000"]}  # 2025-12-08T10:00:00Z
    assert _holds({"DateLessThan": {"aws:EpochTime": "2026-01-01"}}, epoch)
    assert not _holds({"DateGreaterThan": {"aws:CurrentTime": "not a date"}}, now)


def test_ip_address_operators_match_ranges_and_single_addresses() -> None:
    """IpAddress / NotIpAddress: an IPv4 or IPv6 address or CIDR range; a bare address is
    its own range.
    https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_condition_operators.html#Conditions_IPAddress
    """
    here = {"aws:SourceIp": ["127.0.0.1"]}
    assert _holds({"IpAddress": {"aws:SourceIp": "127.0.0.0/8"}}, here)
    assert _holds({"IpAddress": {"aws:SourceIp": ["10.0.0.0/8", "127.0.0.1"]}}, here)
    assert not _holds({"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}, here)
    assert _holds({"NotIpAddress": {"aws:SourceIp": "10.0.0.0/8"}}, here)
    assert not _holds({"NotIpAddress": {"aws:SourceIp": "127.0.0.0/8"}}, here)
    assert _holds(
        {"IpAddress": {"aws:SourceIp": "2001:db8::/32"}}, {"aws:SourceIp": ["2001:db8::1"]}
    )
    # A Deny for calls from outside the office applies to a caller from anywhere else.
    deny = {
        "Effect": "Deny",
        "Action": "*",
        "Resource": "*",
        "Condition": {"NotIpAddress": {"aws:SourceIp": "203.0.113.0/24"}},
    }
    request = AccessRequest("ec2:CreateTags", "*", here)
    assert evaluate([policy(allow("ec2:*", "*"), deny)], request) == Decision.EXPLICIT_DENY


def test_binary_equals_compares_the_decoded_bytes() -> None:
    """BinaryEquals compares "byte for byte against a base-64 encoded representation of
    the binary value in the policy".
    https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_condition_operators.html#Conditions_BinaryEquals
    """
    key = "aws:Custom"
    assert _holds({"BinaryEquals": {key: "QmluYXJ5VmFsdWU="}}, {key: ["QmluYXJ5VmFsdWU="]})
    assert not _holds({"BinaryEquals": {key: "QmluYXJ5VmFsdWU="}}, {key: ["T3RoZXI="]})
    assert not _holds({"BinaryEquals": {key: "not base64!"}}, {key: ["not base64!"]})


def test_a_key_with_several_values_needs_a_set_operator() -> None:
    """ "Multivalued context keys require a condition set operator"; without one, the key is
    not compared on its first value (it was, here), it matches nothing.
    https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_condition-single-vs-multi-valued-context-keys.html
    """
    tags = {"aws:TagKeys": ["team", "secret"]}
    assert not _holds({"StringEquals": {"aws:TagKeys": "team"}}, tags)
    assert not _holds({"StringNotEquals": {"aws:TagKeys": "secret"}}, tags)
    assert _holds({"ForAnyValue:StringEquals": {"aws:TagKeys": "secret"}}, tags)
    assert _holds({"StringEquals": {"aws:TagKeys": "team"}}, {"aws:TagKeys": ["team"]})


def test_the_workloads_role_puts_metrics_only_in_the_handlers_namespace() -> None:
    """PutMetricData takes no resource but "*" on AWS; its cloudwatch:namespace condition
    key is how a role is narrowed to a namespace.
    https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/iam-cw-condition-keys-namespace.html
    """
    spec = FunctionSpec(
        name="data-processor",
        account_id="123456789012",
        bucket="data-processor-data-123456789012",
        prefix="data-processor/",
        region="eu-west-1",
        alerts_topic_arn="arn:aws:sns:eu-west-1:123456789012:incident-alerts",
        work_seconds=1.2,
        timeout_s=10,
    )

    def put(namespace: str) -> Decision:
        context = {"cloudwatch:namespace": [namespace]}
        request = AccessRequest("cloudwatch:PutMetricData", "*", context)
        return evaluate([spec.baseline_policy()], request)

    handler = find_spec("workload.data_processor")  # its source, not run (it makes clients)
    assert handler and handler.origin
    assert f'Namespace="{METRICS_NAMESPACE}"' in Path(handler.origin).read_text()
    assert put(METRICS_NAMESPACE) == Decision.ALLOW
    assert put("AWS/Lambda") == Decision.IMPLICIT_DENY


def test_describe_alarms_is_authorized_against_the_alarms_it_may_return() -> None:
    """DescribeAlarms has the `alarm` resource type: a Deny on one alarm refuses naming it;
    listing them all is allowed only by a statement on every alarm.
    https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazoncloudwatch.html
    """
    alarms = "arn:aws:cloudwatch:ca-central-1:123456789012:alarm"
    assert requests("cloudwatch:DescribeAlarms", {"AlarmNames": ["a", "b"]}) == [
        ("cloudwatch:DescribeAlarms", f"{alarms}:a"),
        ("cloudwatch:DescribeAlarms", f"{alarms}:b"),
    ]
    assert requests("cloudwatch:DescribeAlarms", {"AlarmNamePrefix": "data-"}) == [
        ("cloudwatch:DescribeAlarms", f"{alarms}:data-*")
    ]
    everything = requests("cloudwatch:DescribeAlarms", {})
    assert everything == [("cloudwatch:DescribeAlarms", f"{alarms}:*")]
    statements = [
        allow("cloudwatch:DescribeAlarms", "*"),
        {"Effect": "Deny", "Action": "cloudwatch:*", "Resource": f"{alarms}:secret-*"},
    ]
    assert decide(statements, "cloudwatch:DescribeAlarms", f"{alarms}:secret-1") == (
        Decision.EXPLICIT_DENY
    )
    assert decide(statements, *everything[0]) == Decision.ALLOW
    only_some = [allow("cloudwatch:DescribeAlarms", f"{alarms}:data-*")]
    assert decide(only_some, *everything[0]) == Decision.IMPLICIT_DENY
