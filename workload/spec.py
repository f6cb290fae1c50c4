"""What a healthy `data-processor` looks like: names, role policy, network, configuration.

This is the known-good definition the world deploys and `fleet chaos restore` puts back.
Each copy (`--targets N`) gets its own role, bucket prefix, log group and alarms.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel

from core.settings import Settings

FUNCTION_BASE_NAME = "data-processor"
HANDLER = "data_processor.handler"
RUNTIME: Literal["python3.12"] = "python3.12"
MEMORY_MB = 256
BASELINE_POLICY_NAME = "data-processor-baseline"
HTTPS_PORT = 443


class PermissionTarget(StrEnum):
    """The groups of permissions chaos can revoke or deny, each one baseline statement."""

    S3 = "s3"
    LOGS = "logs"
    METRICS = "metrics"
    SNS = "sns"


# The statement id of each group in the baseline policy, and its actions.
PERMISSION_ACTIONS: dict[PermissionTarget, tuple[str, ...]] = {
    PermissionTarget.S3: ("s3:GetObject", "s3:PutObject"),
    PermissionTarget.LOGS: ("logs:CreateLogStream", "logs:PutLogEvents"),
    PermissionTarget.METRICS: ("cloudwatch:PutMetricData",),
    PermissionTarget.SNS: ("sns:Publish",),
}
STATEMENT_IDS: dict[PermissionTarget, str] = {
    PermissionTarget.S3: "ReadInputWriteOutput",
    PermissionTarget.LOGS: "WriteOwnLogs",
    PermissionTarget.METRICS: "PutCustomMetrics",
    PermissionTarget.SNS: "ReportFailures",
}
# The namespace the handler puts its own metrics in (workload/data_processor.py).
METRICS_NAMESPACE = "DataProcessor"
VPC_ACCESS_SID = "AttachToVpc"
VPC_ACCESS_ACTIONS = (
    "ec2:CreateNetworkInterface",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DeleteNetworkInterface",
    "ec2:AssignPrivateIpAddresses",
    "ec2:UnassignPrivateIpAddresses",
)


class FunctionSpec(BaseModel, frozen=True):
    """One protected function and everything its baseline fixes."""

    name: str
    account_id: str
    bucket: str
    prefix: str
    region: str
    alerts_topic_arn: str
    work_seconds: float
    timeout_s: int

    @property
    def role_name(self) -> str:
        return f"{self.name}-role"

    @property
    def role_arn(self) -> str:
        return f"arn:aws:iam::{self.account_id}:role/{self.role_name}"

    @property
    def function_arn(self) -> str:
        return f"arn:aws:lambda:{self.region}:{self.account_id}:function:{self.name}"

    @property
    def input_key(self) -> str:
        """The batch each run reads (the handler's `{DATA_PREFIX}input/batch.json`)."""
        return f"{self.prefix}input/batch.json"

    @property
    def log_group(self) -> str:
        return f"/aws/lambda/{self.name}"

    @property
    def security_group_name(self) -> str:
        return f"{self.name}-sg"

    def environment(self) -> dict[str, str]:
        return {
            "DATA_BUCKET": self.bucket,
            "DATA_PREFIX": self.prefix,
            "ALERTS_TOPIC_ARN": self.alerts_topic_arn,
            "WORK_SECONDS": f"{self.work_seconds:g}",
        }

    def baseline_policy(self) -> dict[str, Any]:
        """Exactly what the handler needs, on exactly its own resources."""
        resources = {
            PermissionTarget.S3: [f"arn:aws:s3:::{self.bucket}/{self.prefix}*"],
            PermissionTarget.LOGS: [
                f"arn:aws:logs:{self.region}:{self.account_id}:log-group:{self.log_group}:*"
            ],
            # PutMetricData names no resource on AWS ("*" is the only one it takes): the
            # namespace condition below is what narrows it, to the handler's own.
            PermissionTarget.METRICS: ["*"],
            PermissionTarget.SNS: [self.alerts_topic_arn],
        }
        conditions = {
            PermissionTarget.METRICS: {"StringEquals": {"cloudwatch:namespace": METRICS_NAMESPACE}},
        }
        statements = [
            {
                "Sid": STATEMENT_IDS[t],
                "Effect": "Allow",
                "Action": list(PERMISSION_ACTIONS[t]),
                "Resource": resources[t],
                **({"Condition": conditions[t]} if t in conditions else {}),
            }
            for t in PermissionTarget
        ]
        # Lambda attaches a function in a VPC through network interfaces it manages with the
        # execution role (these EC2 actions name no resource on AWS).
        statements.append(
            {
                "Sid": VPC_ACCESS_SID,
                "Effect": "Allow",
                "Action": list(VPC_ACCESS_ACTIONS),
                "Resource": ["*"],
            }
        )
        return {"Version": "2012-10-17", "Statement": statements}

    def trust_policy(self) -> dict[str, Any]:
        """Lambda, and nothing else, may assume the role (the embedded world's runtime
        assumes it as the Lambda service: emulation/lambda_roles.py)."""
        principal = {"Service": "lambda.amazonaws.com"}
        return {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Principal": principal, "Action": "sts:AssumeRole"}],
        }


def alarm_definitions(
    function_name: str, alerts_topic_arn: str, period_s: int
) -> list[dict[str, Any]]:
    """A protected function's alarms (Errors, Throttles) as put_metric_alarm arguments: both
    notify incident-alerts on ALARM and on OK. The embedded world and infra/ both use these."""
    return [
        {
            "AlarmName": f"{function_name}-{metric.lower()}",
            "AlarmDescription": f"{function_name} reported {metric.lower()}",
            "Namespace": "AWS/Lambda",
            "MetricName": metric,
            "Dimensions": [{"Name": "FunctionName", "Value": function_name}],
            "Statistic": "Sum",
            "Period": period_s,
            "EvaluationPeriods": 1,
            "DatapointsToAlarm": 1,
            "Threshold": 1.0,
            "ComparisonOperator": "GreaterThanOrEqualToThreshold",
            "TreatMissingData": "notBreaching",
            "AlarmActions": [alerts_topic_arn],
            "OKActions": [alerts_topic_arn],
        }
        for metric in ("Errors", "Throttles")
    ]


def function_name(index: int) -> str:
    return FUNCTION_BASE_NAME if index == 1 else f"{FUNCTION_BASE_NAME}-{index}"


def data_bucket(settings: Settings) -> str:
    return f"{FUNCTION_BASE_NAME}-data-{settings.account_id}"


def alerts_topic_arn(settings: Settings) -> str:
    return f"arn:aws:sns:{settings.region}:{settings.account_id}:incident-alerts"


def spec_for(name: str, settings: Settings) -> FunctionSpec:
    return FunctionSpec(
        name=name,
        account_id=settings.account_id,
        bucket=data_bucket(settings),
        prefix=f"{name}/",
        region=settings.region,
        alerts_topic_arn=alerts_topic_arn(settings),
        work_seconds=settings.workload_work_s,
        timeout_s=settings.workload_timeout_s,
    )


def function_specs(settings: Settings, count: int | None = None) -> list[FunctionSpec]:
    n = count if count is not None else settings.target_count
    return [spec_for(function_name(i), settings) for i in range(1, n + 1)]
