"""Deploy the protected workload from its spec: bucket, role, network, function, alarms.

The function is created with its package, version 1 is published, and the alias `live`
(through which it is invoked) points to `$LATEST`. Idempotent: resources that already
match are left alone and reported unchanged; code, configuration and alias that drifted
are put back. Used by the embedded world; infra/ deploys the same handler and baseline to
AWS.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from core.aws import Clients
from core.lambda_package import build_zip
from core.lambda_versions import LATEST, LIVE_ALIAS
from core.protection import PROTECTED_TAG, SAFE_ENV_TAG
from core.provisioning import ProvisionReport, outcome
from workload.baseline import (
    ensure_baseline_egress,
    restore_function_code,
    restore_function_config,
    restore_live_alias,
    restore_role_policies,
    security_group_id,
)
from workload.spec import HANDLER, MEMORY_MB, RUNTIME, FunctionSpec, alarm_definitions

HANDLER_SOURCE = Path(__file__).with_name("data_processor.py")
# Environment variables whose values the diagnostic tools may show (the rest is redacted).
SAFE_ENVIRONMENT = ("DATA_BUCKET", "DATA_PREFIX", "WORK_SECONDS", "ALERTS_TOPIC_ARN")
SAMPLE_BATCH = {"batch_id": "b-0001", "records": [3, 1, 4, 1, 5, 9, 2, 6]}


def handler_zip() -> bytes:
    """The function's package: the same source is always the same bytes (and CodeSha256)."""
    return build_zip({HANDLER_SOURCE.name: HANDLER_SOURCE.read_bytes()})


def default_network(ec2: Any) -> tuple[str, list[str]]:
    vpc = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]
    subnets = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc["VpcId"]]}])
    return vpc["VpcId"], sorted(s["SubnetId"] for s in subnets["Subnets"])[:2]


class WorkloadDeployer:
    def __init__(
        self,
        clients: Clients,
        report: ProvisionReport,
        alarm_period_s: int,
    ):
        self.c = clients
        self.report = report
        self.alarm_period_s = alarm_period_s

    def deploy(self, specs: list[FunctionSpec]) -> None:
        for spec in specs:
            self._bucket(spec)
            self._role(spec)
            self._log_group(spec)
            group_id = self._security_group(spec)
            self._function(spec, group_id)
            self._alarms(spec)

    def _bucket(self, spec: FunctionSpec) -> None:
        s3 = self.c("s3")
        try:
            s3.head_bucket(Bucket=spec.bucket)
        except s3.exceptions.ClientError:
            s3.create_bucket(
                Bucket=spec.bucket,
                CreateBucketConfiguration={"LocationConstraint": spec.region},
            )
            self.report.record("s3-bucket", spec.bucket, "created")
        key = spec.input_key
        try:
            s3.head_object(Bucket=spec.bucket, Key=key)
            self.report.record("s3-object", key, "unchanged")
        except s3.exceptions.ClientError:
            s3.put_object(Bucket=spec.bucket, Key=key, Body=json.dumps(SAMPLE_BATCH).encode())
            self.report.record("s3-object", key, "created")

    def _role(self, spec: FunctionSpec) -> None:
        iam = self.c("iam")
        trust = spec.trust_policy()
        try:
            iam.get_role(RoleName=spec.role_name)
            created = False
        except iam.exceptions.NoSuchEntityException:
            iam.create_role(RoleName=spec.role_name, AssumeRolePolicyDocument=json.dumps(trust))
            created = True
        changed = bool(restore_role_policies(iam, spec))
        self.report.record("iam-role", spec.role_name, outcome(created, changed))

    def _log_group(self, spec: FunctionSpec) -> None:
        logs = self.c("logs")
        found = logs.describe_log_groups(logGroupNamePrefix=spec.log_group)["logGroups"]
        if any(g["logGroupName"] == spec.log_group for g in found):
            self.report.record("log-group", spec.log_group, "unchanged")
        else:
            logs.create_log_group(logGroupName=spec.log_group)
            self.report.record("log-group", spec.log_group, "created")

    def _security_group(self, spec: FunctionSpec) -> str:
        ec2 = self.c("ec2")
        group_id = security_group_id(ec2, spec)
        created = group_id is None
        if group_id is None:
            vpc_id, _ = default_network(ec2)
            group_id = ec2.create_security_group(
                GroupName=spec.security_group_name,
                Description=f"{spec.name}: HTTPS egress to AWS APIs only",
                VpcId=vpc_id,
                # The resolver may change the egress of tagged groups only.
                TagSpecifications=[
                    {
                        "ResourceType": "security-group",
                        "Tags": [{"Key": PROTECTED_TAG, "Value": "true"}],
                    }
                ],
            )["GroupId"]
        changed = ensure_baseline_egress(ec2, group_id)
        self.report.record("security-group", spec.security_group_name, outcome(created, changed))
        return group_id

    def _function(self, spec: FunctionSpec, group_id: str) -> None:
        lam = self.c("lambda")
        try:
            lam.get_function_configuration(FunctionName=spec.name)
        except lam.exceptions.ResourceNotFoundException:
            _, subnets = default_network(self.c("ec2"))
            lam.create_function(
                FunctionName=spec.name,
                Runtime=RUNTIME,
                Role=spec.role_arn,
                Handler=HANDLER,
                Code={"ZipFile": handler_zip()},
                Timeout=spec.timeout_s,
                MemorySize=MEMORY_MB,
                Environment={"Variables": spec.environment()},
                VpcConfig={"SubnetIds": subnets, "SecurityGroupIds": [group_id]},
                Tags={PROTECTED_TAG: "true", SAFE_ENV_TAG: " ".join(SAFE_ENVIRONMENT)},
            )
            lam.publish_version(FunctionName=spec.name, Description="as deployed")
            lam.create_alias(
                FunctionName=spec.name,
                Name=LIVE_ALIAS,
                FunctionVersion=LATEST,
                Description="what the schedule invokes",
            )
            self.report.record("lambda-function", spec.name, "created")
            return
        changed = restore_function_code(lam, spec.name, handler_zip())
        changed += restore_function_config(self.c, spec)
        changed += restore_live_alias(lam, spec.name, LATEST)
        self.report.record("lambda-function", spec.name, "updated" if changed else "unchanged")

    def _alarms(self, spec: FunctionSpec) -> None:
        cw = self.c("cloudwatch")
        definitions = alarm_definitions(spec.name, spec.alerts_topic_arn, self.alarm_period_s)
        existing = {
            a["AlarmName"]
            for a in cw.describe_alarms(AlarmNames=[d["AlarmName"] for d in definitions])[
                "MetricAlarms"
            ]
        }
        for definition in definitions:
            alarm_name = definition["AlarmName"]
            if alarm_name in existing:
                self.report.record("cloudwatch-alarm", alarm_name, "unchanged")
                continue
            cw.put_metric_alarm(**definition)
            self.report.record("cloudwatch-alarm", alarm_name, "created")
