"""The Pulumi program under Pulumi's mocks: it deploys the topology spec exactly, keeps every
invariant, and a deliberately broken variant is caught by the very checks that pass here."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pulumi
import pytest
from pydantic import ValidationError

from access.policies import Arns, policy_document
from core.shared_bucket import RATE_LIMITS
from fleet.cli import parse_arguments
from incidents.tables import TABLES
from infra.config import StackConfig, stack_config
from infra.identity import TASK_PRINCIPALS
from queues.events import parse_body
from queues.topology import Stage, Topic, build_topology
from tests.infra.invariants import (
    QUEUE,
    QUEUE_POLICY,
    ROLE,
    ROLE_POLICY,
    SERVICE,
    SUBSCRIPTION,
    TASK_DEFINITION,
    violations,
)
from tests.infra.program import ACCOUNT, Program, deploy, stack

TABLE = "aws:dynamodb/table:Table"


@pytest.fixture(scope="module")
def program() -> Program:
    return deploy(stack())


def _containers(p: Program) -> dict[str, dict[str, Any]]:
    return {td.name: td.json("containerDefinitions")[0] for td in p.of_type(TASK_DEFINITION)}


def test_queues_dlqs_redrive_and_subscriptions_are_exactly_the_topology_spec(
    program: Program,
) -> None:
    spec = build_topology(program.config.fleet_settings())
    queues = {r.inputs["name"]: r.inputs for r in program.of_type(QUEUE)}
    assert set(queues) == {n for q in spec.queues for n in (q.name, q.dlq_name)}
    allow = {
        r.inputs["queueUrl"].rsplit("/", 1)[1]: json.loads(r.inputs["redriveAllowPolicy"])
        for r in program.of_type("aws:sqs/redriveAllowPolicy:RedriveAllowPolicy")
    }
    for q in spec.queues:
        source, dlq = queues[q.name], queues[q.dlq_name]
        assert source["visibilityTimeoutSeconds"] == q.visibility_timeout_s
        assert source["messageRetentionSeconds"] == q.retention_s
        assert json.loads(source["redrivePolicy"]) == {
            "deadLetterTargetArn": f"arn:aws:sqs:ca-central-1:{ACCOUNT}:{q.dlq_name}",
            "maxReceiveCount": q.max_receive_count,
        }
        assert dlq["messageRetentionSeconds"] == q.dlq_retention_s
        assert "redrivePolicy" not in dlq
        assert allow[q.dlq_name] == {
            "redrivePermission": "byQueue",
            "sourceQueueArns": [f"arn:aws:sqs:ca-central-1:{ACCOUNT}:{q.name}"],
        }

    deployed = {
        (
            s.inputs["topic"].rsplit(":", 1)[1],
            s.inputs["endpoint"].rsplit(":", 1)[1],
            s.inputs.get("filterPolicy"),
        )
        for s in program.of_type(SUBSCRIPTION)
    }
    wanted = {
        (
            sub.topic.value,
            q.name,
            json.dumps(sub.filter_policy()) if sub.filter_policy() else None,
        )
        for q in spec.queues
        for sub in q.subscriptions
    }
    assert deployed == wanted
    assert {r.inputs["name"] for r in program.of_type("aws:sns/topic:Topic")} == {
        t.value for t in Topic
    }


def test_every_invariant_holds(program: Program) -> None:
    assert violations(program) == {}


def test_task_roles_carry_the_policies_the_embedded_world_gives_each_process(
    program: Program,
) -> None:
    settings = program.config.fleet_settings()
    arns = Arns(settings, build_topology(settings), program.config.protected([]))
    roles = {r.id: r.name for r in program.of_type(ROLE)}
    policies = {roles[rp.inputs["role"]]: rp.json("policy") for rp in program.of_type(ROLE_POLICY)}
    for process, principal in TASK_PRINCIPALS.items():
        assert policies[f"{process}-task"] == policy_document(principal, arns), process
    critic = json.dumps(policies["critic-task"])
    for write in ("iam:Put", "lambda:Put", "lambda:Update", "ec2:Authorize", "ec2:Revoke"):
        assert write not in critic
    # Bedrock only on the configured model, and only for the stages with an agent.
    invoke = {
        process: [s["Resource"] for s in p["Statement"] if "bedrock:InvokeModel" in s["Action"]]
        for process, p in policies.items()
    }
    assert invoke["supervisor-task"] == [
        [
            "arn:aws:bedrock:*::foundation-model/amazon.nova-2-lite-v1:0",
            f"arn:aws:bedrock:ca-central-1:{ACCOUNT}:inference-profile/us.amazon.nova-2-lite-v1:0",
        ]
    ]
    assert invoke["watchdog-task"] == invoke["mcp-supervisor-task"] == []


def test_one_image_runs_every_process_by_its_command(program: Program) -> None:
    containers = _containers(program)
    assert set(containers) == set(TASK_PRINCIPALS)
    assert len({c["image"] for c in containers.values()}) == 1
    for process, c in containers.items():
        parsed = parse_arguments(c["command"])  # a real `fleet` subcommand
        assert parsed.command in ("worker", "mcp")
        assert c["user"] != "0" and c["readonlyRootFilesystem"]
        # Fargate sends SIGKILL after stopTimeout: the worker's drain must fit before it.
        assert c["stopTimeout"] > program.config.fleet_settings().worker_grace_s
        env = {v["name"]: v["value"] for v in c["environment"]}
        assert env["FLEET_TARGET"] == "aws" and env["FLEET_MODEL"] == "bedrock", process


def test_tasks_send_spans_to_the_stacks_otlp_endpoint_and_trace_nothing_without_one(
    program: Program,
) -> None:
    for c in _containers(program).values():
        env = {v["name"]: v["value"] for v in c["environment"]}
        assert env["OTEL_SDK_DISABLED"] == "true" and "OTEL_EXPORTER_OTLP_ENDPOINT" not in env
    collector = "http://otel-collector:4318"
    traced = deploy(stack(settings={"otel_exporter_otlp_endpoint": collector}))
    for c in _containers(traced).values():
        env = {v["name"]: v["value"] for v in c["environment"]}
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == collector and "OTEL_SDK_DISABLED" not in env
    # The tasks may reach it: OTLP/HTTP's port is open outward from every task.
    out = [
        r.inputs for r in traced.of_type("aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule")
    ]
    assert sum(1 for r in out if r["fromPort"] == r["toPort"] == 4318) == 2
    closed = program.of_type("aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule")
    assert not [r for r in closed if r.inputs["fromPort"] == 4318]


def test_the_mcp_servers_are_named_by_service_connect_and_the_workers_find_them(
    program: Program,
) -> None:
    services = {s.name: s.inputs for s in program.of_type(SERVICE)}
    env = {v["name"]: v["value"] for v in _containers(program)["supervisor"]["environment"]}
    for server, port in (("mcp-supervisor", 8080), ("mcp-resolver", 8081)):
        (served,) = services[server]["serviceConnectConfiguration"]["services"]
        assert served["clientAlias"] == [{"dnsName": server, "port": port}]
        assert f"{server}:{port}" in json.loads(env["FLEET_MCP_ALLOWED_HOSTS"])
    assert env["FLEET_MCP_SUPERVISOR_URL"] == "http://mcp-supervisor:8080"
    assert services["supervisor"]["serviceConnectConfiguration"]["enabled"]


def test_worker_services_scale_on_backlog_per_task_between_the_configured_bounds() -> None:
    p = deploy(stack(worker_min_tasks=2, worker_max_tasks=7, backlog_per_task=5))
    targets = {t.name: t.inputs for t in p.of_type("aws:appautoscaling/target:Target")}
    policies = {
        r.name: r.inputs["targetTrackingScalingPolicyConfiguration"]
        for r in p.of_type("aws:appautoscaling/policy:Policy")
    }
    assert set(targets) == {s.value for s in Stage}
    for stage in Stage:
        assert (targets[stage.value]["minCapacity"], targets[stage.value]["maxCapacity"]) == (2, 7)
        config = policies[f"{stage.value}-backlog"]
        assert config["targetValue"] == 5
        metrics = {m["id"]: m for m in config["customizedMetricSpecification"]["metrics"]}
        assert metrics["backlog_per_task"]["expression"] == "visible / tasks"
        queue = metrics["visible"]["metricStat"]["metric"]["dimensions"]
        assert queue == [{"name": "QueueName", "value": stage.value}]


def test_the_watchdog_schedule_sends_a_tick_the_watchdog_accepts(program: Program) -> None:
    (schedule,) = [
        s for s in program.of_type("aws:scheduler/schedule:Schedule") if s.name == "watchdog-tick"
    ]
    target = schedule.inputs["target"]
    assert target["arn"].endswith(":watchdog")
    # What EventBridge Scheduler sends, with its context attributes filled in.
    body = (
        target["input"]
        .replace("<aws.scheduler.execution-id>", "3f1c-exec")
        .replace("<aws.scheduler.scheduled-time>", "2026-11-25T10:00:00Z")
    )
    event = parse_body(body, "m-1")
    assert event.event_type == "watchdog.tick" and event.event_id == "tick:3f1c-exec"


def test_the_workload_schedule_invokes_the_alias_live_on_latest(program: Program) -> None:
    alias = program.named("aws:lambda/alias:Alias", "live")
    assert alias.inputs["name"] == "live" and alias.inputs["functionVersion"] == "$LATEST"
    live = f"function:{alias.inputs['functionName']}:live"
    (runs,) = [s for s in program.of_type("aws:scheduler/schedule:Schedule") if s.name == "runs"]
    assert runs.inputs["target"]["arn"].endswith(live)
    invoke = json.loads(program.named(ROLE_POLICY, "schedule").inputs["policy"])
    assert [s["Resource"] for s in invoke["Statement"]] == [[runs.inputs["target"]["arn"]]]


def test_state_and_secret_are_kept_on_a_production_stack() -> None:
    dev, prod = deploy(stack()), deploy(stack(production=True))
    for p, protected in ((dev, False), (prod, True)):
        tables = p.of_type(TABLE)
        assert {t.inputs["name"] for t in tables} == {t.name for t in (*TABLES, RATE_LIMITS)}
        for t in tables:
            assert t.inputs["deletionProtectionEnabled"] is protected
            assert t.inputs["pointInTimeRecovery"] == {"enabled": True}
            assert t.inputs["serverSideEncryption"] == {"enabled": True}
            assert t.inputs["billingMode"] == "PAY_PER_REQUEST"
    (secret,) = prod.of_type("aws:secretsmanager/secret:Secret")
    assert secret.inputs["recoveryWindowInDays"] == 7
    # One NAT gateway per zone in production (a zone's outage leaves the others out).
    assert len(prod.of_type("aws:ec2/natGateway:NatGateway")) == 2
    assert len(dev.of_type("aws:ec2/natGateway:NatGateway")) == 1


def test_with_the_demo_off_the_fleet_guards_the_named_functions_and_their_roles() -> None:
    p = deploy(stack(demo_workload=False, protected_functions=["orders-api"]))
    assert p.of_type("aws:lambda/function:Function") == []
    alarms = {
        a.inputs["name"]: a.inputs for a in p.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")
    }
    assert alarms["orders-api-errors"]["alarmActions"] == [
        f"arn:aws:sns:ca-central-1:{ACCOUNT}:incident-alerts"
    ]
    assert not any(name.startswith("data-processor") for name in alarms)
    roles = {r.id: r.name for r in p.of_type(ROLE)}
    resolver = next(
        rp.json("policy")
        for rp in p.of_type(ROLE_POLICY)
        if roles[rp.inputs["role"]] == "resolver-task"
    )
    text = json.dumps(resolver)
    assert "function:orders-api" in text
    assert "role/service-role/orders-api-role" in text  # looked up from Lambda
    assert "data-processor" not in text


def test_stack_config_reads_camel_case_keys_and_refuses_what_would_guard_nothing() -> None:
    config = stack_config(
        {"workerMaxTasks": 6, "settings": {"require_human_approval": True}},
        "dev",
        "ca-central-1",
        ACCOUNT,
    )
    assert config.worker_max_tasks == 6
    assert config.fleet_settings().require_human_approval is True
    with pytest.raises(ValidationError, match="guard nothing"):
        StackConfig(stack="x", region="ca-central-1", account_id=ACCOUNT, demo_workload=False)
    with pytest.raises(ValidationError):
        stack_config({"wokerMaxTasks": 6}, "dev", "ca-central-1", ACCOUNT)  # a typo is an error
    with pytest.raises(ValidationError, match="unknown fleet settings"):
        stack_config({"settings": {"require_human_aproval": True}}, "dev", "x", ACCOUNT)


def test_the_deploying_shell_does_not_leak_into_the_tasks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEET_MODEL", "offline")
    monkeypatch.setenv("FLEET_REQUIRE_HUMAN_APPROVAL", "true")
    settings = stack().fleet_settings()
    assert settings.model == "bedrock" and settings.require_human_approval is False


# ---- a deliberately broken program: each mistake, and the check that catches it ----

Transformation = Callable[[pulumi.ResourceTransformationArgs], Any]


def _change(type_: str, name: str, **props: Any) -> Transformation:
    def transform(args: pulumi.ResourceTransformationArgs) -> Any:
        if args.type_ == type_ and args.name == name:
            changed = {**args.props}
            for key, value in props.items():
                changed[key] = value(changed[key]) if callable(value) else value
            return pulumi.ResourceTransformationResult(changed, args.opts)
        return None

    return transform


def _json(edit: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Edit a JSON document input (maybe still an Output)."""

    def apply(text: str) -> str:
        return json.dumps(edit(json.loads(text)))

    return lambda value: pulumi.Output.from_input(value).apply(apply)


def _write_on_everything(policy: dict[str, Any]) -> dict[str, Any]:
    policy["Statement"].append(
        {"Effect": "Allow", "Action": ["lambda:UpdateFunctionConfiguration"], "Resource": ["*"]}
    )
    return policy


def _plain_key(containers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    containers[0]["secrets"] = []
    containers[0]["environment"].append({"name": "MCP_API_KEY", "value": "hunter2"})
    return containers


BROKEN: dict[str, tuple[Transformation, str, str]] = {
    "a stage queue without its DLQ": (
        _change(QUEUE, "critic", redrive_policy=None),
        "every queue has a DLQ",
        "queue critic",
    ),
    "one receive before dead-lettering": (
        _change(QUEUE, "resolver", redrive_policy=_json(lambda r: {**r, "maxReceiveCount": 1})),
        "maxReceiveCount >= 2",
        "queue resolver",
    ),
    "a DLQ that forgets first": (
        _change(QUEUE, "supervisor-dlq", message_retention_seconds=60),
        "DLQ retention longer than its source",
        "queue supervisor",
    ),
    "an unencrypted queue": (
        _change(QUEUE, "watchdog-dlq", sqs_managed_sse_enabled=False),
        "queues encrypted",
        "queue watchdog-dlq",
    ),
    "a visibility shorter than the resolver's work": (
        _change(QUEUE, "resolver", visibility_timeout_seconds=30),
        "visibility above the handler deadline",
        "queue resolver",
    ),
    "a queue policy that forgets the topic": (
        _change(
            QUEUE_POLICY,
            "critic",
            policy=_json(lambda p: {**p, "Statement": [{**p["Statement"][0], "Condition": {}}]}),
        ),
        "every SNS->SQS subscription has its queue policy",
        "incident-events-to-critic",
    ),
    "a task role that may change any function": (
        _change(ROLE_POLICY, "critic-task", policy=_json(_write_on_everything)),
        "no task role writes on *",
        "task role critic-task",
    ),
    "an MCP server open to the VPC": (
        _change(
            "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule",
            "mcp-in-8080",
            referenced_security_group_id=None,
            cidr_ipv4="10.0.0.0/8",
        ),
        "MCP reachable only from the workers",
        "mcp-in-8080",
    ),
    "the MCP key as a plain variable": (
        _change(TASK_DEFINITION, "resolver", container_definitions=_json(_plain_key)),
        "no secret in a plain environment variable",
        "task resolver",
    ),
}


@pytest.mark.parametrize("mistake", sorted(BROKEN))
def test_a_broken_program_is_caught_by_its_check(mistake: str) -> None:
    transformation, check, names = BROKEN[mistake]
    broken = deploy(stack(), pulumi.ResourceOptions(transformations=[transformation]))
    found = violations(broken)
    assert list(found) == [check], found
    assert any(names in line for line in found[check]), found[check]


def test_the_example_stack_file_is_a_valid_fleet() -> None:
    import yaml

    from tests.infra.program import PROJECT_ROOT

    example = yaml.safe_load((PROJECT_ROOT / "Pulumi.dev.yaml").read_text())["config"]
    keys = {k.split(":", 1)[1]: v for k, v in example.items() if k.startswith("incident-fleet:")}
    config = stack_config(keys, "dev", example["aws:region"], ACCOUNT)
    assert violations(deploy(config)) == {}


def test_operators_are_paged_on_dead_letters_and_stalled_stages_and_get_a_dashboard(
    program: Program,
) -> None:
    spec = build_topology(program.config.fleet_settings())
    alarms = {
        a.inputs["dimensions"]["QueueName"] + ":" + a.inputs["metricName"]: a.inputs
        for a in program.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")
        if a.inputs["namespace"] == "AWS/SQS"
    }
    approvals = f"arn:aws:sns:ca-central-1:{ACCOUNT}:incident-approvals"
    for q in spec.queues:
        depth = alarms[f"{q.dlq_name}:ApproximateNumberOfMessagesVisible"]
        assert depth["threshold"] == 0 and depth["comparisonOperator"] == "GreaterThanThreshold"
        assert depth["alarmActions"] == [approvals]
        oldest = alarms[f"{q.name}:ApproximateAgeOfOldestMessage"]
        assert oldest["threshold"] == program.config.oldest_message_alarm_s
    (dashboard,) = program.of_type("aws:cloudwatch/dashboard:Dashboard")
    shown = json.dumps(json.loads(dashboard.inputs["dashboardBody"]))
    for q in spec.queues:
        assert f'"{q.name}"' in shown and f'"{q.dlq_name}"' in shown
    assert '"data-processor"' in shown
