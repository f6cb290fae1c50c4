"""One least-privilege IAM policy document per process kind, defined once, here.

The embedded world creates an IAM user per principal with these documents
(`emulation/identities.py`); infra/ attaches
the very same documents to the ECS task roles. The emulator enforces them (moto with IAM
enforcement), so least privilege is tested, not assumed.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel

from core.dynamodb import TableSpec
from core.principals import Principal
from core.protection import PROTECTED_TAG
from core.settings import Settings
from core.shared_bucket import RATE_LIMITS
from incidents.tables import INCIDENT_AUDIT, TABLES
from queues.runtime_metrics import NAMESPACE as RUNTIME_NAMESPACE
from queues.tables import DLQ_AUDIT
from queues.topology import Stage, Topic, TopologySpec, topic_arn

PROTECTED_PREFIX = "data-processor"
# Bedrock's cross-region inference profiles carry a geography before the model id.
INFERENCE_PROFILE_GEOGRAPHIES = ("us", "eu", "apac", "ca", "jp", "au", "us-gov", "global")

Statement = dict[str, Any]


class ProtectedResources(BaseModel, frozen=True):
    """The functions the fleet diagnoses and repairs, and their execution roles (IAM name
    patterns). The default is every copy of the demo workload; on AWS, stack config may
    name the user's own functions instead."""

    functions: tuple[str, ...] = (f"{PROTECTED_PREFIX}*",)
    roles: tuple[str, ...] = (f"{PROTECTED_PREFIX}*",)


class Arns:
    """ARN builders for the fleet's own resources and the protected workload's."""

    def __init__(
        self,
        settings: Settings,
        topology: TopologySpec,
        protected: ProtectedResources | None = None,
    ):
        self.settings = settings
        self.region = settings.region
        self.account = settings.account_id
        self.topology = topology
        self.protected = protected or ProtectedResources()

    def topic(self, topic: Topic) -> str:
        return topic_arn(self.settings, topic)

    def queue(self, name: str) -> str:
        return f"arn:aws:sqs:{self.region}:{self.account}:{name}"

    def stage_queues(self, stage: Stage) -> list[str]:
        q = self.topology.queue(stage)
        return [self.queue(q.name), self.queue(q.dlq_name)]

    def dead_letter_queues(self) -> list[str]:
        return [self.queue(q.dlq_name) for q in self.topology.queues]

    def stage_queues_only(self) -> list[str]:
        """Every stage's own queue, without the dead-letter queues."""
        return [self.queue(q.name) for q in self.topology.queues]

    def all_queues(self) -> list[str]:
        return [arn for q in self.topology.queues for arn in self.stage_queues(q.stage)]

    def tables(self, only: tuple[TableSpec, ...] = TABLES) -> list[str]:
        base = f"arn:aws:dynamodb:{self.region}:{self.account}:table"
        return [arn for t in only for arn in (f"{base}/{t.name}", f"{base}/{t.name}/index/*")]

    # The protected workload.
    def functions(self) -> list[str]:
        base = f"arn:aws:lambda:{self.region}:{self.account}:function"
        return [f"{base}:{name}" for name in self.protected.functions]

    def roles(self) -> list[str]:
        return [f"arn:aws:iam::{self.account}:role/{name}" for name in self.protected.roles]

    def log_groups(self) -> list[str]:
        base = f"arn:aws:logs:{self.region}:{self.account}:log-group:/aws/lambda"
        # The group itself, and its streams (FilterLogEvents names the group ARN with :*).
        return [
            arn
            for name in self.protected.functions
            for arn in (f"{base}/{name}", f"{base}/{name}:*")
        ]

    def security_groups(self) -> list[str]:
        # Groups have no names in their ARNs: the PROTECTED_TAG condition narrows them.
        return [f"arn:aws:ec2:{self.region}:{self.account}:security-group/*"]

    def models(self) -> list[str]:
        """The configured Bedrock model: an inference profile and the foundation model it
        routes to (in whichever region it picks), or a foundation model in its region."""
        model_id, region = self.settings.bedrock_model_id, self.settings.bedrock_region
        geography, _, base = model_id.partition(".")
        if geography in INFERENCE_PROFILE_GEOGRAPHIES and base:
            return [
                f"arn:aws:bedrock:{region}:{self.account}:inference-profile/{model_id}",
                f"arn:aws:bedrock:*::foundation-model/{base}",
            ]
        return [f"arn:aws:bedrock:{region}::foundation-model/{model_id}"]


def allow(
    actions: Iterable[str],
    resources: Iterable[str] | str,
    sid: str,
    condition: dict[str, dict[str, str]] | None = None,
) -> Statement:
    res = [resources] if isinstance(resources, str) else sorted(resources)
    statement: Statement = {
        "Sid": sid,
        "Effect": "Allow",
        "Action": sorted(actions),
        "Resource": res,
    }
    if condition:
        statement["Condition"] = condition
    return statement


def put_metrics(namespace: str, sid: str) -> Statement:
    """PutMetricData names no resource on AWS; the namespace condition narrows it."""
    return allow(
        ["cloudwatch:PutMetricData"],
        "*",
        sid,
        {"StringEquals": {"cloudwatch:namespace": namespace}},
    )


CONSUME = (
    "sqs:ReceiveMessage",
    "sqs:DeleteMessage",
    "sqs:ChangeMessageVisibility",
    "sqs:GetQueueAttributes",
    "sqs:GetQueueUrl",
    "sqs:SendMessage",
)
# No IAM action is named after TransactWriteItems: AWS authorizes each item of a transaction
# as PutItem/UpdateItem/DeleteItem/ConditionCheckItem on that item's own table.
STATE_RW = (
    "dynamodb:GetItem",
    "dynamodb:BatchGetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:BatchWriteItem",
    "dynamodb:Query",
    "dynamodb:Scan",
    "dynamodb:ConditionCheckItem",
    "dynamodb:DescribeTable",
)
# The audit trail is append-only: nobody in the fleet may update or delete an entry.
AUDIT_APPEND = (
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:Query",
    "dynamodb:ConditionCheckItem",
    "dynamodb:DescribeTable",
)
# The shared model quota's bucket (core/shared_bucket.py): a consistent read, a conditional put.
MODEL_QUOTA = ("dynamodb:GetItem", "dynamodb:PutItem")
STATE_RO = (
    "dynamodb:GetItem",
    "dynamodb:BatchGetItem",
    "dynamodb:Query",
    "dynamodb:Scan",
    "dynamodb:DescribeTable",
)
QUEUE_READ = (
    "sqs:GetQueueAttributes",
    "sqs:GetQueueUrl",
    "sqs:ListQueues",
    "sqs:ListDeadLetterSourceQueues",
)
FUNCTION_READ = (
    "lambda:GetFunction",
    "lambda:GetFunctionConfiguration",
    "lambda:GetFunctionConcurrency",
    "lambda:ListTags",
)
# Where the alias `live` points and which versions exist: what runs (baselines, status).
VERSION_READ = ("lambda:GetAlias", "lambda:ListAliases", "lambda:ListVersionsByFunction")
ROLE_READ = (
    "iam:GetRole",
    "iam:GetRolePolicy",
    "iam:ListRolePolicies",
    "iam:ListAttachedRolePolicies",
    "iam:GetPolicy",
    "iam:GetPolicyVersion",
)
# EC2's Describe calls name no resource on AWS: "*" is the only one they take.
NETWORK_READ = ("ec2:DescribeSecurityGroups", "ec2:DescribeSecurityGroupRules")
LOG_READ = ("logs:FilterLogEvents", "logs:GetLogEvents", "logs:DescribeLogStreams")
# Listing and metric reads name no resource on AWS (DescribeAlarms names alarms: "*" is
# every alarm it may be asked for).
LIST_AND_METRICS_READ = (
    "lambda:ListFunctions",
    "logs:DescribeLogGroups",
    "cloudwatch:GetMetricStatistics",
    "cloudwatch:GetMetricData",
    "cloudwatch:ListMetrics",
    "cloudwatch:DescribeAlarms",
)
# The writes a remediation may make (the resolver's executor) and chaos may make (operator).
REMEDIATION_WRITES = {
    "roles": (
        "iam:PutRolePolicy",
        "iam:DeleteRolePolicy",
        "iam:AttachRolePolicy",
        "iam:DetachRolePolicy",
    ),
    "functions": (
        "lambda:PutFunctionConcurrency",
        "lambda:DeleteFunctionConcurrency",
        "lambda:UpdateFunctionConfiguration",
        # Rolling a deploy back. AWS authorizes UpdateAlias against the function's own ARN
        # (not the alias's), so no policy can narrow it to `live`: the allowlist does.
        "lambda:UpdateAlias",
    ),
    "security_groups": (
        "ec2:AuthorizeSecurityGroupEgress",
        "ec2:RevokeSecurityGroupEgress",
        "ec2:UpdateSecurityGroupRuleDescriptionsEgress",
    ),
}
# A deploy as chaos makes it (`fleet chaos bad-deploy`) and `fleet chaos restore` undoes it:
# uploading code and publishing versions are the operator's alone (the fleet only points
# `live` back at a version that exists).
DEPLOY_WRITES = ("lambda:UpdateFunctionCode", "lambda:PublishVersion", "lambda:UpdateAlias")


def _incident_store(a: Arns) -> list[Statement]:
    mutable = tuple(t for t in TABLES if t not in (INCIDENT_AUDIT, DLQ_AUDIT))
    return [
        allow(STATE_RW, a.tables(mutable), "IncidentStore"),
        allow(AUDIT_APPEND, a.tables((INCIDENT_AUDIT,)), "AppendAudit"),
    ]


def _dead_letter_audit(a: Arns) -> Statement:
    """Who redrove, deleted or purged dead letters: the people's identities append to it,
    and none may change or remove an entry."""
    return allow(AUDIT_APPEND, a.tables((DLQ_AUDIT,)), "AppendDeadLetterAudit")


def _diagnostic_reads(a: Arns) -> list[Statement]:
    return [
        allow(FUNCTION_READ, a.functions(), "ReadProtectedFunctions"),
        allow(VERSION_READ, a.functions(), "ReadProtectedVersions"),
        allow(ROLE_READ, a.roles(), "ReadProtectedRoles"),
        allow(LOG_READ, a.log_groups(), "ReadProtectedLogs"),
        allow(NETWORK_READ, "*", "ReadSecurityGroups"),
        allow(LIST_AND_METRICS_READ, "*", "ListAndReadMetrics"),
    ]


def _remediation_writes(a: Arns) -> list[Statement]:
    return [
        allow(REMEDIATION_WRITES["roles"], a.roles(), "WriteProtectedRoles"),
        allow(REMEDIATION_WRITES["functions"], a.functions(), "WriteProtectedFunctions"),
        allow(
            REMEDIATION_WRITES["security_groups"],
            a.security_groups(),
            "WriteProtectedEgress",
            {"StringEquals": {f"aws:ResourceTag/{PROTECTED_TAG}": "true"}},
        ),
    ]


def policy_statements(principal: Principal, a: Arns) -> list[Statement]:
    events = a.topic(Topic.EVENTS)
    match principal:
        case Principal.ADMIN:
            return [allow(["*"], "*", "Administrator")]
        case Principal.SUPERVISOR | Principal.CRITIC | Principal.WATCHDOG | Principal.RESOLVER:
            stage = Stage(principal.value)
            statements = [
                allow(CONSUME, a.stage_queues(stage), "ConsumeOwnQueue"),
                allow(["sns:Publish"], [events, a.topic(Topic.APPROVALS)], "PublishEvents"),
                *_incident_store(a),
                put_metrics(RUNTIME_NAMESPACE, "RuntimeMetrics"),
            ]
            if principal == Principal.WATCHDOG:
                statements.append(allow(QUEUE_READ, a.all_queues(), "WatchAllQueues"))
            else:  # the three stages with an agent; Converse is authorized as InvokeModel
                statements.append(allow(["bedrock:InvokeModel"], a.models(), "InvokeModel"))
                # Every model call first takes its share of the fleet's quota (one item,
                # read and written on condition of its version).
                statements.append(allow(MODEL_QUOTA, a.tables((RATE_LIMITS,)), "ShareModelQuota"))
            if principal == Principal.RESOLVER:
                # Snapshots before a change, then the allowlisted writes: the executor alone.
                statements += _diagnostic_reads(a) + _remediation_writes(a)
            if principal == Principal.CRITIC:
                # A rollback's target checked against the versions as they are now.
                statements.append(allow(VERSION_READ, a.functions(), "CheckRollbackTargets"))
            return statements
        case Principal.MCP_SUPERVISOR:
            return [
                *_diagnostic_reads(a),
                allow(STATE_RO, a.tables(), "ReadBaselines"),
                # `recent_changes`: who changed what (names no resource on AWS).
                allow(("cloudtrail:LookupEvents",), "*", "ReadWhoChangedWhat"),
            ]
        case Principal.MCP_RESOLVER:
            return [*_diagnostic_reads(a), allow(STATE_RO, a.tables(), "ReadBaselines")]
        case Principal.CONSOLE:
            return [
                allow(
                    (
                        *QUEUE_READ,
                        "sqs:ReceiveMessage",
                        "sqs:ChangeMessageVisibility",
                        "sqs:SendMessage",
                        "sqs:DeleteMessage",
                        "sqs:PurgeQueue",
                        "sqs:StartMessageMoveTask",
                        "sqs:ListMessageMoveTasks",
                        "sqs:CancelMessageMoveTask",
                    ),
                    a.all_queues(),
                    "RedriveDeadLetters",
                ),
                allow(["sns:Publish"], [events, a.topic(Topic.APPROVALS)], "PublishDecisions"),
                # The approvals page shows each pending fix against the live function.
                *_diagnostic_reads(a),
                # The runtime's per-stage counters, shown beside the queues (metric reads
                # name no resource on AWS).
                allow(
                    ["cloudwatch:GetMetricStatistics", "cloudwatch:GetMetricData"],
                    "*",
                    "ReadCounters",
                ),
                *_incident_store(a),
                _dead_letter_audit(a),
            ]
        case Principal.OPERATOR:
            return [
                *_diagnostic_reads(a),
                *_remediation_writes(a),
                allow(DEPLOY_WRITES, a.functions(), "DeployProtectedFunctions"),
                allow(
                    (*QUEUE_READ, "sqs:ReceiveMessage", "sqs:PurgeQueue"),
                    a.all_queues(),
                    "InspectQueues",
                ),
                allow(("sqs:ListQueues",), "*", "ListQueues"),  # names no queue on AWS
                # `fleet incidents show|postmortem`: who changed what (CloudTrail's event
                # history names no resource on AWS).
                allow(("cloudtrail:LookupEvents",), "*", "ReadWhoChangedWhat"),
                # `fleet dlq peek|redrive|purge`: a dead letter is handed back, moved to its
                # stage's queue, or deleted once copied.
                allow(
                    (
                        "sqs:ChangeMessageVisibility",
                        "sqs:DeleteMessage",
                        "sqs:StartMessageMoveTask",
                        "sqs:ListMessageMoveTasks",
                        "sqs:CancelMessageMoveTask",
                    ),
                    a.dead_letter_queues(),
                    "RedriveDeadLetters",
                ),
                allow(("sqs:SendMessage",), a.stage_queues_only(), "RedriveToStageQueues"),
                allow(STATE_RO, a.tables(), "ReadIncidents"),
                # Capturing baselines; deciding approvals (a guarded transition, its audit
                # entry and its events).
                *_incident_store(a),
                _dead_letter_audit(a),
                allow(
                    ["sns:Publish"],
                    [a.topic(Topic.ALERTS), events, a.topic(Topic.APPROVALS)],
                    "InjectAlertsAndDecide",
                ),
            ]
        case Principal.LAMBDA_RUNTIME:
            return [
                # The world's Lambda service runs every function there is, protected or not
                # (ListFunctions names no resource on AWS).
                allow((*FUNCTION_READ, "lambda:ListFunctions"), "*", "ReadFunctions"),
                allow(NETWORK_READ, "*", "ReadSecurityGroups"),
                allow(["sts:AssumeRole"], a.roles(), "AssumeExecutionRoles"),
                put_metrics("AWS/Lambda", "EmitLambdaMetrics"),
            ]
        case Principal.SCHEDULER:
            watchdog = a.queue(a.topology.queue(Stage.WATCHDOG).name)
            return [allow(["sqs:SendMessage", "sqs:GetQueueUrl"], [watchdog], "TickWatchdog")]
        case Principal.ALARM_EVALUATOR:
            return [
                # The world's CloudWatch evaluates every alarm there is; GetMetricStatistics
                # names no resource on AWS.
                allow(
                    [
                        "cloudwatch:DescribeAlarms",
                        "cloudwatch:GetMetricStatistics",
                        "cloudwatch:SetAlarmState",
                    ],
                    "*",
                    "EvaluateAlarms",
                ),
                allow(["sns:Publish"], [a.topic(Topic.ALERTS)], "NotifyAlarms"),
            ]
    raise AssertionError(f"no policy for {principal}")


def policy_document(principal: Principal, a: Arns) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": policy_statements(principal, a)}


POLICY_NAME = "fleet-least-privilege"
