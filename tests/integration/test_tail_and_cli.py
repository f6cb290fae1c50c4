"""`fleet tail` and the CLI's errors, as a user sees them."""

from __future__ import annotations

import json
import socket
from typing import Any

from emulation.world import wait_for
from incidents.store import IncidentStore
from tests.incident_records import (
    ESCALATED_BECAUSE,
    HOSTILE_LOG_LINE,
    NEXT_STEP,
    ROUND_2_BECAUSE,
    record_two_rounds_then_escalated,
)
from tests.integration.conftest import RunningWorld


def _depth(sqs: Any, url: str) -> int:
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    return sum(
        int(attrs[k])
        for k in (
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        )
    )


DELAY_S = 12


def _queue_url(sqs: Any, name: str) -> str:
    return str(sqs.get_queue_url(QueueName=name)["QueueUrl"])


def _empty(sqs: Any, url: str) -> None:
    # Not PurgeQueue: SQS allows one purge per queue per 60 s.
    while messages := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages"):
        for m in messages:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])


def test_tail_once_json_reports_the_depths_the_test_made(world: RunningWorld, admin: Any) -> None:
    sqs = admin("sqs")
    critic, watchdog_dlq = _queue_url(sqs, "critic"), _queue_url(sqs, "watchdog-dlq")
    _empty(sqs, critic)
    _empty(sqs, watchdog_dlq)
    for i in range(3):
        sqs.send_message(QueueUrl=critic, MessageBody=json.dumps({"n": i}))
    for i in range(2):
        sqs.send_message(QueueUrl=watchdog_dlq, MessageBody=json.dumps({"n": i}))
    # Delayed for longer than `fleet tail` takes to start and read on a loaded machine (2 s
    # was not: the message became visible before the snapshot, in the base code too).
    sqs.send_message(QueueUrl=critic, MessageBody="{}", DelaySeconds=DELAY_S)
    try:
        done = world.fleet("tail", "--once", "--json")
        assert done.returncode == 0, done.stderr
        snap = json.loads(done.stdout)
        by_stage = {q["stage"]: q for q in snap["queues"]}
        assert set(by_stage) == {"supervisor", "resolver", "critic", "watchdog"}
        assert by_stage["critic"]["visible"] == 3
        assert by_stage["critic"]["delayed"] == 1
        assert by_stage["watchdog"]["dlq_visible"] == 2
        assert by_stage["resolver"]["visible"] == 0
        assert snap["error"] is None
        assert set(snap["incidents"]) >= {"RECEIVED", "RESOLVED", "ESCALATED"}
    finally:
        _empty(sqs, watchdog_dlq)
        wait_for(
            lambda: _empty(sqs, critic) is None and _depth(sqs, critic) == 0,
            DELAY_S + 10,
            "the delayed message to be removed",
        )


def test_tail_shows_the_error_when_the_emulator_is_away(world: RunningWorld) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead_port = s.getsockname()[1]
    done = world.fleet(
        "tail", "--once", "--json", env={**world.env, "FLEET_EMULATOR_PORT": str(dead_port)}
    )
    assert done.returncode == 1
    snap = json.loads(done.stdout)
    assert "EndpointConnectionError" in snap["error"] or "Connect" in snap["error"]


def test_unknown_target_exits_2_naming_the_choices(world: RunningWorld) -> None:
    done = world.fleet("chaos", "revoke", "--target", "dynamodb")
    assert done.returncode == 2
    for choice in ("s3", "logs", "metrics", "sns", "all"):
        assert choice in done.stderr


def test_unknown_function_exits_2_naming_the_functions(world: RunningWorld) -> None:
    done = world.fleet("chaos", "throttle", "--function", "no-such-function")
    assert done.returncode == 2
    assert "data-processor" in done.stderr and "data-processor-2" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_a_second_world_is_refused_with_one_line(world: RunningWorld) -> None:
    done = world.fleet("up")
    assert done.returncode == 1
    assert "already running" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert world.process.poll() is None  # the running world is untouched


def test_a_port_in_use_is_refused_with_one_line(world: RunningWorld, tmp_path: Any) -> None:
    env = {**world.env, "FLEET_STATE_DIR": str(tmp_path)}
    done = world.fleet("up", "--port", str(world.settings.emulator_port), env=env)
    assert done.returncode == 1
    assert "in use" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_down_without_a_world_says_so(tmp_path: Any, world: RunningWorld) -> None:
    done = world.fleet("down", env={**world.env, "FLEET_STATE_DIR": str(tmp_path)})
    assert done.returncode == 1
    assert "no world is running" in done.stderr


def test_incidents_show_gives_a_person_the_escalation_in_text_and_json(
    world: RunningWorld, admin: Any
) -> None:
    incident_id = record_two_rounds_then_escalated(IncidentStore(admin("dynamodb")), "report-cli")
    shown = world.fleet("incidents", "show", incident_id, "--json")
    assert shown.returncode == 0, shown.stderr
    report = json.loads(shown.stdout)
    assert (report["symptoms"], report["round"]) == (["errors", "throttles"], 2)
    first, second = report["rounds"]
    assert first["diagnosis"]["fault_types"] == ["iam_permission_missing"]
    assert [a["operation"] for a in first["actions"]] == ["PutRolePolicy"]
    assert first["ended_because"] == ROUND_2_BECAUSE
    assert second["diagnosis"]["fault_types"] == ["code_bug", "config_drift"]
    handover = report["handover"]
    assert handover["needs_a_person"] and handover["why"] == ESCALATED_BECAUSE
    assert (handover["confidence"], handover["next_step"]) == (0.45, NEXT_STEP)
    assert handover["evidence"][0]["quote"] == HOSTILE_LOG_LINE
    assert handover["drifts"] and handover["ruled_out"] and handover["unseen"]
    assert handover["unexplained"] and handover["symptoms"]
    # Drift: the trail was read; nobody changed this (made-up) function.
    assert handover["who_changed"].startswith("nobody in CloudTrail's event history")
    assert report["recover_s"] is None and report["resolve_s"] is None

    text = world.fleet("incidents", "show", incident_id)
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[0].startswith(f"{incident_id}  ESCALATED  report-cli (errors, throttles)")
    assert lines[2] == f"WHAT A PERSON NEEDS: {ESCALATED_BECAUSE}"
    assert f"  next step: {NEXT_STEP}" in lines
    assert "\x1b" not in text.stdout  # the quoted log line cannot drive the terminal

    listed = world.fleet("incidents", "list", "--status", "ESCALATED")
    row = next(line for line in listed.stdout.splitlines() if line.startswith(incident_id))
    assert " errors,throttles " in row and row.endswith("round 2")
    rows = json.loads(world.fleet("incidents", "list", "--json").stdout)
    mine = next(r for r in rows if r["incident_id"] == incident_id)
    assert (mine["symptoms"], mine["round"]) == (["errors", "throttles"], 2)
