"""Apply the topology spec to SNS and SQS: idempotent, and it reports what it changed."""

from __future__ import annotations

import json
from typing import Any

from core.provisioning import ProvisionReport
from queues.topology import StageQueue, Subscription, TopologySpec


def queue_policy(queue_arn: str, topic_arns: list[str]) -> dict[str, Any]:
    """Only the named topics may send to the queue (AWS checks this; the emulator doesn't)."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "AllowFleetTopics",
                "Effect": "Allow",
                "Principal": {"Service": "sns.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": queue_arn,
                "Condition": {"ArnEquals": {"aws:SourceArn": sorted(topic_arns)}},
            }
        ],
    }


def source_queue_attributes(q: StageQueue, dlq_arn: str) -> dict[str, str]:
    return {
        "VisibilityTimeout": str(q.visibility_timeout_s),
        "MessageRetentionPeriod": str(q.retention_s),
        "RedrivePolicy": json.dumps(
            {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": q.max_receive_count}
        ),
    }


def dlq_attributes(q: StageQueue, source_arn: str) -> dict[str, str]:
    return {
        "MessageRetentionPeriod": str(q.dlq_retention_s),
        "RedriveAllowPolicy": json.dumps(
            {"redrivePermission": "byQueue", "sourceQueueArns": [source_arn]}
        ),
    }


def _same(current: str | None, wanted: str) -> bool:
    if current is None:
        return False
    try:  # JSON attributes compare as data: the service may reorder or reformat them.
        return bool(json.loads(current) == json.loads(wanted))
    except ValueError:
        return current == wanted


class MessagingProvisioner:
    def __init__(self, sns: Any, sqs: Any, report: ProvisionReport):
        self.sns = sns
        self.sqs = sqs
        self.report = report
        self.topic_arns: dict[str, str] = {}

    def apply(self, spec: TopologySpec) -> None:
        existing = {arn.rsplit(":", 1)[1]: arn for arn in self._list_topic_arns()}
        for topic in spec.topics:
            if topic.value in existing:
                self.topic_arns[topic.value] = existing[topic.value]
                self.report.record("sns-topic", topic.value, "unchanged")
            else:
                arn = self.sns.create_topic(Name=topic.value)["TopicArn"]
                self.topic_arns[topic.value] = arn
                self.report.record("sns-topic", topic.value, "created")
        for q in spec.queues:
            self._apply_queue(q)

    def _list_topic_arns(self) -> list[str]:
        arns: list[str] = []
        for page in self.sns.get_paginator("list_topics").paginate():
            arns.extend(t["TopicArn"] for t in page["Topics"])
        return arns

    def _ensure_queue(self, name: str, attributes: dict[str, str]) -> tuple[str, str]:
        try:
            url = self.sqs.get_queue_url(QueueName=name)["QueueUrl"]
        except self.sqs.exceptions.QueueDoesNotExist:
            url = self.sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
            self.report.record("sqs-queue", name, "created")
            return url, self._arn(url)
        current = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        stale = {k: v for k, v in attributes.items() if not _same(current.get(k), v)}
        if stale:
            self.sqs.set_queue_attributes(QueueUrl=url, Attributes=stale)
        self.report.record("sqs-queue", name, "updated" if stale else "unchanged")
        return url, current["QueueArn"]

    def _arn(self, url: str) -> str:
        attrs = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
        return str(attrs["Attributes"]["QueueArn"])

    def _apply_queue(self, q: StageQueue) -> None:
        # The DLQ first (the source's redrive policy names it), then its allow policy.
        dlq_url, dlq_arn = self._ensure_queue(
            q.dlq_name, {"MessageRetentionPeriod": str(q.dlq_retention_s)}
        )
        topic_arns = [self.topic_arns[s.topic.value] for s in q.subscriptions]
        wanted = source_queue_attributes(q, dlq_arn)
        url, arn = self._ensure_queue(q.name, wanted)
        if topic_arns:
            self._set_if_changed(url, q.name, {"Policy": json.dumps(queue_policy(arn, topic_arns))})
        self._set_if_changed(dlq_url, q.dlq_name, dlq_attributes(q, arn))
        for sub in q.subscriptions:
            self._ensure_subscription(sub, arn)

    def _set_if_changed(self, url: str, name: str, attributes: dict[str, str]) -> None:
        current = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        stale = {k: v for k, v in attributes.items() if not _same(current.get(k), v)}
        if stale:
            self.sqs.set_queue_attributes(QueueUrl=url, Attributes=stale)
            self.report.record("sqs-queue-policy", name, "updated")
        else:
            self.report.record("sqs-queue-policy", name, "unchanged")

    def _ensure_subscription(self, sub: Subscription, queue_arn: str) -> None:
        topic_arn = self.topic_arns[sub.topic.value]
        name = f"{sub.topic.value} -> {queue_arn.rsplit(':', 1)[1]}"
        wanted_filter = sub.filter_policy()
        found = None
        for page in self.sns.get_paginator("list_subscriptions_by_topic").paginate(
            TopicArn=topic_arn
        ):
            for s in page["Subscriptions"]:
                if s["Protocol"] == "sqs" and s["Endpoint"] == queue_arn:
                    found = s["SubscriptionArn"]
        if found is None:
            attributes = {"FilterPolicyScope": "MessageAttributes"}
            if wanted_filter is not None:
                attributes["FilterPolicy"] = json.dumps(wanted_filter)
            self.sns.subscribe(
                TopicArn=topic_arn,
                Protocol="sqs",
                Endpoint=queue_arn,
                Attributes=attributes,
                ReturnSubscriptionArn=True,
            )
            self.report.record("sns-subscription", name, "created")
            return
        current = self.sns.get_subscription_attributes(SubscriptionArn=found)["Attributes"]
        current_filter = current.get("FilterPolicy")
        if wanted_filter is None:
            unchanged = not current_filter
        else:
            unchanged = _same(current_filter, json.dumps(wanted_filter))
        if unchanged:
            self.report.record("sns-subscription", name, "unchanged")
        else:
            self.sns.set_subscription_attributes(
                SubscriptionArn=found,
                AttributeName="FilterPolicy",
                AttributeValue=json.dumps(wanted_filter or {}),
            )
            self.report.record("sns-subscription", name, "updated")
