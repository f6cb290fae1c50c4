"""One task role per process kind, with the very policy documents the embedded world gives
each process's IAM user (`access.policies`): one definition, two users. Plus the roles
AWS itself needs: the tasks' execution role and EventBridge Scheduler's."""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pulumi_aws as aws

from access.policies import POLICY_NAME, Arns, policy_document
from core.principals import Principal

# Each ECS service (a process kind) and the principal whose policy its task role carries.
TASK_PRINCIPALS: dict[str, Principal] = {
    "supervisor": Principal.SUPERVISOR,
    "resolver": Principal.RESOLVER,
    "critic": Principal.CRITIC,
    "watchdog": Principal.WATCHDOG,
    "mcp-supervisor": Principal.MCP_SUPERVISOR,
    "mcp-resolver": Principal.MCP_RESOLVER,
}


def service_trust(service: str, account_id: str) -> dict[str, Any]:
    """Only this AWS service, acting for this account (no confused deputy)."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": service},
                "Action": "sts:AssumeRole",
                "Condition": {"StringEquals": {"aws:SourceAccount": account_id}},
            }
        ],
    }


def execution_policy(repository_arn: str, log_group_arn: str, secret_arn: str) -> dict[str, Any]:
    """What ECS needs to start a task: pull the image, write its logs, read its secret."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "EcrLogin",  # names no resource on AWS
                "Effect": "Allow",
                "Action": ["ecr:GetAuthorizationToken"],
                "Resource": ["*"],
            },
            {
                "Sid": "PullImage",
                "Effect": "Allow",
                "Action": [
                    "ecr:BatchCheckLayerAvailability",
                    "ecr:BatchGetImage",
                    "ecr:GetDownloadUrlForLayer",
                ],
                "Resource": [repository_arn],
            },
            {
                "Sid": "WriteTaskLogs",
                "Effect": "Allow",
                "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                "Resource": [log_group_arn, f"{log_group_arn}:*"],
            },
            {
                "Sid": "ReadMcpKey",
                "Effect": "Allow",
                "Action": ["secretsmanager:GetSecretValue"],
                "Resource": [secret_arn],
            },
        ],
    }


class Identity(pulumi.ComponentResource):
    task_roles: dict[str, aws.iam.Role]
    execution_role: aws.iam.Role
    scheduler_role: aws.iam.Role

    def __init__(
        self,
        name: str,
        arns: Arns,
        repository_arn: pulumi.Input[str],
        log_group_arn: pulumi.Input[str],
        secret_arn: pulumi.Input[str],
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("incident-fleet:identity:Identity", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        account = arns.account
        ecs_trust = json.dumps(service_trust("ecs-tasks.amazonaws.com", account))
        self.task_roles = {}
        for process, principal in TASK_PRINCIPALS.items():
            role = aws.iam.Role(
                f"{process}-task",
                description=f"incident-fleet {process}: the {principal.value} principal",
                assume_role_policy=ecs_trust,
                opts=child,
            )
            aws.iam.RolePolicy(
                f"{process}-task",
                role=role.id,
                name=POLICY_NAME,
                policy=json.dumps(policy_document(principal, arns)),
                opts=child,
            )
            self.task_roles[process] = role

        self.execution_role = aws.iam.Role(
            "task-execution",
            description="incident-fleet: ECS starts tasks with this (image, logs, secret)",
            assume_role_policy=ecs_trust,
            opts=child,
        )
        aws.iam.RolePolicy(
            "task-execution",
            role=self.execution_role.id,
            name="start-fleet-tasks",
            policy=pulumi.Output.all(repository_arn, log_group_arn, secret_arn).apply(
                lambda a: json.dumps(execution_policy(a[0], a[1], a[2]))
            ),
            opts=child,
        )

        self.scheduler_role = aws.iam.Role(
            "watchdog-schedule",
            description="incident-fleet: EventBridge Scheduler ticks the watchdog",
            assume_role_policy=json.dumps(service_trust("scheduler.amazonaws.com", account)),
            opts=child,
        )
        aws.iam.RolePolicy(
            "watchdog-schedule",
            role=self.scheduler_role.id,
            name=POLICY_NAME,
            policy=json.dumps(policy_document(Principal.SCHEDULER, arns)),
            opts=child,
        )
        self.register_outputs({"task_role_arns": {p: r.arn for p, r in self.task_roles.items()}})
