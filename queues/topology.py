"""The messaging topology as data: the one source of truth for local provisioning and infra/.

Stages, their queues and dead-letter queues, redrive settings, and which topic feeds which
queue under which filter policy. :func:`build_topology` turns settings into the spec;
``queues.provision`` applies it to the emulator and ``infra/`` to AWS.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, Field, model_validator

from core.settings import Settings


class Topic(StrEnum):
    ALERTS = "incident-alerts"
    EVENTS = "incident-events"
    APPROVALS = "incident-approvals"


class Stage(StrEnum):
    SUPERVISOR = "supervisor"
    RESOLVER = "resolver"
    CRITIC = "critic"
    WATCHDOG = "watchdog"


class EventType(StrEnum):
    """Every event published on incident-events (the `event_type` message attribute)."""

    OPENED = "incident.opened"
    DIAGNOSED = "incident.diagnosed"
    PROPOSED = "incident.proposed"
    APPROVED = "incident.approved"
    AWAITING_APPROVAL = "incident.awaiting_approval"
    REJECTED = "incident.rejected"
    EXECUTED = "incident.executed"
    RECOVERED = "incident.recovered"
    # The resolver's next look at a recovered incident it is watching (a delayed message to
    # its own queue: the watch holds no worker between looks).
    WATCH = "incident.watch"
    # Investigate again, within the same incident (incidents/state_machine.py: rounds).
    NEXT_ROUND = "incident.next_round"
    RESOLVED = "incident.resolved"
    ROLLED_BACK = "incident.rolled_back"
    FAILED = "incident.failed"
    ESCALATED = "incident.escalated"
    WATCHDOG_TICK = "watchdog.tick"
    # The watchdog's report of new dead letters (to people, on incident-approvals).
    DEAD_LETTERED = "fleet.dead_lettered"
    # Inbound on incident-alerts, in AWS's own formats; the runtime gives them these types.
    ALERT_ALARM = "alert.alarm"
    ALERT_FAILURE_REPORT = "alert.failure_report"


EVENT_TYPE_ATTRIBUTE = "event_type"

# Events a person must see: besides incident-events, they go to incident-approvals (the
# channel people subscribe to: email, chat, a pager).
PAGED_EVENTS = frozenset(
    {
        EventType.AWAITING_APPROVAL,
        EventType.ESCALATED,
        EventType.FAILED,
        EventType.ROLLED_BACK,
        EventType.DEAD_LETTERED,
    }
)


class Subscription(BaseModel, frozen=True):
    topic: Topic
    # None: everything on the topic; otherwise only these event_type values.
    event_types: tuple[EventType, ...] | None = None

    def filter_policy(self) -> dict[str, list[str]] | None:
        if self.event_types is None:
            return None
        return {EVENT_TYPE_ATTRIBUTE: sorted(e.value for e in self.event_types)}


class StageQueue(BaseModel, frozen=True):
    stage: Stage
    name: str
    dlq_name: str
    visibility_timeout_s: int = Field(ge=1, le=43200)
    # The longest one message's handler may legitimately run (see handler_deadline_s).
    # Heartbeats keep a message hidden while it runs; a visibility above this also keeps
    # it hidden through a frozen worker (infra/ holds AWS to that; test worlds go shorter).
    handler_deadline_s: float = Field(gt=0)
    max_receive_count: int = Field(ge=2)
    retention_s: int = Field(ge=60, le=1209600)
    dlq_retention_s: int = Field(ge=60, le=1209600)
    subscriptions: tuple[Subscription, ...] = ()

    @model_validator(mode="after")
    def _dlq_outlives_source(self) -> StageQueue:
        # A message's age counts from its first enqueue, even after it moves to the DLQ.
        if self.dlq_retention_s <= self.retention_s:
            raise ValueError(
                f"{self.dlq_name}: DLQ retention ({self.dlq_retention_s}s) must exceed "
                f"{self.name}'s ({self.retention_s}s)"
            )
        return self


class TopologySpec(BaseModel, frozen=True):
    topics: tuple[Topic, ...]
    queues: tuple[StageQueue, ...]

    def queue(self, stage: Stage) -> StageQueue:
        return next(q for q in self.queues if q.stage == stage)

    def routes(self, topic: Topic, event_type: EventType) -> list[Stage]:
        """The stages whose queue receives an event of this type published on this topic."""
        stages = []
        for q in self.queues:
            for sub in q.subscriptions:
                if sub.topic == topic and (
                    sub.event_types is None or event_type in sub.event_types
                ):
                    stages.append(q.stage)
        return stages


# Which events each stage consumes from incident-events. The supervisor takes its own
# `incident.opened` back: the investigation runs once per incident, not once per alert.
STAGE_EVENTS: dict[Stage, tuple[EventType, ...]] = {
    Stage.SUPERVISOR: (EventType.OPENED, EventType.NEXT_ROUND),
    Stage.RESOLVER: (EventType.DIAGNOSED, EventType.APPROVED, EventType.WATCH),
    Stage.CRITIC: (EventType.PROPOSED,),
    Stage.WATCHDOG: (
        EventType.AWAITING_APPROVAL,
        EventType.ESCALATED,
        EventType.FAILED,
        EventType.ROLLED_BACK,
        EventType.WATCHDOG_TICK,
    ),
}


# The watchdog's tick reads the store and the queue depths: a few AWS calls, each bounded
# by the clients' read timeout.
WATCHDOG_DEADLINE_S = 30.0
# What an execution adds to its verification: a handful of allowlisted calls and a snapshot.
EXECUTION_ALLOWANCE_S = 30.0


def handler_deadline_s(settings: Settings, stage: Stage) -> float:
    """The longest a stage's handler runs: its agent's hard timeout, and for the resolver
    also an execution and its verification."""
    match stage:
        case Stage.SUPERVISOR | Stage.CRITIC:
            return settings.agent_hard_timeout_s
        case Stage.RESOLVER:
            return max(
                settings.agent_hard_timeout_s,
                settings.verify_timeout_s + EXECUTION_ALLOWANCE_S,
            )
        case Stage.WATCHDOG:
            return WATCHDOG_DEADLINE_S


def topic_arn(settings: Settings, topic: Topic) -> str:
    return f"arn:aws:sns:{settings.region}:{settings.account_id}:{topic.value}"


def build_topology(settings: Settings) -> TopologySpec:
    def stage_queue(stage: Stage, *subscriptions: Subscription) -> StageQueue:
        return StageQueue(
            stage=stage,
            name=stage.value,
            dlq_name=f"{stage.value}-dlq",
            visibility_timeout_s=settings.queue_visibility_timeout_s,
            handler_deadline_s=handler_deadline_s(settings, stage),
            max_receive_count=settings.queue_max_receive_count,
            retention_s=settings.queue_retention_s,
            dlq_retention_s=settings.dlq_retention_s,
            subscriptions=subscriptions,
        )

    def subscriptions(stage: Stage) -> tuple[Subscription, ...]:
        alerts = (Subscription(topic=Topic.ALERTS),) if stage == Stage.SUPERVISOR else ()
        return (*alerts, Subscription(topic=Topic.EVENTS, event_types=STAGE_EVENTS[stage]))

    return TopologySpec(
        topics=tuple(Topic),
        queues=tuple(stage_queue(stage, *subscriptions(stage)) for stage in Stage),
    )
