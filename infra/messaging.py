"""Topics, stage queues, their DLQs and subscriptions: the topology spec, on AWS.

The same spec and the same attribute builders as `queues.provision` (the embedded world),
so the two cannot drift: redrive policy, redrive-allow policy, queue policy and filter
policies are built by the very functions provisioning uses.
"""

from __future__ import annotations

import json

import pulumi
import pulumi_aws as aws

from queues.provision import dlq_attributes, queue_policy, source_queue_attributes
from queues.topology import StageQueue, Topic, TopologySpec

# SSE for incident-events with SNS's AWS-managed key: only the fleet's tasks publish there,
# through SNS. incident-alerts and incident-approvals stay unencrypted: CloudWatch alarms
# publish to them, and an AWS-managed key admits no service principal (a customer key
# with a key policy for CloudWatch would).
ENCRYPTED_TOPICS = {Topic.EVENTS: "alias/aws/sns"}
# Long polling, as the workers do: fewer empty receives when idle.
RECEIVE_WAIT_S = 20


class Messaging(pulumi.ComponentResource):
    topics: dict[Topic, aws.sns.Topic]
    queues: dict[str, aws.sqs.Queue]
    dead_letter_queues: dict[str, aws.sqs.Queue]

    def __init__(
        self, name: str, topology: TopologySpec, opts: pulumi.ResourceOptions | None = None
    ):
        super().__init__("incident-fleet:messaging:Messaging", name, None, opts)
        self._child = pulumi.ResourceOptions(parent=self)
        self.topics = {
            topic: aws.sns.Topic(
                topic.value,
                name=topic.value,
                kms_master_key_id=ENCRYPTED_TOPICS.get(topic),
                opts=self._child,
            )
            for topic in topology.topics
        }
        self.queues = {}
        self.dead_letter_queues = {}
        for q in topology.queues:
            self._stage_queue(q)
        self.register_outputs(
            {
                "topic_arns": {t.value: topic.arn for t, topic in self.topics.items()},
                "queue_urls": {n: queue.url for n, queue in self.queues.items()},
            }
        )

    def _stage_queue(self, q: StageQueue) -> None:
        dlq = aws.sqs.Queue(
            q.dlq_name,
            name=q.dlq_name,
            message_retention_seconds=q.dlq_retention_s,
            sqs_managed_sse_enabled=True,
            opts=self._child,
        )
        queue = aws.sqs.Queue(
            q.name,
            name=q.name,
            visibility_timeout_seconds=q.visibility_timeout_s,
            message_retention_seconds=q.retention_s,
            receive_wait_time_seconds=RECEIVE_WAIT_S,
            sqs_managed_sse_enabled=True,
            redrive_policy=dlq.arn.apply(
                lambda arn: source_queue_attributes(q, arn)["RedrivePolicy"]
            ),
            opts=self._child,
        )
        # On the DLQ after its source exists: each names the other.
        aws.sqs.RedriveAllowPolicy(
            q.dlq_name,
            queue_url=dlq.url,
            redrive_allow_policy=queue.arn.apply(
                lambda arn: dlq_attributes(q, arn)["RedriveAllowPolicy"]
            ),
            opts=self._child,
        )
        self.queues[q.name] = queue
        self.dead_letter_queues[q.dlq_name] = dlq
        if not q.subscriptions:
            return
        topic_arns = [self.topics[s.topic].arn for s in q.subscriptions]
        policy = aws.sqs.QueuePolicy(
            q.name,
            queue_url=queue.url,
            policy=pulumi.Output.all(queue.arn, *topic_arns).apply(
                lambda arns: json.dumps(queue_policy(arns[0], list(arns[1:])))
            ),
            opts=self._child,
        )
        for sub in q.subscriptions:
            wanted = sub.filter_policy()
            aws.sns.TopicSubscription(
                f"{sub.topic.value}-to-{q.name}",
                topic=self.topics[sub.topic].arn,
                protocol="sqs",
                endpoint=queue.arn,
                filter_policy=json.dumps(wanted) if wanted is not None else None,
                filter_policy_scope="MessageAttributes" if wanted is not None else None,
                # SNS cannot deliver until the queue's policy admits the topic.
                opts=pulumi.ResourceOptions(parent=self, depends_on=[policy]),
            )
