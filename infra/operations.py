"""What an operator watches: an alarm on every DLQ's depth and on the age of each stage's
oldest message (to incident-approvals, where people are paged), and a dashboard of the
pipeline: queue depths, the runtime's counters, tasks, and the guarded functions."""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pulumi_aws as aws

from queues.runtime_metrics import COUNTERS
from queues.runtime_metrics import NAMESPACE as RUNTIME_NAMESPACE
from queues.topology import TopologySpec


def dashboard_body(
    region: str,
    topology: TopologySpec,
    cluster_name: str,
    services: list[str],
    functions: list[str],
) -> dict[str, Any]:
    def widget(title: str, metrics: list[list[Any]], stat: str = "Maximum") -> dict[str, Any]:
        return {
            "type": "metric",
            "width": 12,
            "height": 6,
            "properties": {
                "title": title,
                "region": region,
                "stat": stat,
                "period": 60,
                "view": "timeSeries",
                "metrics": metrics,
            },
        }

    stages = [q.name for q in topology.queues]

    def sqs(metric: str, queues: list[str]) -> list[list[Any]]:
        return [["AWS/SQS", metric, "QueueName", name] for name in queues]

    return {
        "widgets": [
            widget("Messages waiting, by stage", sqs("ApproximateNumberOfMessagesVisible", stages)),
            widget(
                "Messages in flight, by stage", sqs("ApproximateNumberOfMessagesNotVisible", stages)
            ),
            widget(
                "Dead letters",
                sqs("ApproximateNumberOfMessagesVisible", [q.dlq_name for q in topology.queues]),
            ),
            widget("Age of the oldest message (s)", sqs("ApproximateAgeOfOldestMessage", stages)),
            widget(
                "Runtime counters (all stages)",
                [
                    [RUNTIME_NAMESPACE, counter, "Stage", q.stage.value]
                    for q in topology.queues
                    for counter in COUNTERS
                ],
                stat="Sum",
            ),
            widget(
                "Running tasks",
                [
                    [
                        "ECS/ContainerInsights",
                        "RunningTaskCount",
                        "ClusterName",
                        cluster_name,
                        "ServiceName",
                        s,
                    ]
                    for s in services
                ],
                stat="Average",
            ),
            widget(
                "Guarded functions: errors and throttles",
                [
                    ["AWS/Lambda", metric, "FunctionName", f]
                    for f in functions
                    for metric in ("Errors", "Throttles")
                ],
                stat="Sum",
            ),
        ]
    }


class Operations(pulumi.ComponentResource):
    def __init__(
        self,
        name: str,
        *,
        region: str,
        topology: TopologySpec,
        pager_topic_arn: pulumi.Input[str],
        cluster_name: pulumi.Input[str],
        services: list[str],
        functions: list[str],
        oldest_message_alarm_s: int,
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("incident-fleet:operations:Operations", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        def page_on(
            resource: str, queue: str, metric: str, above: int, periods: int, why: str
        ) -> None:
            """An alarm on one SQS metric of one queue, to the people (on and off)."""
            aws.cloudwatch.MetricAlarm(
                resource,
                name=f"incident-fleet-{resource}",
                alarm_description=why,
                namespace="AWS/SQS",
                metric_name=metric,
                dimensions={"QueueName": queue},
                statistic="Maximum",
                period=60,
                evaluation_periods=periods,
                threshold=above,
                comparison_operator="GreaterThanThreshold",
                treat_missing_data="notBreaching",
                alarm_actions=[pager_topic_arn],
                ok_actions=[pager_topic_arn],
                opts=child,
            )

        for q in topology.queues:
            page_on(
                f"{q.dlq_name}-not-empty",
                q.dlq_name,
                "ApproximateNumberOfMessagesVisible",
                0,
                1,
                f"Messages in {q.dlq_name}: see why with `fleet failures --queue {q.name}`, "
                f"then redrive from the console or `fleet dlq redrive {q.dlq_name}`",
            )
            page_on(
                f"{q.name}-falling-behind",
                q.name,
                "ApproximateAgeOfOldestMessage",
                oldest_message_alarm_s,
                3,
                f"The oldest message on {q.name} has waited over {oldest_message_alarm_s}s: "
                "its workers are down, stuck or too few",
            )
        self.dashboard = aws.cloudwatch.Dashboard(
            "pipeline",
            dashboard_name="incident-fleet",
            dashboard_body=pulumi.Output.from_input(cluster_name).apply(
                lambda cluster: json.dumps(
                    dashboard_body(region, topology, cluster, services, functions)
                )
            ),
            opts=child,
        )
        self.register_outputs({"dashboard_name": self.dashboard.dashboard_name})
