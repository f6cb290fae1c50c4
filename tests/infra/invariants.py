"""What must hold of any fleet the Pulumi program deploys, checked on what it would send to
AWS (the recorded resource inputs). Each check returns its violations, one line each,
naming the resource: empty means it holds."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from queues.topology import build_topology, handler_deadline_s
from tests.infra.program import GENERATED_KEY, Program

QUEUE = "aws:sqs/queue:Queue"
QUEUE_POLICY = "aws:sqs/queuePolicy:QueuePolicy"
SUBSCRIPTION = "aws:sns/topicSubscription:TopicSubscription"
ROLE = "aws:iam/role:Role"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
TASK_DEFINITION = "aws:ecs/taskDefinition:TaskDefinition"
SERVICE = "aws:ecs/service:Service"
SECURITY_GROUP = "aws:ec2/securityGroup:SecurityGroup"
INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"

# Actions that only read (by IAM's own naming; CloudTrail's LookupEvents is "Read" in the
# Service Authorization Reference); everything else changes something.
READ_VERBS = ("Get", "List", "Describe", "Filter", "BatchGet", "Query", "Scan", "Head", "Lookup")
# A resource that names every resource of its kind: "*", or "…:security-group/*".
UNSCOPED = re.compile(r"^\*$|^arn:aws:[a-z0-9-]+:[^:]*:[^:]*:[a-z-]+[/:]\*$")
SECRET_NAME = re.compile(r"KEY|SECRET|TOKEN|PASSWORD", re.IGNORECASE)


def _queues(p: Program) -> dict[str, dict[str, Any]]:
    return {r.inputs["name"]: r.inputs for r in p.of_type(QUEUE)}


def _redrive(inputs: dict[str, Any]) -> dict[str, Any] | None:
    policy = inputs.get("redrivePolicy")
    return json.loads(policy) if policy else None


def _dlq_names(p: Program) -> set[str]:
    return {
        r["deadLetterTargetArn"].rsplit(":", 1)[1]
        for q in _queues(p).values()
        if (r := _redrive(q))
    }


def _source_queues(p: Program) -> dict[str, dict[str, Any]]:
    dlqs = _dlq_names(p)
    return {n: q for n, q in _queues(p).items() if n not in dlqs}


def every_queue_has_a_dlq(p: Program) -> list[str]:
    queues = _queues(p)
    out = []
    for name, q in _source_queues(p).items():
        redrive = _redrive(q)
        if redrive is None:
            out.append(f"queue {name}: no redrive policy, so no DLQ")
        elif redrive["deadLetterTargetArn"].rsplit(":", 1)[1] not in queues:
            out.append(f"queue {name}: its DLQ {redrive['deadLetterTargetArn']} is not deployed")
    return out


def max_receive_count_at_least_two(p: Program) -> list[str]:
    return [
        f"queue {name}: maxReceiveCount {r['maxReceiveCount']} < 2"
        for name, q in _source_queues(p).items()
        if (r := _redrive(q)) and int(r["maxReceiveCount"]) < 2
    ]


def dlq_outlives_its_source(p: Program) -> list[str]:
    queues = _queues(p)
    out = []
    for name, q in _source_queues(p).items():
        if not (r := _redrive(q)):
            continue
        dlq = queues.get(r["deadLetterTargetArn"].rsplit(":", 1)[1], {})
        kept, source_kept = dlq.get("messageRetentionSeconds"), q.get("messageRetentionSeconds")
        if kept is None or source_kept is None or kept <= source_kept:
            out.append(
                f"queue {name}: its DLQ keeps messages {kept}s, not longer than {source_kept}s"
            )
    return out


def queues_are_encrypted(p: Program) -> list[str]:
    return [
        f"queue {n}: no server-side encryption"
        for n, q in _queues(p).items()
        if not (q.get("sqsManagedSseEnabled") or q.get("kmsMasterKeyId"))
    ]


def visibility_above_handler_deadline(p: Program) -> list[str]:
    settings = p.config.fleet_settings()
    out = []
    for sq in build_topology(settings).queues:
        q = _queues(p).get(sq.name)
        deadline = handler_deadline_s(settings, sq.stage)
        visibility = (q or {}).get("visibilityTimeoutSeconds", 30)  # SQS's default
        if visibility <= deadline:
            out.append(
                f"queue {sq.name}: visibility timeout {visibility:g}s is not above its "
                f"handler's deadline {deadline:g}s"
            )
    return out


def subscriptions_have_queue_policies(p: Program) -> list[str]:
    # A queue URL ends with the queue's name.
    policies = {
        r.inputs["queueUrl"].rsplit("/", 1)[1]: r.json("policy") for r in p.of_type(QUEUE_POLICY)
    }
    out = []
    for sub in p.of_type(SUBSCRIPTION):
        if sub.inputs["protocol"] != "sqs":
            continue
        queue = sub.inputs["endpoint"].rsplit(":", 1)[1]
        policy = policies.get(queue)
        if not policy or policy.get("Version") != "2012-10-17":
            out.append(f"subscription {sub.name}: queue {queue} has no queue policy (2012-10-17)")
            continue
        if not any(
            _admits(s, sub.inputs["topic"], sub.inputs["endpoint"]) for s in policy["Statement"]
        ):
            out.append(f"subscription {sub.name}: queue {queue}'s policy does not admit the topic")
    return out


def _admits(statement: dict[str, Any], topic_arn: str, queue_arn: str) -> bool:
    condition = statement.get("Condition", {}).get("ArnEquals", {}).get("aws:SourceArn", [])
    sources = [condition] if isinstance(condition, str) else condition
    return (
        statement.get("Effect") == "Allow"
        and statement.get("Principal") == {"Service": "sns.amazonaws.com"}
        and statement.get("Action") in ("sqs:SendMessage", ["sqs:SendMessage"])
        and statement.get("Resource") == queue_arn
        and topic_arn in sources
    )


def _task_role_policies(p: Program) -> list[tuple[str, dict[str, Any]]]:
    task_roles = {
        r.id: r.name
        for r in p.of_type(ROLE)
        if "ecs-tasks.amazonaws.com" in json.dumps(r.json("assumeRolePolicy"))
        and r.name != "task-execution"
    }
    return [
        (task_roles[rp.inputs["role"]], rp.json("policy"))
        for rp in p.of_type(ROLE_POLICY)
        if rp.inputs["role"] in task_roles
    ]


def _is_write(action: str) -> bool:
    if action == "*" or action.endswith(":*"):
        return True
    verb = action.split(":", 1)[1]
    return not verb.startswith(READ_VERBS)


def no_task_role_writes_on_everything(p: Program) -> list[str]:
    out = []
    for role, policy in _task_role_policies(p):
        for s in policy["Statement"]:
            actions = [s["Action"]] if isinstance(s["Action"], str) else s["Action"]
            resources = [s["Resource"]] if isinstance(s["Resource"], str) else s["Resource"]
            writes = [a for a in actions if _is_write(a)]
            unscoped = [r for r in resources if UNSCOPED.match(r)]
            if s["Effect"] == "Allow" and writes and unscoped and not s.get("Condition"):
                out.append(f"task role {role}: {s.get('Sid')} allows {writes} on {unscoped}")
    return out


def mcp_admits_only_the_workers(p: Program) -> list[str]:
    groups = {r.name: r for r in p.of_type(SECURITY_GROUP)}
    mcp, workers = groups["mcp-servers"], groups["workers"]
    out = []
    if mcp.inputs.get("ingress"):
        out.append("security group mcp-servers: has inline ingress rules")
    for rule in p.of_type(INGRESS):
        if rule.inputs["securityGroupId"] != mcp.id:
            continue
        if rule.inputs.get("referencedSecurityGroupId") != workers.id or any(
            rule.inputs.get(k) for k in ("cidrIpv4", "cidrIpv6", "prefixListId")
        ):
            out.append(f"security group mcp-servers: rule {rule.name} admits more than the workers")
    for service in p.of_type(SERVICE):
        if service.inputs["networkConfiguration"].get("assignPublicIp"):
            out.append(f"service {service.name}: has a public IP")
    return out


def no_secret_in_plain_environment(p: Program) -> list[str]:
    out = []
    for td in p.of_type(TASK_DEFINITION):
        for container in td.json("containerDefinitions"):
            secrets = {s["name"] for s in container.get("secrets", [])}
            if "MCP_API_KEY" not in secrets:
                out.append(f"task {td.name}: MCP_API_KEY is not an ECS secret")
            for variable in container.get("environment", []):
                if SECRET_NAME.search(variable["name"]) or GENERATED_KEY in variable["value"]:
                    out.append(f"task {td.name}: {variable['name']} is a secret in plain text")
    for r in p.resources:
        if (
            r.type != "aws:secretsmanager/secretVersion:SecretVersion"
            and GENERATED_KEY in json.dumps(r.inputs, default=repr)
        ):
            out.append(f"{r.type} {r.name}: carries the MCP key")
    return out


CHECKS: dict[str, Callable[[Program], list[str]]] = {
    "every queue has a DLQ": every_queue_has_a_dlq,
    "maxReceiveCount >= 2": max_receive_count_at_least_two,
    "DLQ retention longer than its source": dlq_outlives_its_source,
    "queues encrypted": queues_are_encrypted,
    "visibility above the handler deadline": visibility_above_handler_deadline,
    "every SNS->SQS subscription has its queue policy": subscriptions_have_queue_policies,
    "no task role writes on *": no_task_role_writes_on_everything,
    "MCP reachable only from the workers": mcp_admits_only_the_workers,
    "no secret in a plain environment variable": no_secret_in_plain_environment,
}


def violations(p: Program) -> dict[str, list[str]]:
    return {name: found for name, check in CHECKS.items() if (found := check(p))}
