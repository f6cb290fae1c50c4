"""Publishing events to incident-events, with event_type as the attribute filters route on.

An event that is not to be handled yet (`not_before`) cannot go through SNS, which delivers
at once: it is sent to the queues it routes to as a delayed message (SQS DelaySeconds, up
to 15 minutes), with the same attributes a subscription would deliver (the trace context
among them). One whose moment has passed by the time it is published (an outbox flushed
late) goes through SNS as any other.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from core.aws import Clients
from core.aws_retry import call
from core.settings import Settings
from core.tracing import inject_message_attributes
from queues.events import EventEnvelope
from queues.topology import EVENT_TYPE_ATTRIBUTE, EventType, Topic, build_topology, topic_arn

MAX_DELAY_S = 900  # SQS's limit on DelaySeconds


def delay_s(event: EventEnvelope, now: datetime) -> int:
    """Whole seconds until the event may be handled (SQS counts delays in whole seconds,
    so rounded up: never early); 0 when it may be handled now."""
    if event.not_before is None:
        return 0
    wait = (event.not_before - now).total_seconds()
    return min(MAX_DELAY_S, max(0, math.ceil(wait)))


class Publisher:
    def __init__(
        self,
        sns: Any,
        topic_arns: dict[Topic, str],
        sqs: Any = None,
        routes: Mapping[EventType, Sequence[str]] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ):
        self.sns = sns
        self.topic_arns = topic_arns
        self.sqs = sqs
        # The queue names each event type reaches on incident-events.
        self.routes = routes or {}
        self.clock = clock
        self._urls: dict[str, str] = {}

    @classmethod
    def for_principal(cls, clients: Clients, settings: Settings) -> Publisher:
        """A publisher to every fleet topic, signing as the principal `clients` act for."""
        topology = build_topology(settings)
        routes = {
            e: [topology.queue(stage).name for stage in topology.routes(Topic.EVENTS, e)]
            for e in EventType
        }
        return cls(
            clients("sns"), {t: topic_arn(settings, t) for t in Topic}, clients("sqs"), routes
        )

    def publish(self, event: EventEnvelope, topic: Topic = Topic.EVENTS) -> str:
        delay = delay_s(event, self.clock())
        if delay and topic == Topic.EVENTS:
            return self._send_delayed(event, delay)
        answer = call(
            self.sns.publish,
            TopicArn=self.topic_arns[topic],
            Message=event.model_dump_json(),
            MessageAttributes=self._attributes(event),
        )
        return str(answer["MessageId"])

    def _attributes(self, event: EventEnvelope) -> dict[str, Any]:
        """What subscriptions filter on, and the trace context: put here even where the
        botocore instrumentation adds it to a publish (with its own span, which wins),
        since a process that traces nothing (the CLI) still passes an incident's on."""
        attributes = {
            EVENT_TYPE_ATTRIBUTE: {"DataType": "String", "StringValue": event.event_type.value},
            "event_id": {"DataType": "String", "StringValue": event.event_id},
        }
        inject_message_attributes(attributes)
        return attributes

    def _send_delayed(self, event: EventEnvelope, delay: int) -> str:
        queues = self.routes.get(event.event_type, [])
        if self.sqs is None or not queues:
            raise ValueError(f"{event.event_type.value} routes to no queue to delay it in")
        attributes = self._attributes(event)
        ids = []
        for name in queues:
            if name not in self._urls:
                self._urls[name] = call(self.sqs.get_queue_url, QueueName=name)["QueueUrl"]
            answer = call(
                self.sqs.send_message,
                QueueUrl=self._urls[name],
                MessageBody=event.model_dump_json(),
                DelaySeconds=delay,
                MessageAttributes=attributes,
            )
            ids.append(str(answer["MessageId"]))
        return ",".join(ids)
