from __future__ import annotations

import pytest
from pydantic import ValidationError

from core.settings import Settings
from queues.topology import (
    STAGE_EVENTS,
    EventType,
    Stage,
    StageQueue,
    Topic,
    TopologySpec,
    build_topology,
)


@pytest.fixture
def spec() -> TopologySpec:
    return build_topology(Settings())


def test_every_stage_has_a_queue_and_its_own_dlq(spec: TopologySpec) -> None:
    assert {q.stage for q in spec.queues} == set(Stage)
    names = [q.name for q in spec.queues] + [q.dlq_name for q in spec.queues]
    assert len(names) == len(set(names))
    for q in spec.queues:
        assert q.dlq_name == f"{q.name}-dlq"
        assert q.max_receive_count >= 2
        assert q.dlq_retention_s > q.retention_s


def test_every_event_type_is_consumed_by_exactly_the_intended_stages(spec: TopologySpec) -> None:
    for event in EventType:
        wanted = sorted(s for s, events in STAGE_EVENTS.items() if event in events)
        assert sorted(spec.routes(Topic.EVENTS, event)) == wanted
    assert spec.routes(Topic.ALERTS, EventType.OPENED) == [Stage.SUPERVISOR]
    assert spec.routes(Topic.APPROVALS, EventType.AWAITING_APPROVAL) == []


def test_filter_policies_name_the_event_type_attribute(spec: TopologySpec) -> None:
    for q in spec.queues:
        for sub in q.subscriptions:
            policy = sub.filter_policy()
            if sub.topic == Topic.ALERTS:
                assert policy is None
            else:
                assert policy == {"event_type": sorted(e.value for e in STAGE_EVENTS[q.stage])}


def test_a_dlq_that_expires_before_its_source_is_rejected() -> None:
    with pytest.raises(ValidationError, match="DLQ retention"):
        StageQueue(
            stage=Stage.CRITIC,
            name="critic",
            dlq_name="critic-dlq",
            visibility_timeout_s=30,
            handler_deadline_s=20,
            max_receive_count=3,
            retention_s=3600,
            dlq_retention_s=3600,
        )


def test_max_receive_count_below_two_is_rejected() -> None:
    with pytest.raises(ValidationError):
        StageQueue(
            stage=Stage.CRITIC,
            name="critic",
            dlq_name="critic-dlq",
            visibility_timeout_s=30,
            handler_deadline_s=20,
            max_receive_count=1,
            retention_s=3600,
            dlq_retention_s=7200,
        )
    with pytest.raises(ValidationError):
        Settings(queue_max_receive_count=1)
