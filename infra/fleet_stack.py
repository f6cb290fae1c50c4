"""The whole fleet on AWS, one component per concern, from one StackConfig.

`build_fleet` is the program; `infra/__main__.py` only reads the stack's config and
exports what this returns. Tests run it under Pulumi's mocks.
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_aws as aws

from access.policies import Arns
from infra.compute import REPOSITORY_NAME, Compute, log_group_name
from infra.config import PROJECT, StackConfig
from infra.identity import TASK_PRINCIPALS, Identity
from infra.messaging import Messaging
from infra.network import Network
from infra.operations import Operations
from infra.schedule import WatchdogSchedule
from infra.secret_store import SecretStore
from infra.state import State
from infra.workload import DemoWorkload, FunctionAlarms
from queues.topology import Stage, Topic, build_topology
from workload.spec import FUNCTION_BASE_NAME, spec_for


def execution_role_names(functions: list[str]) -> list[str]:
    """The execution roles of the user's own functions (path and name), from Lambda."""
    names = []
    for name in functions:
        arn = aws.lambda_.get_function(function_name=name).role
        names.append(arn.split(":role/", 1)[1])
    return names


def build_fleet(config: StackConfig, opts: pulumi.ResourceOptions | None = None) -> dict[str, Any]:
    settings = config.fleet_settings()
    topology = build_topology(settings)
    roles = config.protected_roles or execution_role_names(config.protected_functions)
    arns = Arns(settings, topology, config.protected(roles))
    provider = aws.Provider(
        "aws",
        region=config.region,
        allowed_account_ids=[config.account_id],
        default_tags=aws.ProviderDefaultTagsArgs(tags={"project": PROJECT, "stack": config.stack}),
    )
    base = pulumi.ResourceOptions.merge(pulumi.ResourceOptions(providers={"aws": provider}), opts)

    messaging = Messaging("messaging", topology, opts=base)
    state = State("state", config.production, opts=base)
    secrets = SecretStore("secrets", config.production, opts=base)
    mcp_ports = [settings.mcp_supervisor_port, settings.mcp_resolver_port]
    network = Network(
        "network",
        cidr=config.vpc_cidr,
        zones=config.availability_zones,
        mcp_ports=mcp_ports,
        region=config.region,
        nat_per_zone=config.production,
        otlp_port=config.otlp_port(),
        opts=base,
    )
    log_group = log_group_name(config.stack)
    identity = Identity(
        "identity",
        arns,
        repository_arn=f"arn:aws:ecr:{config.region}:{config.account_id}:repository/{REPOSITORY_NAME}",
        log_group_arn=f"arn:aws:logs:{config.region}:{config.account_id}:log-group:{log_group}",
        secret_arn=secrets.mcp_api_key.arn,
        opts=base,
    )
    compute = Compute(
        "compute",
        stack=config.stack,
        settings=settings,
        topology=topology,
        image=config.image,
        production=config.production,
        cpu=config.task_cpu,
        memory_mb=config.task_memory_mb,
        worker_bounds=(config.worker_min_tasks, config.worker_max_tasks),
        backlog_per_task=config.backlog_per_task,
        mcp_tasks=config.mcp_tasks,
        log_retention_days=config.log_retention_days,
        subnet_ids=[s.id for s in network.private_subnets],
        workers_group_id=network.workers_group.id,
        mcp_group_id=network.mcp_group.id,
        task_role_arns={p: r.arn for p, r in identity.task_roles.items()},
        execution_role_arn=identity.execution_role.arn,
        secret_arn=secrets.mcp_api_key.arn,
        opts=pulumi.ResourceOptions.merge(
            base, pulumi.ResourceOptions(depends_on=[messaging, state])
        ),
    )
    WatchdogSchedule(
        "watchdog-schedule",
        every_minutes=config.watchdog_every_minutes,
        queue_arn=messaging.queues[topology.queue(Stage.WATCHDOG).name].arn,
        role_arn=identity.scheduler_role.arn,
        opts=base,
    )

    alerts_arn = arns.topic(Topic.ALERTS)
    outputs: dict[str, Any] = {}
    if config.demo_workload:
        demo = DemoWorkload(
            "demo-workload",
            spec_for(FUNCTION_BASE_NAME, settings),
            vpc_id=network.vpc.id,
            subnet_ids=[s.id for s in network.private_subnets],
            every_minutes=max(1, round(settings.target_interval_s / 60)),
            production=config.production,
            log_retention_days=config.log_retention_days,
            opts=base,
        )
        outputs["demoFunctionArn"] = demo.function.arn
    for function in config.function_names():
        FunctionAlarms(
            function,
            alerts_arn,
            settings.alarm_period_s,
            opts=pulumi.ResourceOptions.merge(base, pulumi.ResourceOptions(depends_on=[messaging])),
        )

    approvals = messaging.topics[Topic.APPROVALS]
    if config.pager_email:
        aws.sns.TopicSubscription(
            "pager-email",
            topic=approvals.arn,
            protocol="email",
            endpoint=config.pager_email,
            opts=pulumi.ResourceOptions.merge(base, pulumi.ResourceOptions(parent=messaging)),
        )
    operations = Operations(
        "operations",
        region=config.region,
        topology=topology,
        pager_topic_arn=approvals.arn,
        cluster_name=compute.cluster.name,
        services=list(TASK_PRINCIPALS),
        functions=config.function_names(),
        oldest_message_alarm_s=config.oldest_message_alarm_s,
        opts=base,
    )

    fleet_env = (
        f"export FLEET_TARGET=aws AWS_REGION={config.region} FLEET_ACCOUNT_ID={config.account_id}"
    )
    outputs.update(
        {
            # `eval "$(pulumi stack output fleetEnv)"`, then `fleet tail`, `fleet dlq list`, …
            "fleetEnv": fleet_env,
            "region": config.region,
            "accountId": config.account_id,
            "clusterName": compute.cluster.name,
            "imageRepository": compute.repository.repository_url,
            "mcpApiKeySecretArn": secrets.mcp_api_key.arn,
            "topicArns": {t.value: topic.arn for t, topic in messaging.topics.items()},
            "queueUrls": {name: q.url for name, q in messaging.queues.items()},
            "deadLetterQueueUrls": {n: q.url for n, q in messaging.dead_letter_queues.items()},
            "tableNames": {name: t.name for name, t in state.tables.items()},
            "dashboardUrl": operations.dashboard.dashboard_name.apply(
                lambda name: (
                    f"https://{config.region}.console.aws.amazon.com/cloudwatch/home"
                    f"?region={config.region}#dashboards/dashboard/{name}"
                )
            ),
        }
    )
    return outputs
