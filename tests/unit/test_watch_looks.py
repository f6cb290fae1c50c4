"""The watch as a chain of delayed looks: when each look is due, how its message is delayed,
and the settings that keep the lease alive between looks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from core.settings import Settings
from incidents.verification import next_look_s, watch_window_s
from queues.events import new_event
from queues.publisher import MAX_DELAY_S, Publisher, delay_s
from queues.topology import EventType, Topic

NOW = datetime(2026, 11, 29, 12, 0, 0, tzinfo=UTC)


def test_looks_come_every_look_s_and_on_the_window_s_end() -> None:
    recovered = NOW
    assert next_look_s(recovered, 30, 5, NOW) == 5
    assert next_look_s(recovered, 30, 5, NOW + timedelta(seconds=27)) == 3  # the window's end
    assert next_look_s(recovered, 30, 5, NOW + timedelta(seconds=31)) == 5  # alarms pending


def test_the_watch_outlasts_the_alarm_period_the_incident_recovered_in_and_one_more() -> None:
    # NOW is on a 30 s boundary. Recovered 5 s into a period: it ends in 25 s, and the
    # alarm due for the failures before the fix is evaluated within the period after.
    recovered = NOW + timedelta(seconds=5)
    assert watch_window_s(10, 30, recovered) == 25 + 30
    # With 10 s periods, a 30 s watch already covers it.
    assert watch_window_s(30, 10, recovered) == 30
    assert watch_window_s(10, 10, recovered) == 5 + 10


def test_a_delay_is_rounded_up_never_early_and_capped_at_sqs_limit() -> None:
    event = new_event(EventType.WATCH, "test", {})
    assert delay_s(event, NOW) == 0
    due = event.model_copy(update={"not_before": NOW + timedelta(seconds=2.1)})
    assert delay_s(due, NOW) == 3
    assert delay_s(due, NOW + timedelta(seconds=5)) == 0  # published late: at once
    far = event.model_copy(update={"not_before": NOW + timedelta(hours=1)})
    assert delay_s(far, NOW) == MAX_DELAY_S


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def publish(self, **kwargs: Any) -> dict[str, str]:
        self.calls.append(("sns", kwargs))
        return {"MessageId": "sns-1"}

    def get_queue_url(self, QueueName: str) -> dict[str, str]:
        return {"QueueUrl": f"https://sqs.local/{QueueName}"}

    def send_message(self, **kwargs: Any) -> dict[str, str]:
        self.calls.append(("sqs", kwargs))
        return {"MessageId": "sqs-1"}


def test_a_delayed_event_goes_to_its_routed_queues_with_the_attributes_sns_would_give() -> None:
    client = Recorder()
    publisher = Publisher(
        client, {Topic.EVENTS: "arn:events"}, client, {EventType.WATCH: ["resolver"]}, lambda: NOW
    )
    event = new_event(EventType.WATCH, "resolver", {"look": 2}, incident_id="inc-1")
    publisher.publish(event.model_copy(update={"not_before": NOW + timedelta(seconds=5)}))
    publisher.publish(event)  # due now: through SNS, as any event
    (kind, sent), (kind2, published) = client.calls
    assert kind == "sqs" and kind2 == "sns"
    assert sent["QueueUrl"] == "https://sqs.local/resolver" and sent["DelaySeconds"] == 5
    assert sent["MessageAttributes"] == published["MessageAttributes"]
    assert sent["MessageAttributes"]["event_type"]["StringValue"] == "incident.watch"


def test_the_watch_looks_at_least_twice_per_lease_it_renews() -> None:
    assert Settings(watch_look_s=5, remediation_lease_s=30).watch_every_s == 5
    assert Settings(watch_look_s=5, remediation_lease_s=6).watch_every_s == 3
