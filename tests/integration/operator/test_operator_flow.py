"""What an operator does with the fleet running: a fix that waits for a person is shown,
refused unless bound to the calls shown, approved once, and runs; the incident's story
and postmortem read back; the pager channel (incident-approvals) hears of approvals,
escalations and dead letters; the watchdog escalates what is stuck, and leaves a fix whose
resolver still holds the function's lease."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from core.dynamodb import from_item, to_item
from core.principals import Principal
from emulation.world import wait_for
from incidents.incident_report import list_incidents
from incidents.leases import ResourceLeases
from incidents.lifecycle import IncidentStatus as S
from incidents.store import IncidentStore
from incidents.tables import INCIDENT_STATE
from queues.idempotency import COMPLETED, event_key
from queues.provision import queue_policy
from queues.tables import PROCESSED_EVENTS
from queues.ticks import tick_event
from tests.integration.conftest import RunningWorld

SECOND = "data-processor-2"


@pytest.fixture(scope="module")
def pager(approving_fleet: RunningWorld) -> str:
    """A queue subscribed to incident-approvals, where people are told what needs them."""
    admin = approving_fleet.clients(Principal.ADMIN)
    sqs, sns = admin("sqs"), admin("sns")
    url = sqs.create_queue(QueueName="pager")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    settings = approving_fleet.settings
    topic = f"arn:aws:sns:{settings.region}:{settings.account_id}:incident-approvals"
    # As on AWS, SNS delivers only where the queue's policy lets the topic send.
    sqs.set_queue_attributes(
        QueueUrl=url, Attributes={"Policy": json.dumps(queue_policy(arn, [topic]))}
    )
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
    return url


def _status(store: IncidentStore, incident_id: str) -> str | None:
    incident = store.get(incident_id)
    return incident.status.value if incident else None


def _paged(fleet: RunningWorld, url: str) -> list[dict[str, Any]]:
    sqs = fleet.clients(Principal.ADMIN)("sqs")
    seen: list[dict[str, Any]] = []
    while True:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        if not got:
            return seen
        for m in got:
            seen.append(json.loads(json.loads(m["Body"])["Message"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])


def _store(fleet: RunningWorld) -> IncidentStore:
    return IncidentStore(fleet.clients(Principal.OPERATOR)("dynamodb"))


def _verifying(writer: IncidentStore, resource: str) -> str:
    """An incident on `resource` taken to VERIFYING, as a resolver would leave it."""
    opened = writer.open_or_dedupe(
        resource, "errors", datetime.now(UTC), 1800, "test", {}, lambda _: [], f"{resource}-1"
    )
    path = ["RECEIVED", "INVESTIGATING", "DIAGNOSED", "PROPOSED", "APPROVED", "EXECUTING"]
    for old, new in zip(path, [*path[1:], "VERIFYING"], strict=True):
        assert writer.transition(opened.incident_id, S(old), S(new), "test")
    return opened.incident_id


def _idle_since(fleet: RunningWorld, incident_id: str) -> None:
    """As if the incident had sat in its status longer than the watchdog allows: its last
    update (what the watchdog reads) moved back past `stale_after_s`. The world keeps the
    default limit, so that the other incidents on it, slow on a busy machine, are not."""
    then = datetime.now(UTC) - timedelta(seconds=fleet.settings.stale_after_s + 60)
    fleet.clients(Principal.ADMIN)("dynamodb").update_item(
        TableName=INCIDENT_STATE.name,
        Key=to_item({"incident_id": incident_id}),
        UpdateExpression="SET updated_at = :then",
        ExpressionAttributeValues=to_item({":then": then.isoformat()}),
    )


def _awaiting_approval(store: IncidentStore) -> str:
    wait_for(
        lambda: bool(list_incidents(store, "AWAITING_APPROVAL")), 90, "a fix awaiting approval", 0.5
    )
    return str(list_incidents(store, "AWAITING_APPROVAL")[0]["incident_id"])


def test_a_fix_waits_for_a_person_and_runs_once_approved(
    fleet: RunningWorld, pager: str, tmp_path: Path
) -> None:
    store = _store(fleet)
    fleet.wait_healthy("data-processor")
    assert fleet.fleet("chaos", "revoke", "--target", "s3").returncode == 0
    incident_id = _awaiting_approval(store)
    shown = fleet.fleet("incidents", "show", incident_id)
    assert "awaiting approval until" in shown.stdout and "iam:PutRolePolicy" in shown.stdout
    request = json.loads(fleet.fleet("incidents", "show", incident_id, "--json").stdout)["approval"]
    digest = request["calls_digest"]

    unbound = fleet.fleet("approve", incident_id)  # no terminal, no digest: refused
    assert unbound.returncode == 2 and "--digest" in unbound.stderr
    wrong = fleet.fleet("approve", incident_id, "--digest", "0" * 12)
    assert wrong.returncode == 1 and "not the ones shown" in wrong.stderr
    approved = fleet.fleet("approve", incident_id, "--digest", digest[:12], "--as", "alice")
    assert approved.returncode == 0, approved.stderr
    assert "approved by alice (cli)" in approved.stdout
    again = fleet.fleet("approve", incident_id, "--digest", digest[:12])
    assert again.returncode == 1 and "not awaiting approval" in again.stderr

    # Recovered, then watched (the alarms back to OK) before it is resolved.
    wait_for(lambda: _status(store, incident_id) == "RESOLVED", 150, "RESOLVED", 0.5)
    report = json.loads(fleet.fleet("incidents", "show", incident_id, "--json").stdout)
    assert [(a["service"], a["operation"]) for a in report["actions"]] == [("iam", "PutRolePolicy")]
    assert report["approval"]["decided_by"] == "alice (cli)"
    assert any(e["actor"] == "alice (cli)" for e in report["timeline"])

    out = tmp_path / "postmortem.md"
    assert fleet.fleet("incidents", "postmortem", incident_id, "-o", str(out)).returncode == 0
    text = out.read_text()
    for heading in (
        "## Timeline",
        "## Hypotheses and evidence",
        "## Actions",
        "## Review and approvals",
        "## What to change",
    ):
        assert heading in text
    assert "alice (cli)" in text and "PutRolePolicy" in text

    paged = {(e["event_type"], e.get("incident_id")) for e in _paged(fleet, pager)}
    assert ("incident.awaiting_approval", incident_id) in paged


def test_a_rejected_fix_runs_nothing_and_escalates(fleet: RunningWorld) -> None:
    store = _store(fleet)
    # The second function: its escalated incident keeps every alert of its window for the
    # person who has it, and the world's other tests break data-processor.
    fleet.wait_healthy(SECOND)
    assert fleet.fleet("chaos", "throttle", "--function", SECOND).returncode == 0
    incident_id = _awaiting_approval(store)
    no_reason = fleet.fleet("reject", incident_id, "--reason", "")
    assert no_reason.returncode == 1
    rejected = fleet.fleet("reject", incident_id, "--reason", "change freeze", "--as", "bob")
    assert rejected.returncode == 0, rejected.stderr
    report = json.loads(fleet.fleet("incidents", "show", incident_id, "--json").stdout)
    assert report["status"] == "ESCALATED" and report["actions"] == []
    assert fleet.fleet("chaos", "restore", "--function", SECOND).returncode == 0


def test_the_watchdog_escalates_a_stuck_incident_and_reports_dead_letters(
    fleet: RunningWorld, pager: str
) -> None:
    store = _store(fleet)
    _paged(fleet, pager)
    # An incident nobody will work on: opened without the event that starts its investigation
    # (on a function of its own: data-processor's alerts join its incident of this window).
    writer = IncidentStore(fleet.clients(Principal.SUPERVISOR)("dynamodb"))
    opened = writer.open_or_dedupe(
        "stuck-fn", "errors", datetime.now(UTC), 1800, "test", {}, lambda _: [], "stuck-1"
    )
    assert opened.opened
    # Two fixes in VERIFYING past the limit: one whose resolver still renews the function's
    # lease (slow, not stuck), one whose lease ran out (its resolver died).
    leases = ResourceLeases(fleet.clients(Principal.ADMIN)("dynamodb"), lease_s=3600)
    held = _verifying(writer, "lease-held-fn")
    held_lease = leases.acquire("lease-held-fn", held)
    assert held_lease is not None
    lost = _verifying(writer, "lease-lost-fn")
    assert ResourceLeases(leases.ddb, lease_s=0.001).acquire("lease-lost-fn", lost) is not None
    for incident_id in (opened.incident_id, held, lost):
        _idle_since(fleet, incident_id)
    # And a poison message on the critic's queue: dead-lettered at once by the runtime.
    sqs = fleet.clients(Principal.ADMIN)("sqs")
    sqs.send_message(QueueUrl=sqs.get_queue_url(QueueName="critic")["QueueUrl"], MessageBody="{")

    wait_for(
        lambda: _status(store, opened.incident_id) == "ESCALATED",
        90,
        "the watchdog to escalate the stuck incident",
        1,
    )
    wait_for(lambda: _status(store, lost) == "ESCALATED", 90, "the abandoned fix escalated", 1)
    assert _status(store, held) == "VERIFYING"  # as idle, but its lease is alive
    assert any("stuck in VERIFYING" in json.dumps(e, default=str) for e in store.audit(lost))
    leases.release(held_lease)
    wait_for(lambda: _status(store, held) == "ESCALATED", 90, "the fix whose lease went", 1)
    paged: list[dict[str, Any]] = []

    def reported() -> bool:
        paged.extend(_paged(fleet, pager))
        return any(e["event_type"] == "fleet.dead_lettered" for e in paged)

    wait_for(reported, 60, "the dead letter to be reported", 1)

    # Two more ticks handled since: the same dead letter is not reported again.
    def handled(event_id: str) -> bool:
        item = store.ddb.get_item(
            TableName=PROCESSED_EVENTS.name,
            Key=to_item({"event_key": event_key("watchdog", event_id)}),
            ConsistentRead=True,
        ).get("Item")
        return bool(item) and from_item(item)["status"] == COMPLETED

    later = tick_event(datetime.now(UTC), fleet.settings.watchdog_tick_s).event_id
    slot = int(later.split(":")[1]) + 2
    wait_for(
        lambda: handled(f"tick:{slot}"),
        30,
        "two more watchdog ticks",
        0.5,
    )
    paged.extend(_paged(fleet, pager))
    reports = [e for e in paged if e["event_type"] == "fleet.dead_lettered"]
    assert [r["payload"]["queue"] for r in reports] == ["critic-dlq"]  # once, not every tick
    escalations = [e for e in paged if e["event_type"] == "incident.escalated"]
    assert any(e["incident_id"] == opened.incident_id for e in escalations)
    assert "stuck in RECEIVED" in json.dumps(escalations)
    assert not [i for i in list_incidents(store) if i["status"] not in ("RESOLVED", "ESCALATED")]
