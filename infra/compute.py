"""ECS on Fargate: one service per worker kind and per MCP server, all from one image (the
command picks the process), in private subnets. The MCP servers are reachable through ECS
Service Connect under their own names; the workers scale on backlog per task."""

from __future__ import annotations

import functools
import json
from typing import Any, cast

import pulumi
import pulumi_aws as aws

from core.settings import Settings
from queues.topology import Stage, TopologySpec

# Fargate allows at most 120 s between SIGTERM and SIGKILL.
FARGATE_MAX_STOP_TIMEOUT_S = 120
# Room after the worker's drain to flush its outbox and counters before SIGKILL.
STOP_MARGIN_S = 15
REPOSITORY_NAME = "incident-fleet"
CLUSTER_NAME = "incident-fleet"
SERVICE_CONNECT_NAMESPACE = "incident-fleet.internal"
UID = "10001"  # the image's own non-root user


def log_group_name(stack: str) -> str:
    return f"/incident-fleet/{stack}"


def stop_timeout_s(settings: Settings) -> int:
    wanted = int(settings.worker_grace_s) + STOP_MARGIN_S
    if wanted > FARGATE_MAX_STOP_TIMEOUT_S:
        raise ValueError(
            f"worker_grace_s {settings.worker_grace_s:g}s leaves no time before Fargate's "
            f"{FARGATE_MAX_STOP_TIMEOUT_S}s stop limit; lower it"
        )
    return wanted


def container_definition(
    process: str,
    image: str,
    command: list[str],
    environment: dict[str, str],
    secret_arn: str,
    log_group: str,
    region: str,
    stop_timeout: int,
    port: int | None,
) -> dict[str, Any]:
    definition: dict[str, Any] = {
        "name": process,
        "image": image,
        "command": command,
        "essential": True,
        "user": UID,
        "readonlyRootFilesystem": True,
        "mountPoints": [{"sourceVolume": "tmp", "containerPath": "/tmp"}],
        "stopTimeout": stop_timeout,
        "environment": [{"name": k, "value": v} for k, v in sorted(environment.items())],
        # Resolved by ECS at start from Secrets Manager; never a plain variable.
        "secrets": [{"name": "MCP_API_KEY", "valueFrom": secret_arn}],
        "logConfiguration": {
            "logDriver": "awslogs",
            "options": {
                "awslogs-group": log_group,
                "awslogs-region": region,
                "awslogs-stream-prefix": process,
            },
        },
    }
    if port is not None:
        definition["portMappings"] = [
            {"name": "mcp", "containerPort": port, "protocol": "tcp", "appProtocol": "http"}
        ]
        probe = (
            "import urllib.request; "
            f"urllib.request.urlopen('http://127.0.0.1:{port}/health', timeout=3)"
        )
        definition["healthCheck"] = {
            "command": ["CMD", "python", "-c", probe],
            "interval": 15,
            "timeout": 5,
            "retries": 3,
            "startPeriod": 20,
        }
    return definition


def definitions_json(image_and_secret: list[str], **definition: Any) -> str:
    """The task's one container, as ECS takes it (JSON), once the image and secret are known."""
    image, secret_arn = image_and_secret
    return json.dumps([container_definition(image=image, secret_arn=secret_arn, **definition)])


def task_environment(settings: Settings) -> dict[str, str]:
    return {
        **settings.explicit_environment(),
        **trace_environment(settings),
        "AWS_REGION": settings.region,
        "FLEET_STATE_DIR": "/tmp/fleet",
        "PYTHONUNBUFFERED": "1",
    }


def trace_environment(settings: Settings) -> dict[str, str]:
    """Spans go to the OTLP endpoint the stack's settings name (a collector of the user's:
    ADOT, Jaeger, Honeycomb...), by OpenTelemetry's own variables. With none, tracing is
    off: a task's local trace file is on a disk nobody reads."""
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": settings.otel_exporter_otlp_endpoint,
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": settings.otel_exporter_otlp_traces_endpoint,
    }
    found = {k: v for k, v in env.items() if v}
    return found if found and not settings.otel_sdk_disabled else {"OTEL_SDK_DISABLED": "true"}


def backlog_per_task_metrics(
    queue_name: str, cluster_name: pulumi.Input[str], service_name: pulumi.Input[str]
) -> list[dict[str, Any]]:
    """Visible messages on the stage's queue ÷ the service's running tasks (metric math)."""

    def stat(namespace: str, metric: str, how: str, **dimensions: Any) -> dict[str, Any]:
        return {
            "stat": how,
            "metric": {
                "namespace": namespace,
                "metric_name": metric,
                "dimensions": [{"name": k, "value": v} for k, v in dimensions.items()],
            },
        }

    return [
        {
            "id": "visible",
            "return_data": False,
            "metric_stat": stat(
                "AWS/SQS", "ApproximateNumberOfMessagesVisible", "Sum", QueueName=queue_name
            ),
        },
        {
            "id": "tasks",
            "return_data": False,
            "metric_stat": stat(
                "ECS/ContainerInsights",
                "RunningTaskCount",
                "Average",
                ClusterName=cluster_name,
                ServiceName=service_name,
            ),
        },
        {
            "id": "backlog_per_task",
            "label": "visible messages per running task",
            "expression": "visible / tasks",
            "return_data": True,
        },
    ]


class Compute(pulumi.ComponentResource):
    cluster: aws.ecs.Cluster
    repository: aws.ecr.Repository
    services: dict[str, aws.ecs.Service]

    def __init__(
        self,
        name: str,
        *,
        stack: str,
        settings: Settings,
        topology: TopologySpec,
        image: str | None,
        production: bool,
        cpu: int,
        memory_mb: int,
        worker_bounds: tuple[int, int],
        backlog_per_task: float,
        mcp_tasks: int,
        log_retention_days: int,
        subnet_ids: list[pulumi.Output[str]],
        workers_group_id: pulumi.Output[str],
        mcp_group_id: pulumi.Output[str],
        task_role_arns: dict[str, pulumi.Output[str]],
        execution_role_arn: pulumi.Output[str],
        secret_arn: pulumi.Output[str],
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("incident-fleet:compute:Compute", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.repository = aws.ecr.Repository(
            "fleet",
            name=REPOSITORY_NAME,
            image_scanning_configuration=aws.ecr.RepositoryImageScanningConfigurationArgs(
                scan_on_push=True
            ),
            force_delete=not production,
            opts=child,
        )
        image_uri: pulumi.Input[str] = image or self.repository.repository_url.apply(
            lambda url: f"{url}:latest"
        )
        logs = aws.cloudwatch.LogGroup(
            "tasks", name=log_group_name(stack), retention_in_days=log_retention_days, opts=child
        )
        namespace = aws.servicediscovery.HttpNamespace(
            "fleet",
            name=SERVICE_CONNECT_NAMESPACE,
            description="incident-fleet: the MCP servers by name",
            opts=child,
        )
        self.cluster = aws.ecs.Cluster(
            "fleet",
            name=CLUSTER_NAME,
            # RunningTaskCount, which backlog per task divides by, comes from Container Insights.
            settings=[aws.ecs.ClusterSettingArgs(name="containerInsights", value="enabled")],
            service_connect_defaults=aws.ecs.ClusterServiceConnectDefaultsArgs(
                namespace=namespace.arn
            ),
            opts=child,
        )
        environment = task_environment(settings)
        stop = stop_timeout_s(settings)
        mcp_ports = {
            "mcp-supervisor": settings.mcp_supervisor_port,
            "mcp-resolver": settings.mcp_resolver_port,
        }
        self.services = {}
        for process, role_arn in task_role_arns.items():
            port = mcp_ports.get(process)
            command = ["mcp", process.removeprefix("mcp-")] if port else ["worker", process]
            definition = pulumi.Output.all(image_uri, secret_arn).apply(
                functools.partial(
                    definitions_json,
                    process=process,
                    command=command,
                    environment=environment,
                    log_group=log_group_name(stack),
                    region=settings.region,
                    stop_timeout=stop,
                    port=port,
                )
            )
            task = aws.ecs.TaskDefinition(
                process,
                family=f"incident-fleet-{process}",
                requires_compatibilities=["FARGATE"],
                network_mode="awsvpc",
                cpu=str(cpu),
                memory=str(memory_mb),
                runtime_platform=aws.ecs.TaskDefinitionRuntimePlatformArgs(
                    operating_system_family="LINUX", cpu_architecture="X86_64"
                ),
                execution_role_arn=execution_role_arn,
                task_role_arn=role_arn,
                volumes=[aws.ecs.TaskDefinitionVolumeArgs(name="tmp")],
                container_definitions=definition,
                opts=pulumi.ResourceOptions(parent=self, depends_on=[logs]),
            )
            if port:
                connect = aws.ecs.ServiceServiceConnectConfigurationArgs(
                    enabled=True,
                    namespace=namespace.arn,
                    services=[
                        aws.ecs.ServiceServiceConnectConfigurationServiceArgs(
                            port_name="mcp",
                            discovery_name=process,
                            client_alias=[
                                aws.ecs.ServiceServiceConnectConfigurationServiceClientAliasArgs(
                                    port=port, dns_name=process
                                )
                            ],
                        )
                    ],
                )
            else:  # a client only: it resolves the MCP servers' names
                connect = aws.ecs.ServiceServiceConnectConfigurationArgs(
                    enabled=True, namespace=namespace.arn
                )
            service = aws.ecs.Service(
                process,
                name=process,
                cluster=self.cluster.arn,
                task_definition=task.arn,
                desired_count=mcp_tasks if port else worker_bounds[0],
                launch_type="FARGATE",
                network_configuration=aws.ecs.ServiceNetworkConfigurationArgs(
                    subnets=subnet_ids,
                    security_groups=[mcp_group_id if port else workers_group_id],
                    assign_public_ip=False,
                ),
                service_connect_configuration=connect,
                deployment_circuit_breaker=aws.ecs.ServiceDeploymentCircuitBreakerArgs(
                    enable=True, rollback=True
                ),
                propagate_tags="SERVICE",
                # Autoscaling owns the worker counts after the first deployment.
                opts=pulumi.ResourceOptions(
                    parent=self, ignore_changes=[] if port else ["desiredCount"]
                ),
            )
            self.services[process] = service
            if not port:
                self._scale_on_backlog(process, topology, service, worker_bounds, backlog_per_task)
        self.register_outputs(
            {"cluster_name": self.cluster.name, "repository_url": self.repository.repository_url}
        )

    def _scale_on_backlog(
        self,
        process: str,
        topology: TopologySpec,
        service: aws.ecs.Service,
        bounds: tuple[int, int],
        backlog_per_task: float,
    ) -> None:
        child = pulumi.ResourceOptions(parent=self)
        target = aws.appautoscaling.Target(
            process,
            service_namespace="ecs",
            scalable_dimension="ecs:service:DesiredCount",
            resource_id=pulumi.Output.concat("service/", self.cluster.name, "/", service.name),
            min_capacity=bounds[0],
            max_capacity=bounds[1],
            opts=child,
        )
        aws.appautoscaling.Policy(
            f"{process}-backlog",
            policy_type="TargetTrackingScaling",
            service_namespace=target.service_namespace,
            scalable_dimension=target.scalable_dimension,
            resource_id=target.resource_id,
            target_tracking_scaling_policy_configuration=cast(
                Any,
                {
                    "target_value": backlog_per_task,
                    "customized_metric_specification": {
                        "metrics": backlog_per_task_metrics(
                            topology.queue(Stage(process)).name, self.cluster.name, service.name
                        )
                    },
                    "scale_out_cooldown": 60,
                    "scale_in_cooldown": 300,
                },
            ),
            opts=child,
        )
