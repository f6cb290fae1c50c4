from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from incidents.lifecycle import IncidentStatus as S
from incidents.state_machine import ALLOWED, TERMINAL, can_move
from incidents.store import fingerprint, in_round, incident_id_for
from queues.events import BadMessage, incident_event, new_event, parse_body
from queues.outcomes import backoff_s
from queues.topology import EventType


def test_the_sns_delivered_alarm_fixture_parses_to_a_typed_alert(
    envelope_fixture: dict[str, Any],
) -> None:
    event = parse_body(json.dumps(envelope_fixture), "m-1")
    assert event.event_type == EventType.ALERT_ALARM
    assert event.event_id == f"sns:{envelope_fixture['MessageId']}"  # dedupes redeliveries
    alarm = event.alarm()
    assert alarm.function_name == "data-processor"
    assert (alarm.OldStateValue, alarm.NewStateValue) == ("OK", "ALARM")


def test_a_raw_alarm_and_a_failure_report_parse_too(alarm_fixture: dict[str, Any]) -> None:
    raw = parse_body(json.dumps(alarm_fixture), "m-2")
    assert raw.event_type == EventType.ALERT_ALARM
    assert raw.event_id == parse_body(json.dumps(alarm_fixture), "m-3").event_id
    report = {
        "report_type": "lambda.failure",
        "function_name": "f",
        "request_id": "r",
        "error_type": "AccessDenied",
        "error_message": "no",
        "occurred_at": "now",
    }
    assert parse_body(json.dumps(report), "m-4").failure_report().error_type == "AccessDenied"


def test_our_own_event_round_trips() -> None:
    event = new_event(EventType.PROPOSED, "critic", {"k": 1}, incident_id="inc-1")
    assert parse_body(event.model_dump_json(), "m-5") == event


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("nope", "body is not JSON"),
        ("[1, 2]", "not an object"),
        (json.dumps({"event_type": "incident.proposed", "event_id": "x"}), "produced_at"),
        (json.dumps({"event_type": "nope", "event_id": "x"}), "unknown event_type 'nope'"),
        (
            json.dumps({"Type": "Notification", "MessageId": "1", "Message": "]"}),
            "SNS Message is not JSON",
        ),
        (
            json.dumps({"AlarmName": "a", "NewStateValue": "ALARM"}),
            "not a valid CloudWatch alarm notification",
        ),
        (json.dumps({"hello": "world"}), "keys: hello"),
        ("x" * 70_000, "the limit is 65536"),
    ],
    ids=[
        "not-json",
        "array",
        "wrong-schema",
        "unknown-type",
        "sns-garbage",
        "half-alarm",
        "unrecognised",
        "too-big",
    ],
)
def test_bad_bodies_say_why(body: str, reason: str) -> None:
    with pytest.raises(BadMessage, match=reason.replace("[", r"\[")):
        parse_body(body, "m")


def test_backoff_grows_with_receives_and_is_capped() -> None:
    assert backoff_s(1, 2.0, 300) <= 2
    assert 8 <= backoff_s(4, 2.0, 300) <= 16
    assert backoff_s(30, 2.0, 300) <= 300
    assert backoff_s(3, 0.0, 300) == 0


def test_one_function_one_window_one_fingerprint() -> None:
    t = datetime(2026, 11, 25, 18, 1, tzinfo=UTC)
    same = fingerprint("fn", t + timedelta(minutes=10), 1800)
    assert fingerprint("fn", t, 1800) == same
    assert fingerprint("other-fn", t, 1800) != same
    assert fingerprint("fn", t + timedelta(hours=1), 1800) != same
    assert incident_id_for(same) == incident_id_for(same)


def test_the_state_machine_allows_only_the_designed_moves() -> None:
    assert can_move(S.RECEIVED, S.INVESTIGATING)
    # A fix is resolved only after its watch: verified, recovered, then resolved.
    assert not can_move(S.VERIFYING, S.RESOLVED)
    assert can_move(S.VERIFYING, S.RECOVERED) and can_move(S.RECOVERED, S.RESOLVED)
    # Another round in the same incident, never after it ended.
    assert can_move(S.VERIFYING, S.INVESTIGATING) and can_move(S.RECOVERED, S.INVESTIGATING)
    assert not any(can_move(end, S.INVESTIGATING) for end in TERMINAL)
    assert not can_move(S.RECEIVED, S.EXECUTING)
    assert not can_move(S.RESOLVED, S.RECEIVED)
    assert set(ALLOWED) == set(S)
    assert {S.RESOLVED, S.ROLLED_BACK, S.FAILED, S.ESCALATED} == TERMINAL


def test_a_step_announced_in_a_later_round_is_not_taken_for_the_first_rounds() -> None:
    diagnosed = incident_event(EventType.DIAGNOSED, "supervisor", "inc-1", {})
    assert in_round(diagnosed, 1).event_id == "inc-1:diagnosed"
    second, third = in_round(diagnosed, 2).event_id, in_round(diagnosed, 3).event_id
    assert len({diagnosed.event_id, second, third}) == 3
    assert in_round(diagnosed, 2).event_id == second  # the same step twice: the same id
    # An id already named for its round (a watch look) is not named again by the store.
    assert in_round(in_round(diagnosed, 2), 2).event_id == second
