"""The incident store against the emulator, under the supervisor's own credentials."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from core.aws_requests import REQUESTS
from core.principals import Principal
from incidents.context_items import transcript
from incidents.lifecycle import IncidentStatus as S
from incidents.store import AlertMark, IncidentStore, Opened, audit_detail
from queues.events import EventEnvelope, new_event
from queues.topology import EventType
from tests.integration.conftest import RunningWorld


@pytest.fixture
def store(world: RunningWorld) -> IncidentStore:
    return IncidentStore(world.clients(Principal.SUPERVISOR)("dynamodb"))


def _open(store: IncidentStore, world: RunningWorld) -> Opened:
    return store.open_or_dedupe(
        f"fn-{uuid.uuid4().hex[:6]}",
        "errors",
        datetime.now(UTC),
        world.settings.incident_window_s,
        "test",
        {"why": "test"},
        announce=lambda i: [new_event(EventType.OPENED, "test", {}, incident_id=i)],
        alert_id="alert-1",
    )


def test_open_then_dedupe_counts_alerts_and_queues_one_announcement(
    store: IncidentStore, world: RunningWorld
) -> None:
    first = _open(store, world)
    incident = store.get(first.incident_id)
    assert incident is not None
    resource = incident.resource

    def alert(alert_id: str) -> Opened:
        return store.open_or_dedupe(
            resource,
            "errors",
            datetime.now(UTC),
            world.settings.incident_window_s,
            "test",
            {},
            announce=lambda i: [],
            alert_id=alert_id,
        )

    def count() -> int:
        found = store.get(first.incident_id)
        return found.alert_count if found else 0

    again = alert("alert-2")
    assert first.opened and not again.opened
    assert again.incident_id == first.incident_id and count() == 2
    # The same alert handled again (its worker died after counting it) counts once.
    alert("alert-2")
    assert count() == 2
    alert("alert-1")
    assert count() == 2
    alert("alert-3")
    assert count() == 3
    assert [e.event_type for _, e in store.pending_events(first.incident_id)] == [EventType.OPENED]


def test_alerts_taken_together_open_once_and_count_each_once(
    store: IncidentStore, world: RunningWorld
) -> None:
    resource, now = f"fn-{uuid.uuid4().hex[:6]}", datetime.now(UTC)
    window = world.settings.incident_window_s

    def announce(incident_id: str) -> list[EventEnvelope]:
        return [new_event(EventType.OPENED, "test", {}, incident_id=incident_id)]

    def take(*ids: str, signature: str = "errors") -> Opened:
        marks = [AlertMark(i, signature, {"alert": i}) for i in ids]
        return store.take_alerts(resource, now, window, "test", marks, announce)

    def count() -> int:
        found = store.get(first.incident_id)
        return found.alert_count if found else 0

    first = take("a1", "a2", "a3")
    assert first.opened and count() == 3
    # A batch with alerts counted before (their worker died after the write): only the
    # new ones count, and a new symptom among them joins.
    again = take("a2", "a4", "a3", "a5", signature="throttles")
    assert not again.opened and again.incident_id == first.incident_id
    assert count() == 5
    incident = store.get(first.incident_id)
    assert incident is not None and incident.symptoms == ["errors", "throttles"]
    assert again.symptoms == {"errors", "throttles"}
    take("a1", "a5")
    assert count() == 5
    # One alert delivered twice at once counts once, in one write as in several.
    take("a6", "a6", "a7")
    assert count() == 7
    assert [e.event_type for _, e in store.pending_events(first.incident_id)] == [EventType.OPENED]
    actions = [a["action"] for a in store.audit(first.incident_id)]
    assert actions == ["incident.opened", "symptom joined: throttles"]


def test_every_symptom_of_a_function_joins_its_open_incident(
    store: IncidentStore, world: RunningWorld
) -> None:
    window = world.settings.incident_window_s
    resource, now = f"fn-{uuid.uuid4().hex[:6]}", datetime.now(UTC)

    def alert(signature: str, at: datetime, alert_id: str) -> Opened:
        return store.open_or_dedupe(
            resource, signature, at, window, "test", {}, lambda _i: [], alert_id
        )

    errors = alert("errors", now, "a-errors")
    throttles = alert("throttles", now, "a-throttles")
    # The fault outlasts the window it began in: the next window's alert joins it too.
    later = alert("errors", now + timedelta(seconds=window), "a-later")
    assert errors.opened and not throttles.opened and not later.opened
    assert throttles.incident_id == later.incident_id == errors.incident_id
    incident = store.get(errors.incident_id)
    assert incident is not None and incident.symptoms == ["errors", "throttles"]
    assert incident.alert_count == 3
    joined = [a["action"] for a in store.audit(errors.incident_id)]
    assert joined == ["incident.opened", "symptom joined: throttles"]

    # Once that incident is over, the next window's alert opens a new one, even where the
    # process still knows the old one as the window's incident.
    for old, new in [(S.RECEIVED, S.INVESTIGATING), (S.INVESTIGATING, S.ESCALATED)]:
        assert store.transition(errors.incident_id, old, new, "test")
    fresh = store.take_alerts(
        resource,
        now + timedelta(seconds=window),
        window,
        "test",
        [AlertMark("a-fresh", "errors", {})],
        lambda _i: [],
        known=later,
    )
    assert fresh.opened and fresh.incident_id != errors.incident_id
    ended = store.get(errors.incident_id)
    assert ended is not None and ended.alert_count == 3


def test_alerts_for_a_known_open_incident_are_counted_in_one_request(
    store: IncidentStore, world: RunningWorld
) -> None:
    resource, now = f"fn-{uuid.uuid4().hex[:6]}", datetime.now(UTC)
    window = world.settings.incident_window_s

    def take(known: Opened | None, *ids: str, signature: str = "errors") -> Opened:
        marks = [AlertMark(i, signature, {"alert": i}) for i in ids]
        return store.take_alerts(resource, now, window, "test", marks, lambda _i: [], known)

    first = take(None, "a1")
    before = REQUESTS.snapshot()
    again = take(first, "a2", "a3", "a1")  # a1 was counted before: it counts once
    sent = REQUESTS.snapshot()
    sent.subtract(before)
    # Cancelled once for a1's marker, then written without it: no read.
    assert +sent == Counter({("dynamodb", "TransactWriteItems"): 2})
    assert again == Opened(first.incident_id, False, frozenset({"errors"}))
    # A new symptom is looked up and joined, as without knowing.
    joined = take(again, "a4", signature="throttles")
    assert joined.symptoms == {"errors", "throttles"}
    incident = store.get(first.incident_id)
    assert incident is not None and incident.alert_count == 4
    assert [a["action"] for a in store.audit(first.incident_id)] == [
        "incident.opened",
        "symptom joined: throttles",
    ]


def test_legal_moves_happen_once_and_illegal_or_stale_ones_are_no_ops(
    store: IncidentStore, world: RunningWorld
) -> None:
    incident = _open(store, world).incident_id
    assert store.transition(incident, S.RECEIVED, S.INVESTIGATING, "test")
    assert not store.transition(incident, S.RECEIVED, S.INVESTIGATING, "test")  # a duplicate
    assert not store.transition(incident, S.INVESTIGATING, S.RESOLVED, "test")  # not allowed
    item = store.get(incident)
    assert item is not None and item.status == S.INVESTIGATING and item.version == 2
    assert [a["action"] for a in store.audit(incident)] == [
        "incident.opened",
        "status RECEIVED -> INVESTIGATING",
    ]


def test_a_move_from_an_incident_read_before_others_wrote_still_happens_once(
    store: IncidentStore, world: RunningWorld
) -> None:
    """A caller hands the move the incident it read; a note appended since then (a newer
    version) loses that write, and the move is made again from a fresh read, not lost and
    not made twice. One read before the status moved on is no move at all."""
    incident = _open(store, world).incident_id
    read = store.get(incident)
    assert read is not None
    store.append_audit(incident, "test", "a note in between", {})
    assert store.transition(incident, S.RECEIVED, S.INVESTIGATING, "test", current=read)
    assert not store.transition(incident, S.RECEIVED, S.INVESTIGATING, "test", current=read)
    item = store.get(incident)
    assert item is not None and item.status == S.INVESTIGATING
    assert [a["action"] for a in store.audit(incident)] == [
        "incident.opened",
        "a note in between",
        "status RECEIVED -> INVESTIGATING",
    ]


def test_concurrent_audit_appends_do_not_lose_a_transition(
    store: IncidentStore, world: RunningWorld
) -> None:
    incident = _open(store, world).incident_id
    appenders = [
        threading.Thread(target=store.append_audit, args=(incident, "test", f"note {i}", {}))
        for i in range(8)
    ]
    for t in appenders:
        t.start()
    moved = store.transition(incident, S.RECEIVED, S.INVESTIGATING, "test")
    for t in appenders:
        t.join()
    assert moved
    seqs = [int(a["seq"]) for a in store.audit(incident)]
    assert sorted(seqs) == list(range(1, 11))  # opened + 8 notes + the move, none overwritten


def test_an_agent_run_s_entries_and_transcript_are_written_together_in_two_requests(
    store: IncidentStore, world: RunningWorld
) -> None:
    incident = _open(store, world).incident_id
    calls = [("tool_call", {"tool": f"tool-{i}"}) for i in range(3)]
    racers = [
        threading.Thread(target=store.append_audit, args=(incident, "test", f"note {i}", {}))
        for i in range(4)
    ]
    for t in racers:
        t.start()
    seqs = store.append_audits(incident, "agent", calls, context=(transcript("test"), {"n": 3}))
    for t in racers:
        t.join()
    # The calls' entries are consecutive, whoever else appends meanwhile, and nothing is
    # overwritten: opened, 4 notes, 3 calls.
    assert seqs == list(range(seqs[0], seqs[0] + 3))
    trail = store.audit(incident)
    assert sorted(int(a["seq"]) for a in trail) == list(range(1, 9))
    by_seq = {int(a["seq"]): a for a in trail}
    assert [audit_detail(by_seq[s])["tool"] for s in seqs] == ["tool-0", "tool-1", "tool-2"]
    assert store.get_context(incident, transcript("test")) == {"n": 3}
    # However many entries: one request for their sequence numbers, one write.
    before = REQUESTS.snapshot()
    store.append_audits(incident, "agent", calls * 4, context=(transcript("test"), {"n": 12}))
    sent = REQUESTS.snapshot()
    sent.subtract(before)
    assert +sent == Counter({("dynamodb", "UpdateItem"): 1, ("dynamodb", "TransactWriteItems"): 1})
    with pytest.raises(ValueError, match="do not fit one transaction"):
        store.append_audits(
            incident, "agent", [("tool_call", {})] * 100, context=(transcript("test"), {})
        )


def test_the_audit_trail_cannot_be_rewritten(store: IncidentStore, world: RunningWorld) -> None:
    incident = _open(store, world).incident_id
    with pytest.raises(store.ddb.exceptions.TransactionCanceledException):
        store.ddb.transact_write_items(
            TransactItems=[store._audit_put(incident, 1, "mallory", "rewritten", {})]
        )
    assert [a["actor"] for a in store.audit(incident)] == ["test"]


def test_an_alert_that_counts_nothing_is_noted_once(
    store: IncidentStore, world: RunningWorld
) -> None:
    incident = _open(store, world).incident_id
    detail = {"alert_type": "alert.alarm", "state": "OK"}
    assert store.note_alert(incident, "ok-1", "test", "alarm OK", detail)
    # The same alert handled again (a redelivery, a duplicate from SNS): nothing more.
    assert not store.note_alert(incident, "ok-1", "test", "alarm OK", detail)
    assert store.note_alert(incident, "ok-2", "test", "alarm OK", detail)
    actions = [a["action"] for a in store.audit(incident)]
    assert actions == ["incident.opened", "alarm OK", "alarm OK"]
    found = store.get(incident)
    assert found is not None and found.alert_count == 1  # noted, not counted
    # The markers say which alerts the incident has seen, as the survival judge reads them.
    assert all(store.alert_marked(incident, a) for a in ("alert-1", "ok-1", "ok-2"))
    assert not store.alert_marked(incident, "ok-3")


def test_alerts_racing_to_open_one_incident_open_it_once_and_join_no_symptom_twice(
    store: IncidentStore, world: RunningWorld
) -> None:
    resource, now = f"fn-{uuid.uuid4().hex[:6]}", datetime.now(UTC)
    window = world.settings.incident_window_s
    racers = 4
    start = threading.Barrier(racers)
    results: list[Opened] = []

    def take(i: int) -> None:
        start.wait(10)  # each looks the incident up before any has opened it
        mark = AlertMark(f"race-{i}", "errors", {"alert": i})
        results.append(store.take_alerts(resource, now, window, "test", [mark], lambda _i: []))

    threads = [threading.Thread(target=take, args=(i,)) for i in range(racers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len({r.incident_id for r in results}) == 1
    assert sum(r.opened for r in results) == 1
    incident = store.get(results[0].incident_id)
    assert incident is not None and incident.alert_count == racers
    # The losers counted on the winner's incident, whose symptom they share: no join.
    assert [a["action"] for a in store.audit(incident.incident_id)] == ["incident.opened"]
