"""The typed event envelope, and turning what arrives on a queue into it (the life of an
alert in ARCHITECTURE.md shows where each event goes).

A queue receives three kinds of body: our own events (published on incident-events), the
CloudWatch alarm notification that SNS delivers to incident-alerts, and the protected
function's own failure report. Each may come inside an SNS envelope or raw. Anything else
is bad input: :class:`BadMessage` carries a reason a person can read next to the dead letter.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from queues.topology import EventType

SCHEMA_VERSION = 1
# SQS accepts 256 KiB; an event of ours is far smaller, so anything bigger is not one.
MAX_BODY_BYTES = 64 * 1024


class BadMessage(Exception):
    """A body that can never be processed: it goes to the DLQ at once, with this reason."""


class AlarmDimension(BaseModel):
    name: str
    value: str


class AlarmTrigger(BaseModel):
    model_config = ConfigDict(extra="allow")

    MetricName: str
    Namespace: str
    Statistic: str | None = None
    Dimensions: list[AlarmDimension] = []
    Period: int
    EvaluationPeriods: int
    ComparisonOperator: str
    Threshold: float


class AlarmNotification(BaseModel):
    """The JSON CloudWatch puts in the SNS Message when an alarm changes state."""

    model_config = ConfigDict(extra="allow")

    AlarmName: str
    AlarmArn: str
    AWSAccountId: str
    NewStateValue: Literal["ALARM", "OK", "INSUFFICIENT_DATA"]
    OldStateValue: Literal["ALARM", "OK", "INSUFFICIENT_DATA"]
    NewStateReason: str
    StateChangeTime: str
    Region: str
    Trigger: AlarmTrigger

    @property
    def function_name(self) -> str | None:
        for d in self.Trigger.Dimensions:
            if d.name == "FunctionName":
                return d.value
        return None


class FailureReport(BaseModel):
    """What the protected function publishes about its own failed run."""

    report_type: Literal["lambda.failure"]
    function_name: str
    request_id: str
    error_type: str
    error_message: str
    occurred_at: str


class EventEnvelope(BaseModel):
    """Every message the fleet handles, as the stage handler receives it."""

    model_config = ConfigDict(extra="forbid")

    event_type: EventType
    event_id: str = Field(min_length=1, max_length=200)
    incident_id: str | None = None
    schema_version: int = SCHEMA_VERSION
    produced_at: datetime
    producer: str
    correlation_id: str
    payload: dict[str, Any] = {}
    # Not to be handled before this moment: published as a delayed message to the queues the
    # event routes to (a later look of the resolver's watch); None: at once.
    not_before: datetime | None = None

    def alarm(self) -> AlarmNotification:
        return AlarmNotification.model_validate(self.payload)

    def failure_report(self) -> FailureReport:
        return FailureReport.model_validate(self.payload)


def new_event(
    event_type: EventType,
    producer: str,
    payload: BaseModel | dict[str, Any],
    incident_id: str | None = None,
    correlation_id: str | None = None,
    event_id: str | None = None,
) -> EventEnvelope:
    """An event to publish. Give a deterministic event_id when the event must dedupe."""
    data = payload.model_dump(mode="json") if isinstance(payload, BaseModel) else payload
    eid = event_id or str(uuid.uuid4())
    return EventEnvelope(
        event_type=event_type,
        event_id=eid,
        incident_id=incident_id,
        produced_at=datetime.now(UTC),
        producer=producer,
        correlation_id=correlation_id or eid,
        payload=data,
    )


def incident_event(
    event_type: EventType,
    producer: str,
    incident_id: str,
    payload: BaseModel | dict[str, Any],
    correlation_id: str | None = None,
) -> EventEnvelope:
    """An event announcing a step of an incident. Its id names the incident and the step,
    so the step announced again (a handler run twice after a crash) dedupes downstream."""
    return new_event(
        event_type,
        producer,
        payload,
        incident_id=incident_id,
        correlation_id=correlation_id,
        event_id=f"{incident_id}:{event_type.value.split('.')[-1]}",
    )


def _loads(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, TypeError) as exc:
        raise BadMessage(f"{what} is not JSON: {exc}") from None


def _describe(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "(top level)"
    more = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
    return f"{where}: {first['msg']}{more}"


def parse_body(body: str, message_id: str) -> EventEnvelope:
    """The typed event inside an SQS body, or BadMessage with the reason."""
    if len(body.encode()) > MAX_BODY_BYTES:
        raise BadMessage(f"body is {len(body.encode())} bytes; the limit is {MAX_BODY_BYTES}")
    outer = _loads(body, "body")
    if not isinstance(outer, dict):
        raise BadMessage(f"body is JSON {type(outer).__name__}, not an object")
    # Inbound alerts dedupe on the SNS message id: a redelivery carries the same one.
    source_id = f"sns:{outer['MessageId']}" if outer.get("Type") == "Notification" else None
    if outer.get("Type") == "Notification" and "Message" in outer:
        inner = _loads(outer["Message"], "SNS Message")
        if not isinstance(inner, dict):
            raise BadMessage(f"SNS Message is JSON {type(inner).__name__}, not an object")
        produced_at = outer.get("Timestamp")
    else:
        inner, produced_at = outer, None
    if source_id is None:
        source_id = "sha256:" + hashlib.sha256(body.encode()).hexdigest()[:32]
    return _classify(inner, source_id, produced_at)


def _classify(data: dict[str, Any], source_id: str, produced_at: str | None) -> EventEnvelope:
    now = produced_at or datetime.now(UTC).isoformat()
    if "event_type" in data and "event_id" in data:
        if data["event_type"] not in {e.value for e in EventType}:
            raise BadMessage(f"unknown event_type {data['event_type']!r}")
        if data.get("schema_version", SCHEMA_VERSION) != SCHEMA_VERSION:
            raise BadMessage(f"unsupported schema_version {data.get('schema_version')!r}")
        try:
            return EventEnvelope.model_validate(data)
        except ValidationError as exc:
            raise BadMessage(f"not a valid event envelope: {_describe(exc)}") from None
    if "AlarmName" in data and "NewStateValue" in data:
        try:
            alarm = AlarmNotification.model_validate(data)
        except ValidationError as exc:
            raise BadMessage(
                f"not a valid CloudWatch alarm notification: {_describe(exc)}"
            ) from None
        return EventEnvelope(
            event_type=EventType.ALERT_ALARM,
            event_id=source_id,
            produced_at=datetime.fromisoformat(now.replace("Z", "+00:00")),
            producer="cloudwatch",
            correlation_id=source_id,
            payload=alarm.model_dump(mode="json"),
        )
    if data.get("report_type") == "lambda.failure":
        try:
            report = FailureReport.model_validate(data)
        except ValidationError as exc:
            raise BadMessage(f"not a valid failure report: {_describe(exc)}") from None
        return EventEnvelope(
            event_type=EventType.ALERT_FAILURE_REPORT,
            event_id=source_id,
            produced_at=datetime.fromisoformat(now.replace("Z", "+00:00")),
            producer=f"lambda:{report.function_name}",
            correlation_id=source_id,
            payload=report.model_dump(mode="json"),
        )
    keys = ", ".join(sorted(data)[:8]) or "none"
    raise BadMessage(
        "neither a fleet event, a CloudWatch alarm notification nor a failure report "
        f"(keys: {keys})"
    )
