"""What the fleet guards on AWS: the demo `data-processor` (the embedded world's handler,
role, bucket and network, from the same spec) and, for every guarded function, the Errors
and Throttles alarms that notify incident-alerts."""

from __future__ import annotations

import json
from typing import Any, cast

import pulumi
import pulumi_aws as aws

from core.lambda_versions import LATEST, LIVE_ALIAS
from core.protection import PROTECTED_TAG, SAFE_ENV_TAG
from infra.identity import service_trust
from infra.schedule import rate
from workload.baseline import BASELINE_EGRESS
from workload.deploy import HANDLER_SOURCE, SAFE_ENVIRONMENT, SAMPLE_BATCH
from workload.spec import (
    BASELINE_POLICY_NAME,
    HANDLER,
    MEMORY_MB,
    RUNTIME,
    FunctionSpec,
    alarm_definitions,
)


def metric_alarm_args(definition: dict[str, Any]) -> dict[str, Any]:
    """put_metric_alarm arguments (the embedded world's) as MetricAlarm inputs."""
    return {
        "name": definition["AlarmName"],
        "alarm_description": definition["AlarmDescription"],
        "namespace": definition["Namespace"],
        "metric_name": definition["MetricName"],
        "dimensions": {d["Name"]: d["Value"] for d in definition["Dimensions"]},
        "statistic": definition["Statistic"],
        "period": definition["Period"],
        "evaluation_periods": definition["EvaluationPeriods"],
        "datapoints_to_alarm": definition["DatapointsToAlarm"],
        "threshold": definition["Threshold"],
        "comparison_operator": definition["ComparisonOperator"],
        "treat_missing_data": definition["TreatMissingData"],
        "alarm_actions": definition["AlarmActions"],
        "ok_actions": definition["OKActions"],
    }


class FunctionAlarms(pulumi.ComponentResource):
    """A guarded function's alarms → incident-alerts, where the supervisor listens."""

    def __init__(
        self,
        function_name: str,
        alerts_topic_arn: str,
        period_s: int,
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("incident-fleet:workload:FunctionAlarms", function_name, None, opts)
        for definition in alarm_definitions(function_name, alerts_topic_arn, period_s):
            aws.cloudwatch.MetricAlarm(
                definition["AlarmName"],
                **metric_alarm_args(definition),
                opts=pulumi.ResourceOptions(parent=self),
            )
        self.register_outputs({})


class DemoWorkload(pulumi.ComponentResource):
    """data-processor, deployed as the embedded world deploys it, run once a minute."""

    function: aws.lambda_.Function

    def __init__(
        self,
        name: str,
        spec: FunctionSpec,
        vpc_id: pulumi.Input[str],
        subnet_ids: list[pulumi.Output[str]],
        every_minutes: int,
        production: bool,
        log_retention_days: int,
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("incident-fleet:workload:DemoWorkload", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        bucket = aws.s3.Bucket("data", bucket=spec.bucket, force_destroy=not production, opts=child)
        aws.s3.BucketPublicAccessBlock(
            "data",
            bucket=bucket.id,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
            opts=child,
        )
        aws.s3.BucketObjectv2(
            "input-batch",
            bucket=bucket.id,
            key=spec.input_key,
            content=json.dumps(SAMPLE_BATCH),
            content_type="application/json",
            opts=child,
        )
        role = aws.iam.Role(
            "execution",
            name=spec.role_name,
            assume_role_policy=json.dumps(spec.trust_policy()),
            opts=child,
        )
        # The baseline, inline and alone: what `fleet chaos restore` and the resolver put back.
        baseline = aws.iam.RolePolicy(
            "baseline",
            role=role.id,
            name=BASELINE_POLICY_NAME,
            policy=json.dumps(spec.baseline_policy()),
            opts=child,
        )
        logs = aws.cloudwatch.LogGroup(
            "logs", name=spec.log_group, retention_in_days=log_retention_days, opts=child
        )
        group = aws.ec2.SecurityGroup(
            "network",
            name=spec.security_group_name,
            vpc_id=vpc_id,
            description=f"{spec.name}: HTTPS egress to AWS APIs only",
            egress=[
                aws.ec2.SecurityGroupEgressArgs(
                    protocol=rule["IpProtocol"],
                    from_port=rule["FromPort"],
                    to_port=rule["ToPort"],
                    cidr_blocks=[r["CidrIp"] for r in rule["IpRanges"]],
                    description=rule["IpRanges"][0]["Description"],
                )
                for rule in cast(list[dict[str, Any]], BASELINE_EGRESS)
            ],
            # The resolver may change the egress of tagged groups only.
            tags={PROTECTED_TAG: "true"},
            # Chaos and the resolver change this group's egress: Pulumi must not fight them.
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["egress"]),
        )
        self.function = aws.lambda_.Function(
            "function",
            name=spec.name,
            runtime=RUNTIME,
            handler=HANDLER,
            role=role.arn,
            code=pulumi.AssetArchive({HANDLER_SOURCE.name: pulumi.FileAsset(str(HANDLER_SOURCE))}),
            timeout=spec.timeout_s,
            memory_size=MEMORY_MB,
            # Each new package is published as a version of its own (version 1 at creation).
            publish=True,
            environment=aws.lambda_.FunctionEnvironmentArgs(variables=spec.environment()),
            vpc_config=aws.lambda_.FunctionVpcConfigArgs(
                subnet_ids=subnet_ids, security_group_ids=[group.id]
            ),
            tags={PROTECTED_TAG: "true", SAFE_ENV_TAG: " ".join(SAFE_ENVIRONMENT)},
            # Incidents change concurrency, timeout and environment; the fleet restores them.
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=[baseline, logs],
                ignore_changes=["environment", "timeout", "reservedConcurrentExecutions"],
            ),
        )
        # The schedule invokes the alias `live`, as the embedded world's runtime does; it
        # points to $LATEST. A deploy that pins a version moves it (and a rollback back).
        self.live = aws.lambda_.Alias(
            "live",
            name=LIVE_ALIAS,
            function_name=self.function.name,
            function_version=LATEST,
            description="what the schedule invokes",
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["functionVersion"]),
        )
        invoker = aws.iam.Role(
            "schedule",
            assume_role_policy=json.dumps(
                service_trust("scheduler.amazonaws.com", spec.account_id)
            ),
            opts=child,
        )
        aws.iam.RolePolicy(
            "schedule",
            role=invoker.id,
            policy=self.live.arn.apply(
                lambda arn: json.dumps(
                    {
                        "Version": "2012-10-17",
                        "Statement": [
                            {
                                "Effect": "Allow",
                                "Action": ["lambda:InvokeFunction"],
                                "Resource": [arn],
                            }
                        ],
                    }
                )
            ),
            opts=child,
        )
        aws.scheduler.Schedule(
            "runs",
            description=f"{spec.name}: one run a minute, as its real work would",
            schedule_expression=rate(every_minutes),
            flexible_time_window=aws.scheduler.ScheduleFlexibleTimeWindowArgs(mode="OFF"),
            target=aws.scheduler.ScheduleTargetArgs(
                arn=self.live.arn, role_arn=invoker.arn, input="{}"
            ),
            opts=child,
        )
        self.register_outputs({"function_arn": self.function.arn})
