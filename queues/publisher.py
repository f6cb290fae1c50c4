"""Publishing events to incident-events, with event_type as the attribute filters route on."""

from __future__ import annotations

from typing import Any

from core.aws import Clients
from core.aws_retry import call
from core.settings import Settings
from queues.events import EventEnvelope
from queues.topology import EVENT_TYPE_ATTRIBUTE, Topic, topic_arn


class Publisher:
    def __init__(self, sns: Any, topic_arns: dict[Topic, str]):
        self.sns = sns
        self.topic_arns = topic_arns

    @classmethod
    def for_principal(cls, clients: Clients, settings: Settings) -> Publisher:
        """A publisher to every fleet topic, signing as the principal `clients` act for."""
        return cls(clients("sns"), {t: topic_arn(settings, t) for t in Topic})

    def publish(self, event: EventEnvelope, topic: Topic = Topic.EVENTS) -> str:
        answer = call(
            self.sns.publish,
            TopicArn=self.topic_arns[topic],
            Message=event.model_dump_json(),
            MessageAttributes={
                EVENT_TYPE_ATTRIBUTE: {"DataType": "String", "StringValue": event.event_type.value},
                "event_id": {"DataType": "String", "StringValue": event.event_id},
            },
        )
        return str(answer["MessageId"])
