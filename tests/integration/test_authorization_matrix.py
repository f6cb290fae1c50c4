"""Least privilege, proven against the live emulator: every principal, what it needs, and
its near neighbours.

Each probe is a real call under a principal's own keys. A probe is harmless whether it is
allowed or not: writes carry a condition that fails (so an allowed write changes nothing
and answers ConditionalCheckFailed / TransactionCanceled), events go out with an event
type no queue subscribes to, and configuration writes put back what is there. The verdict
is read from AWS's answer: AccessDenied (or its per-service spelling) is a refusal, any
other answer means IAM let the call through. The whole matrix is printed.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from botocore.exceptions import ClientError

from core.aws import Clients
from core.aws_errors import ACCESS_DENIED, error_code
from core.lambda_versions import LATEST, LIVE_ALIAS
from core.principals import Principal
from queues.provision import queue_policy
from queues.runtime_metrics import NAMESPACE as RUNTIME_NAMESPACE
from queues.topology import Stage, Topic, build_topology, topic_arn
from tests.integration import policy_layer_probes
from tests.integration.conftest import RunningWorld
from tests.integration.test_worker_identities import TRUST

FUNCTION = "data-processor"
OTHER_FUNCTION = "unprotected-fn"
OTHER_ROLE = "unprotected-fn-role"
OTHER_LOG_GROUP = f"/aws/lambda/{OTHER_FUNCTION}"
PROBE_EVENT: dict[str, Any] = {
    "event_type": {"DataType": "String", "StringValue": "authorization-probe"}
}
NEVER = "attribute_exists(never_set_by_anyone)"

Call = Callable[[Clients], Any]


@dataclass(frozen=True)
class Probe:
    principal: Principal | str  # a fleet principal, or a policy-layer subject's name
    what: str
    call: Call
    allowed: bool
    clients: Clients | None = None  # the subject's own (a fleet principal's: its keys)

    @property
    def subject(self) -> str:
        return self.principal.value if isinstance(self.principal, Principal) else self.principal


@dataclass
class Fixtures:
    world: RunningWorld
    other_group_id: str
    protected_group_id: str
    other_role_arn: str

    def queue_url(self, stage: Stage, dlq: bool = False) -> str:
        queue = build_topology(self.world.settings).queue(stage)
        name = queue.dlq_name if dlq else queue.name
        return f"{self.world.settings.endpoint_url}/{self.world.settings.account_id}/{name}"

    def topic(self, topic: Topic) -> str:
        return topic_arn(self.world.settings, topic)


def _zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("index.py", "def handler(event, context):\n    return 'ok'\n")
    return buf.getvalue()


@pytest.fixture(scope="module")
def fx(world: RunningWorld, admin: Any) -> Fixtures:
    """Near neighbours of the protected resources: a function, its role, its log group and a
    security group, none of them tagged as protected."""
    iam, ec2 = admin("iam"), admin("ec2")
    role_arn = iam.create_role(RoleName=OTHER_ROLE, AssumeRolePolicyDocument=json.dumps(TRUST))[
        "Role"
    ]["Arn"]
    admin("lambda").create_function(
        FunctionName=OTHER_FUNCTION,
        Runtime="python3.12",
        Role=role_arn,
        Handler="index.handler",
        Code={"ZipFile": _zip()},
    )
    admin("lambda").create_alias(
        FunctionName=OTHER_FUNCTION, Name=LIVE_ALIAS, FunctionVersion=LATEST
    )
    admin("logs").create_log_group(logGroupName=OTHER_LOG_GROUP)
    vpc = ec2.describe_vpcs()["Vpcs"][0]["VpcId"]
    other_group = ec2.create_security_group(
        GroupName="unprotected-sg", Description="not the fleet's", VpcId=vpc
    )["GroupId"]
    config = admin("lambda").get_function_configuration(FunctionName=FUNCTION)
    return Fixtures(world, other_group, config["VpcConfig"]["SecurityGroupIds"][0], role_arn)


def _key(table: str) -> dict[str, Any]:
    if table == "incident-audit":
        return {"incident_id": {"S": "probe"}, "seq": {"N": "0"}}
    if table == "dlq-audit":
        return {"queue": {"S": "probe"}, "entry": {"S": "probe"}}
    if table == "rate-limits":
        return {"bucket": {"S": "probe"}}
    return {"incident_id": {"S": "probe"}}


def update(table: str) -> Call:
    return lambda c: c("dynamodb").update_item(
        TableName=table,
        Key=_key(table),
        UpdateExpression="SET probe = :v",
        ExpressionAttributeValues={":v": {"S": "x"}},
        ConditionExpression=NEVER,
    )


def delete(table: str) -> Call:
    return lambda c: c("dynamodb").delete_item(
        TableName=table, Key=_key(table), ConditionExpression=NEVER
    )


def put(table: str) -> Call:
    return lambda c: c("dynamodb").put_item(
        TableName=table, Item=_key(table), ConditionExpression=NEVER
    )


def batch_delete(table: str) -> Call:
    # Allowed, it would delete: aimed at a key nobody writes.
    return lambda c: c("dynamodb").batch_write_item(
        RequestItems={table: [{"DeleteRequest": {"Key": _key(table)}}]}
    )


def transact(*items: tuple[str, str]) -> Call:
    def body(kind: str, table: str) -> dict[str, Any]:
        if kind == "Put":
            return {"Put": {"TableName": table, "Item": _key(table), "ConditionExpression": NEVER}}
        if kind == "Update":
            return {
                "Update": {
                    "TableName": table,
                    "Key": _key(table),
                    "UpdateExpression": "SET probe = :v",
                    "ExpressionAttributeValues": {":v": {"S": "x"}},
                    "ConditionExpression": NEVER,
                }
            }
        return {kind: {"TableName": table, "Key": _key(table), "ConditionExpression": NEVER}}

    transaction: list[Any] = [body(kind, table) for kind, table in items]
    return lambda c: c("dynamodb").transact_write_items(TransactItems=transaction)


def get(table: str, key: dict[str, Any] | None = None) -> Call:
    return lambda c: c("dynamodb").get_item(TableName=table, Key=key or _key(table))


def metric(namespace: str) -> Call:
    return lambda c: c("cloudwatch").put_metric_data(
        Namespace=namespace, MetricData=[{"MetricName": "AuthorizationProbe", "Value": 0.0}]
    )


def same_timeout(function: str) -> Call:
    def call(c: Clients) -> Any:
        lam = c("lambda")
        try:
            timeout = lam.get_function_configuration(FunctionName=function)["Timeout"]
        except ClientError:
            timeout = 3  # may not read it: the write is what is probed
        return lam.update_function_configuration(FunctionName=function, Timeout=timeout)

    return call


def concurrency(function: str) -> Call:
    # A reserved concurrency that leaves the function running; put back right after.
    def call(c: Clients) -> Any:
        lam = c("lambda")
        lam.put_function_concurrency(FunctionName=function, ReservedConcurrentExecutions=5)
        lam.delete_function_concurrency(FunctionName=function)

    return call


def same_alias_target(function: str) -> Call:
    """`live` pointed at the version it points to now: allowed, it changes nothing."""

    def call(c: Clients) -> Any:
        lam = c("lambda")
        try:
            target = lam.get_alias(FunctionName=function, Name=LIVE_ALIAS)["FunctionVersion"]
        except ClientError:
            target = LATEST  # may not read it (both functions' `live` are on $LATEST)
        return lam.update_alias(FunctionName=function, Name=LIVE_ALIAS, FunctionVersion=target)

    return call


def list_versions(function: str) -> Call:
    return lambda c: c("lambda").list_versions_by_function(FunctionName=function)


def describe_missing_egress(fx: Fixtures, protected: bool) -> Call:
    group = fx.protected_group_id if protected else fx.other_group_id
    # A rule that is not there: allowed, it describes nothing.
    return lambda c: c("ec2").update_security_group_rule_descriptions_egress(
        GroupId=group,
        IpPermissions=[
            {
                "IpProtocol": "tcp",
                "FromPort": 1,
                "ToPort": 1,
                "IpRanges": [{"CidrIp": "192.0.2.1/32", "Description": "probe"}],
            }
        ],
    )


def filter_logs(group: str) -> Call:
    return lambda c: c("logs").filter_log_events(logGroupName=group, limit=1)


def revoke_missing_egress(fx: Fixtures, protected: bool) -> Call:
    group = fx.protected_group_id if protected else fx.other_group_id
    # A rule that is not there: allowed, it fails as not found and changes nothing.
    return lambda c: c("ec2").revoke_security_group_egress(
        GroupId=group,
        IpPermissions=[
            {
                "IpProtocol": "tcp",
                "FromPort": 1,
                "ToPort": 1,
                "IpRanges": [{"CidrIp": "192.0.2.1/32"}],
            }
        ],
    )


def publish(fx: Fixtures, topic: Topic) -> Call:
    return lambda c: c("sns").publish(
        TopicArn=fx.topic(topic), Message="{}", MessageAttributes=PROBE_EVENT
    )


def queue_attributes(fx: Fixtures, stage: Stage) -> Call:
    return lambda c: c("sqs").get_queue_attributes(
        QueueUrl=fx.queue_url(stage), AttributeNames=["ApproximateNumberOfMessages"]
    )


def delete_message(fx: Fixtures, dlq: bool) -> Call:
    # A receipt handle no message has: allowed, it is refused as invalid and deletes nothing.
    url = fx.queue_url(Stage.SUPERVISOR, dlq=dlq)
    return lambda c: c("sqs").delete_message(QueueUrl=url, ReceiptHandle="not-a-handle")


def probes(fx: Fixtures) -> list[Probe]:
    P = Principal
    out: list[Probe] = []

    def add(principal: Principal, allowed: bool, what: str, call: Call) -> None:
        out.append(Probe(principal, what, call, allowed))

    for p in (P.SUPERVISOR, P.RESOLVER, P.CRITIC, P.WATCHDOG):
        stage = Stage(p.value)
        add(p, True, "UpdateItem incident-state", update("incident-state"))
        add(p, True, "PutItem incident-audit", put("incident-audit"))
        add(
            p,
            True,
            "transaction: Update state + Put audit",
            transact(("Update", "incident-state"), ("Put", "incident-audit")),
        )
        add(p, True, f"GetQueueAttributes own queue ({stage})", queue_attributes(fx, stage))
        add(p, True, f"PutMetricData {RUNTIME_NAMESPACE}", metric(RUNTIME_NAMESPACE))
        add(p, True, "Publish incident-events", publish(fx, Topic.EVENTS))
        add(p, False, "UpdateItem incident-audit", update("incident-audit"))
        add(p, False, "DeleteItem incident-audit", delete("incident-audit"))
        add(
            p,
            False,
            "transaction: Delete incident-audit",
            transact(("Put", "incident-state"), ("Delete", "incident-audit")),
        )
        add(
            p,
            False,
            "transaction: Update incident-audit",
            transact(
                ("Update", "incident-audit"),
            ),
        )
        add(p, False, "BatchWriteItem incident-audit", batch_delete("incident-audit"))
        add(p, False, "PutMetricData AWS/Lambda", metric("AWS/Lambda"))
        add(p, False, "Publish incident-alerts", publish(fx, Topic.ALERTS))
        if p != P.WATCHDOG:
            other = Stage.CRITIC if stage != Stage.CRITIC else Stage.RESOLVER
            add(
                p,
                False,
                f"GetQueueAttributes another stage's queue ({other})",
                queue_attributes(fx, other),
            )
        if p != P.RESOLVER:
            add(p, False, f"UpdateFunctionConfiguration {FUNCTION}", same_timeout(FUNCTION))
            add(p, False, f"UpdateAlias {FUNCTION}:{LIVE_ALIAS}", same_alias_target(FUNCTION))
            add(
                p,
                False,
                f"FilterLogEvents /aws/lambda/{FUNCTION}",
                filter_logs(f"/aws/lambda/{FUNCTION}"),
            )
    # The fleet's model quota: the three stages with an agent share it; nobody else.
    for p in (P.SUPERVISOR, P.RESOLVER, P.CRITIC):
        add(p, True, "GetItem rate-limits", get("rate-limits"))
        add(p, True, "PutItem rate-limits", put("rate-limits"))
        add(p, False, "DeleteItem rate-limits", delete("rate-limits"))
    for p in (P.WATCHDOG, P.CONSOLE, P.OPERATOR, P.MCP_SUPERVISOR):
        add(p, False, "PutItem rate-limits", put("rate-limits"))
    for p in (P.RESOLVER, P.OPERATOR):
        add(p, True, f"UpdateFunctionConfiguration {FUNCTION}", same_timeout(FUNCTION))
        add(p, True, f"Put/DeleteFunctionConcurrency {FUNCTION}", concurrency(FUNCTION))
        add(p, True, "RevokeSecurityGroupEgress, protected group", revoke_missing_egress(fx, True))
        add(
            p,
            True,
            "UpdateSecurityGroupRuleDescriptionsEgress, protected group",
            describe_missing_egress(fx, True),
        )
        add(p, True, f"UpdateAlias {FUNCTION}:{LIVE_ALIAS}", same_alias_target(FUNCTION))
        add(
            p,
            True,
            f"FilterLogEvents /aws/lambda/{FUNCTION}",
            filter_logs(f"/aws/lambda/{FUNCTION}"),
        )
        add(p, False, f"UpdateFunctionConfiguration {OTHER_FUNCTION}", same_timeout(OTHER_FUNCTION))
        add(p, False, f"PutFunctionConcurrency {OTHER_FUNCTION}", concurrency(OTHER_FUNCTION))
        add(
            p,
            False,
            f"UpdateFunctionConfiguration {FUNCTION} Role={OTHER_ROLE} (iam:PassRole)",
            lambda c: c("lambda").update_function_configuration(
                FunctionName=FUNCTION, Role=fx.other_role_arn
            ),
        )
        add(p, False, "RevokeSecurityGroupEgress, untagged group", revoke_missing_egress(fx, False))
        add(
            p,
            False,
            "UpdateSecurityGroupRuleDescriptionsEgress, untagged group",
            describe_missing_egress(fx, False),
        )
        add(
            p,
            False,
            f"UpdateAlias {OTHER_FUNCTION}:{LIVE_ALIAS}",
            same_alias_target(OTHER_FUNCTION),
        )
        add(p, False, f"FilterLogEvents {OTHER_LOG_GROUP}", filter_logs(OTHER_LOG_GROUP))
    # The critic checks a rollback's target against the versions as they are now.
    add(P.CRITIC, True, f"ListVersionsByFunction {FUNCTION}", list_versions(FUNCTION))
    add(P.CRITIC, False, f"ListVersionsByFunction {OTHER_FUNCTION}", list_versions(OTHER_FUNCTION))
    add(P.OPERATOR, True, "DeleteMessage supervisor-dlq (redrive)", delete_message(fx, dlq=True))
    add(P.OPERATOR, False, "DeleteMessage supervisor (a live queue)", delete_message(fx, dlq=False))
    add(P.OPERATOR, False, "UpdateItem incident-audit", update("incident-audit"))
    add(P.OPERATOR, False, "DeleteItem incident-audit", delete("incident-audit"))
    # Who redrove, deleted or purged dead letters: the people's identities append, nobody
    # changes or removes an entry, and the workers do not write there at all.
    for p in (P.OPERATOR, P.CONSOLE):
        add(p, True, "PutItem dlq-audit", put("dlq-audit"))
        add(p, False, "UpdateItem dlq-audit", update("dlq-audit"))
        add(p, False, "DeleteItem dlq-audit", delete("dlq-audit"))
    add(P.SUPERVISOR, False, "PutItem dlq-audit", put("dlq-audit"))
    for p in (P.MCP_SUPERVISOR, P.MCP_RESOLVER):
        add(
            p,
            True,
            f"GetFunctionConfiguration {FUNCTION}",
            lambda c: c("lambda").get_function_configuration(FunctionName=FUNCTION),
        )
        add(
            p,
            True,
            f"FilterLogEvents /aws/lambda/{FUNCTION}",
            filter_logs(f"/aws/lambda/{FUNCTION}"),
        )
        add(
            p,
            True,
            "GetItem baselines",
            get("baselines", {"function": {"S": FUNCTION}, "version": {"N": "1"}}),
        )
        add(
            p,
            False,
            f"GetFunctionConfiguration {OTHER_FUNCTION}",
            lambda c: c("lambda").get_function_configuration(FunctionName=OTHER_FUNCTION),
        )
        add(p, False, f"FilterLogEvents {OTHER_LOG_GROUP}", filter_logs(OTHER_LOG_GROUP))
        add(p, False, "PutItem incident-state", put("incident-state"))
        add(p, False, f"UpdateFunctionConfiguration {FUNCTION}", same_timeout(FUNCTION))
        add(p, False, "RevokeSecurityGroupEgress, protected group", revoke_missing_egress(fx, True))
        add(p, False, f"UpdateAlias {FUNCTION}:{LIVE_ALIAS}", same_alias_target(FUNCTION))
    add(P.CONSOLE, True, "GetQueueAttributes every queue", queue_attributes(fx, Stage.RESOLVER))
    add(P.CONSOLE, True, "Publish incident-approvals", publish(fx, Topic.APPROVALS))
    add(P.CONSOLE, True, "UpdateItem incident-state", update("incident-state"))
    add(P.CONSOLE, False, "DeleteItem incident-audit", delete("incident-audit"))
    add(P.CONSOLE, False, f"Put/DeleteFunctionConcurrency {FUNCTION}", concurrency(FUNCTION))
    add(P.CONSOLE, False, f"PutMetricData {RUNTIME_NAMESPACE}", metric(RUNTIME_NAMESPACE))
    add(
        P.LAMBDA_RUNTIME,
        True,
        f"GetFunction {FUNCTION}",
        lambda c: c("lambda").get_function(FunctionName=FUNCTION),
    )
    add(P.LAMBDA_RUNTIME, True, "PutMetricData AWS/Lambda", metric("AWS/Lambda"))
    add(P.LAMBDA_RUNTIME, False, "PutMetricData DataProcessor", metric("DataProcessor"))
    add(P.LAMBDA_RUNTIME, False, f"PutMetricData {RUNTIME_NAMESPACE}", metric(RUNTIME_NAMESPACE))
    add(P.LAMBDA_RUNTIME, False, f"UpdateFunctionConfiguration {FUNCTION}", same_timeout(FUNCTION))
    add(P.LAMBDA_RUNTIME, False, "GetItem incident-state", get("incident-state"))
    add(
        P.ALARM_EVALUATOR,
        True,
        "DescribeAlarms",
        lambda c: c("cloudwatch").describe_alarms(MaxRecords=1),
    )
    add(P.ALARM_EVALUATOR, True, "Publish incident-alerts", publish(fx, Topic.ALERTS))
    add(P.ALARM_EVALUATOR, False, "Publish incident-events", publish(fx, Topic.EVENTS))
    # Who changed what: the person's reports and the supervisor's `recent_changes` read
    # CloudTrail; nothing else does.
    trail: Call = lambda c: c("cloudtrail").lookup_events(MaxResults=1)  # noqa: E731
    for p in (P.OPERATOR, P.MCP_SUPERVISOR):
        add(p, True, "LookupEvents (CloudTrail)", trail)
    for p in (P.SUPERVISOR, P.RESOLVER, P.MCP_RESOLVER, P.CONSOLE):
        add(p, False, "LookupEvents (CloudTrail)", trail)
    add(P.ALARM_EVALUATOR, False, "PutMetricData AWS/Lambda", metric("AWS/Lambda"))
    add(
        P.SCHEDULER,
        True,
        "GetQueueUrl watchdog",
        lambda c: c("sqs").get_queue_url(
            QueueName=build_topology(fx.world.settings).queue(Stage.WATCHDOG).name
        ),
    )
    add(
        P.SCHEDULER,
        False,
        "GetQueueUrl supervisor",
        lambda c: c("sqs").get_queue_url(
            QueueName=build_topology(fx.world.settings).queue(Stage.SUPERVISOR).name
        ),
    )
    return out


@pytest.fixture(scope="module")
def layers(world: RunningWorld, admin: Any) -> Iterator[list[Probe]]:
    """Rows for a permissions boundary, a session policy and a bucket policy."""
    for staged in policy_layer_probes.stage(world, admin):
        yield [Probe(p.subject, p.what, p.call, p.allowed, p.clients) for p in staged]


def verdict(probe: Probe, world: RunningWorld) -> tuple[bool, str]:
    """(allowed, AWS's answer) for one probe under the principal's own keys."""
    clients = probe.clients
    if clients is None:
        assert isinstance(probe.principal, Principal)
        clients = world.clients(probe.principal)
    try:
        probe.call(clients)
    except ClientError as exc:
        code = error_code(exc)
        return code not in ACCESS_DENIED, code
    return True, "ok"


def test_every_principal_is_allowed_what_it_needs_and_refused_its_neighbours(
    world: RunningWorld,
    fx: Fixtures,
    layers: list[Probe],
    capsys: pytest.CaptureFixture[str],
) -> None:
    rows, wrong = [], []
    for probe in [*probes(fx), *layers]:
        allowed, answer = verdict(probe, world)
        mark = "ok" if allowed == probe.allowed else "WRONG"
        expected = "allow" if probe.allowed else "refuse"
        rows.append(f"{mark:5}  {probe.subject:27} {expected:6}  {probe.what:64} {answer}")
        if allowed != probe.allowed:
            wrong.append(rows[-1])
    table = "\n".join(["authorization matrix (expected, probe, AWS's answer):", *rows])
    with capsys.disabled():
        print("\n" + table)
    assert not wrong, "\n".join(["these probes were decided wrongly:", *wrong, "", table])
    covered = {p.principal for p in probes(fx) if isinstance(p.principal, Principal)}
    assert covered == set(Principal) - {Principal.ADMIN}, set(Principal) - covered


def test_sns_delivers_only_where_the_queue_policy_lets_the_topic_send(
    world: RunningWorld, admin: Any
) -> None:
    sqs, sns = admin("sqs"), admin("sns")
    events = topic_arn(world.settings, Topic.EVENTS)
    queues = {}
    for name, policy_topics in (
        ("open-door", [events]),
        ("no-policy", None),
        ("other-topic", [topic_arn(world.settings, Topic.ALERTS)]),
    ):
        url = sqs.create_queue(QueueName=f"delivery-{name}")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        if policy_topics is not None:
            sqs.set_queue_attributes(
                QueueUrl=url, Attributes={"Policy": json.dumps(queue_policy(arn, policy_topics))}
            )
        sub = sns.subscribe(
            TopicArn=events, Protocol="sqs", Endpoint=arn, ReturnSubscriptionArn=True
        )
        queues[name] = (url, sub["SubscriptionArn"])
    try:
        sns.publish(
            TopicArn=events,
            Message="{}",
            MessageAttributes={
                "event_type": {"DataType": "String", "StringValue": "delivery-probe"}
            },
        )
        got = {
            name: sqs.receive_message(
                QueueUrl=url, WaitTimeSeconds=1 if name == "open-door" else 0
            ).get("Messages", [])
            for name, (url, _) in queues.items()
        }
        assert len(got["open-door"]) == 1
        assert got["no-policy"] == [] and got["other-topic"] == []
    finally:
        for url, sub in queues.values():
            sns.unsubscribe(SubscriptionArn=sub)
            sqs.delete_queue(QueueUrl=url)
