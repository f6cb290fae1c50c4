"""The incident store (DynamoDB): open-or-dedupe, guarded transitions, context, audit, outbox.

Every state change is one conditional transaction: the incident moves only from the status
and version the caller saw, the audit entry is put on a fresh sequence number, and the
events that announce the change are put in the incident's outbox. The runtime publishes
the outbox after the handler returns, so a crash between the change and its announcement
is finished by the redelivered message (consumers dedupe by event_id).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog

from core.dynamodb import from_item, to_item
from core.tracing import status_event
from incidents.context_items import ContextKey
from incidents.incident import Incident
from incidents.incident_context import IncidentContext, now_iso
from incidents.lifecycle import IncidentStatus
from incidents.state_machine import TERMINAL, can_move
from incidents.tables import INCIDENT_AUDIT, INCIDENT_CONTEXT, INCIDENT_STATE
from queues.events import EventEnvelope

log = structlog.get_logger()
ALERT_PREFIX = "alert#"
TRANSITION_ATTEMPTS = 5


def audit_detail(entry: dict[str, Any]) -> dict[str, Any]:
    """The detail of an audit entry (stored as JSON text)."""
    return dict(json.loads(entry.get("detail") or "{}"))


def fingerprint(resource: str, at: datetime, window_s: int) -> str:
    """Alerts for one resource in one time window: one incident, whatever their symptom
    (errors, throttles, a failure report): two incidents on one function would each
    send a resolver to fix it."""
    bucket = int(at.timestamp()) // window_s
    return f"{resource}|{bucket * window_s}"


def generation(fp: str, n: int) -> str:
    """The fingerprint of a window's `n`th incident (the fault came back after the one
    before was resolved)."""
    return fp if n == 1 else f"{fp}#{n}"


def incident_id_for(fp: str) -> str:
    return "inc-" + hashlib.sha256(fp.encode()).hexdigest()[:20]


def in_round(event: EventEnvelope, round_number: int) -> EventEnvelope:
    """An incident's step announced in a later round gets an id of its own: its ids name
    the incident and the step (so a step announced twice dedupes), and round 2's diagnosis
    must not pass for round 1's."""
    suffix = f"@round{round_number}"
    if round_number <= 1 or event.incident_id is None or event.event_id.endswith(suffix):
        return event
    return event.model_copy(update={"event_id": f"{event.event_id}{suffix}"})


class StoreContention(Exception):
    """Too many concurrent writers on one incident: retryable (the message comes back)."""


# A transaction holds at most 100 items (DynamoDB's limit).
MAX_TRANSACTION_ITEMS = 100
# An alert's marker each, and the count.
MAX_ALERTS_PER_WRITE = MAX_TRANSACTION_ITEMS - 1


@dataclass(frozen=True)
class AlertMark:
    """One alert to count: its id (a marker, so it counts once), its symptom, and what the
    audit records of it if it opens the incident or brings a new symptom."""

    alert_id: str
    signature: str
    detail: dict[str, Any]


@dataclass(frozen=True)
class Opened:
    incident_id: str
    opened: bool  # False: an alert for an incident already open (its count went up)
    # The incident's symptoms as the write left them: what a later write of the same
    # symptoms may take for known (`take_alerts`' `known`).
    symptoms: frozenset[str]
    # The incident's trace (its first alert's span), when the write knew it.
    trace_parent: str | None = None


class _IncidentClosed(Exception):
    """The incident a count was meant for has ended since it was known."""


class IncidentStore(IncidentContext):
    def bound(
        self, on_touch: Callable[[str], None], on_announce: Callable[[str], None]
    ) -> IncidentStore:
        return IncidentStore(self.ddb, on_touch, on_announce)

    # ------------------------------------------------------------------ reads

    def get(self, incident_id: str) -> Incident | None:
        item = self.ddb.get_item(
            TableName=INCIDENT_STATE.name,
            Key=to_item({"incident_id": incident_id}),
            ConsistentRead=True,
        ).get("Item")
        return Incident.model_validate(from_item(item)) if item else None

    def audit(self, incident_id: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        for page in self.ddb.get_paginator("query").paginate(
            TableName=INCIDENT_AUDIT.name,
            KeyConditionExpression="incident_id = :i",
            ExpressionAttributeValues=to_item({":i": incident_id}),
            ConsistentRead=True,
        ):
            items.extend(from_item(i) for i in page["Items"])
        return items

    def by_status(self, status: IncidentStatus, updated_since: str | None = None) -> list[Incident]:
        """Incidents in a status (only those updated since a time, if given: the index is
        ordered by update time, so a long history costs nothing)."""
        condition, values = "#s = :s", {":s": status.value}
        if updated_since:
            condition += " AND updated_at >= :since"
            values[":since"] = updated_since
        items: list[dict[str, Any]] = []
        for page in self.ddb.get_paginator("query").paginate(
            TableName=INCIDENT_STATE.name,
            IndexName="by-status",
            KeyConditionExpression=condition,
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues=to_item(values),
        ):
            items.extend(from_item(i) for i in page["Items"])
        return [Incident.model_validate(i) for i in items]

    def count_by_status(self) -> dict[str, int]:
        """How many incidents are in each status (one COUNT query per status)."""
        counts = {}
        for status in IncidentStatus:
            answer = self.ddb.query(
                TableName=INCIDENT_STATE.name,
                IndexName="by-status",
                KeyConditionExpression="#s = :s",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues={":s": {"S": status.value}},
                Select="COUNT",
            )
            counts[status.value] = int(answer["Count"])
        return counts

    # ------------------------------------------------------------------ writes

    def _audit_put(
        self, incident_id: str, seq: int, actor: str, action: str, detail: dict[str, Any]
    ) -> dict[str, Any]:
        return {
            "Put": {
                "TableName": INCIDENT_AUDIT.name,
                "Item": to_item(
                    {
                        "incident_id": incident_id,
                        "seq": seq,
                        "at": now_iso(),
                        "actor": actor,
                        "action": action,
                        "detail": json.dumps(detail, default=str),
                    }
                ),
                # Append-only: a sequence number is written once, never overwritten.
                "ConditionExpression": "attribute_not_exists(seq)",
            }
        }

    def open_or_dedupe(
        self,
        resource: str,
        signature: str,
        at: datetime,
        window_s: int,
        actor: str,
        detail: dict[str, Any],
        announce: Callable[[str], list[EventEnvelope]],
        alert_id: str,
    ) -> Opened:
        """Open the resource's incident, or count one more alert on the one open (one alert
        of `take_alerts`)."""
        return self.take_alerts(
            resource, at, window_s, actor, [AlertMark(alert_id, signature, detail)], announce
        )

    def take_alerts(
        self,
        resource: str,
        at: datetime,
        window_s: int,
        actor: str,
        alerts: list[AlertMark],
        announce: Callable[[str], list[EventEnvelope]],
        known: Opened | None = None,
        trace_parent: str | None = None,
    ) -> Opened:
        """Open the resource's incident with the first of `alerts` and count the rest on it,
        or count them all on the one open: in one write however many they are (up to
        MAX_ALERTS_PER_WRITE).

        Each alert's `signature` is its symptom (errors, throttles...): every symptom of the
        resource joins its open incident, which records each symptom it has seen.
        `announce(incident_id)` gives the events that announce a newly opened incident.
        Each alert (by `alert_id`) counts once, even if its handler runs again after a crash:
        a marker per alert in the incident's context is written in the same transaction as
        the count.

        `known` is what an earlier write for this resource and window answered. While that
        incident is open it is the one these alerts belong to, so alerts with no new symptom
        are counted on it without reading anything first: the count is written on condition
        that the incident is still open, and if it has ended meanwhile, the incident is
        looked up as if nothing were known.

        `trace_parent`: the first alert's span, kept as the trace of an incident it opens.
        """
        if not 0 < len(alerts) <= MAX_ALERTS_PER_WRITE:
            raise ValueError(f"{len(alerts)} alerts in one write (1 to {MAX_ALERTS_PER_WRITE})")
        # One alert delivered twice at once (SNS delivers at least once) is one marker: a
        # transaction may not name an item twice.
        distinct: dict[str, AlertMark] = {}
        for alert in alerts:
            distinct.setdefault(alert.alert_id, alert)
        alerts = list(distinct.values())
        signatures = {a.signature for a in alerts}
        if known is not None and signatures <= known.symptoms:
            try:
                self._count(known.incident_id, alerts, set(known.symptoms), actor, open_only=True)
            except _IncidentClosed:
                log.info("known incident has ended", incident_id=known.incident_id)
            else:
                self.on_touch(known.incident_id)
                log.info("alerts counted", incident_id=known.incident_id, alerts=len(alerts))
                return Opened(known.incident_id, False, known.symptoms, known.trace_parent)
        fp, incident_id, current = self._incident_for(resource, at, window_s)
        self.on_touch(incident_id)
        rest, seen = alerts, set(current.symptoms or [current.signature]) if current else set()
        opened, trace = False, current.trace_parent if current else None
        if current is None:
            first = alerts[0]
            item = self._new_incident(incident_id, fp, resource, first.signature, trace_parent)
            if self._open(incident_id, item, first.alert_id, actor, first.detail, announce):
                log.info("incident opened", incident_id=incident_id, fingerprint=fp)
                opened, rest, seen, trace = True, alerts[1:], {first.signature}, trace_parent
            else:  # a concurrent alert opened it first: count them all on it
                winner = self.get(incident_id)
                seen = set(winner.symptoms or [winner.signature]) if winner else set()
                trace = winner.trace_parent if winner else None
        if rest:
            self._count(incident_id, rest, seen, actor)
            log.info("alerts counted", incident_id=incident_id, alerts=len(rest))
        return Opened(incident_id, opened, frozenset(seen | signatures), trace)

    def _new_incident(
        self,
        incident_id: str,
        fp: str,
        resource: str,
        signature: str,
        trace_parent: str | None = None,
    ) -> dict[str, Any]:
        now = now_iso()
        return {
            **({"trace_parent": trace_parent} if trace_parent else {}),
            "incident_id": incident_id,
            "fingerprint": fp,
            "resource": resource,
            "signature": signature,
            "symptoms": {signature},
            "status": IncidentStatus.RECEIVED.value,
            "version": 1,
            "alert_count": 1,
            "opened_at": now,
            "updated_at": now,
            "last_alert_at": now,
            "audit_seq": 1,
            "round": 1,
        }

    def _count(
        self,
        incident_id: str,
        alerts: list[AlertMark],
        seen: set[str],
        actor: str,
        open_only: bool = False,
    ) -> None:
        """Count alerts on an incident: their markers and the count in one transaction.
        Markers already there (alerts handled before a crash) leave the transaction
        cancelled with their reasons; it is written again without them. `open_only`: the
        count is written only while the incident is open (_IncidentClosed if it has ended).
        """
        pending = list(alerts)
        for _ in range(TRANSITION_ATTEMPTS):
            if not pending:
                return
            symptoms = {a.signature for a in pending}
            try:
                self.ddb.transact_write_items(
                    TransactItems=[
                        *(self._alert_marker(incident_id, a.alert_id) for a in pending),
                        self._count_update(incident_id, len(pending), symptoms, open_only),
                    ]
                )
            except self.ddb.exceptions.TransactionCanceledException as exc:
                reasons = exc.response.get("CancellationReasons", [])
                count_refused = (
                    len(reasons) == len(pending) + 1
                    and reasons[-1].get("Code") == "ConditionalCheckFailed"
                )
                if open_only and count_refused:
                    raise _IncidentClosed(incident_id) from None
                counted = {
                    a.alert_id
                    for a, reason in zip(pending, reasons, strict=False)
                    if reason.get("Code") == "ConditionalCheckFailed"
                }
                if not counted:  # a conflict, or the incident is gone: the message comes back
                    raise StoreContention(
                        f"{incident_id}: could not count {len(pending)} alert(s)"
                    ) from None
                log.info("alerts already counted", incident_id=incident_id, alerts=len(counted))
                pending = [a for a in pending if a.alert_id not in counted]
                continue
            for signature in sorted(symptoms - seen):
                detail = next(a.detail for a in pending if a.signature == signature)
                self.append_audit(incident_id, actor, f"symptom joined: {signature}", detail)
            return
        raise StoreContention(f"{incident_id}: could not count {len(pending)} alert(s)")

    @staticmethod
    def _count_update(
        incident_id: str, alerts: int, symptoms: set[str], open_only: bool = False
    ) -> dict[str, Any]:
        """`alerts` more on the incident's count, its symptoms joined, if it exists (and,
        `open_only`, has not ended)."""
        values: dict[str, Any] = {":n": alerts, ":now": now_iso(), ":symptoms": symptoms}
        condition = "attribute_exists(incident_id)"
        names = {}
        if open_only:
            ended = {f":ended{i}": s.value for i, s in enumerate(sorted(TERMINAL))}
            values |= ended
            names = {"#s": "status"}
            condition += f" AND NOT #s IN ({', '.join(ended)})"
        return {
            "Update": {
                "TableName": INCIDENT_STATE.name,
                "Key": to_item({"incident_id": incident_id}),
                "UpdateExpression": (
                    "ADD alert_count :n, symptoms :symptoms SET last_alert_at = :now"
                ),
                "ConditionExpression": condition,
                "ExpressionAttributeValues": to_item(values),
                **({"ExpressionAttributeNames": names} if names else {}),
            }
        }

    def _incident_for(
        self, resource: str, at: datetime, window_s: int
    ) -> tuple[str, str, Incident | None]:
        """The fingerprint and id an alert on `resource` at `at` belongs to, and the incident
        if it exists: the one still open from the window before (a fault outlasts a window
        boundary), else the window's own."""
        before = self._newest(fingerprint(resource, at - timedelta(seconds=window_s), window_s))
        if before is not None and before.status not in TERMINAL:
            return before.fingerprint, before.incident_id, before
        return self._generation_for(fingerprint(resource, at, window_s), at)

    def _newest(self, fp: str) -> Incident | None:
        """The newest generation of a window's incident, if the window has one."""
        latest = None
        for n in range(1, 1000):
            found = self.get(incident_id_for(generation(fp, n)))
            if found is None:
                return latest
            latest = found
        return latest

    def _generation_for(self, fp: str, at: datetime) -> tuple[str, str, Incident | None]:
        """The fingerprint, id and incident (None: not opened yet) an alert at `at` belongs
        to: the window's incident, or a new one if that was resolved before the alert (the
        fault came back)."""
        n = 1
        while True:
            gfp = generation(fp, n)
            incident_id = incident_id_for(gfp)
            current = self.get(incident_id)
            if (
                current is None
                or current.status != IncidentStatus.RESOLVED
                or datetime.fromisoformat(current.closed_at or current.updated_at) > at
            ):
                return gfp, incident_id, current
            n += 1

    def current_incident(self, resource: str, at: datetime, window_s: int) -> str | None:
        """The id of the resource's newest incident in this window, if any."""
        newest = self._newest(fingerprint(resource, at, window_s))
        return newest.incident_id if newest else None

    def _open(
        self,
        incident_id: str,
        item: dict[str, Any],
        alert_id: str,
        actor: str,
        detail: dict[str, Any],
        announce: Callable[[str], list[EventEnvelope]],
    ) -> bool:
        """The incident, its first alert's marker, audit entry and announcement, at once.
        False if a concurrent alert opened it first."""
        try:
            self.ddb.transact_write_items(
                TransactItems=[
                    {
                        "Put": {
                            "TableName": INCIDENT_STATE.name,
                            "Item": to_item(item),
                            "ConditionExpression": "attribute_not_exists(incident_id)",
                        }
                    },
                    self._alert_marker(incident_id, alert_id),
                    self._audit_put(incident_id, 1, actor, "incident.opened", detail),
                    *self._outbox_puts(incident_id, announce(incident_id)),
                ]
            )
        except self.ddb.exceptions.TransactionCanceledException:
            return False
        return True

    @staticmethod
    def _alert_key(incident_id: str, alert_id: str) -> dict[str, Any]:
        return {"incident_id": incident_id, "item": ALERT_PREFIX + alert_id}

    def _alert_marker(self, incident_id: str, alert_id: str) -> dict[str, Any]:
        return {
            "Put": {
                "TableName": INCIDENT_CONTEXT.name,
                "Item": to_item({**self._alert_key(incident_id, alert_id), "at": now_iso()}),
                "ConditionExpression": "attribute_not_exists(#item)",
                "ExpressionAttributeNames": {"#item": "item"},
            }
        }

    def alert_marked(self, incident_id: str, alert_id: str) -> bool:
        """Whether the alert was counted or noted on the incident: its marker exists."""
        return "Item" in self.ddb.get_item(
            TableName=INCIDENT_CONTEXT.name,
            Key=to_item(self._alert_key(incident_id, alert_id)),
            ConsistentRead=True,
        )

    def transition(
        self,
        incident_id: str,
        expected: IncidentStatus,
        new: IncidentStatus,
        actor: str,
        detail: dict[str, Any] | None = None,
        announce: list[EventEnvelope] | None = None,
        round_number: int | None = None,
        current: Incident | None = None,
    ) -> bool:
        """Move the incident from `expected` to `new`, with its audit entry and events
        (and into round `round_number`, when a move starts another round). `current`: the
        incident as the caller has just read it, to write from without reading it again
        (the write is conditional on its version, so a stale one only costs a retry).

        False (and a log line, not an exception) when the move is illegal or stale: the
        incident is not in `expected` any more, e.g. a duplicate or late message.
        """
        self.on_touch(incident_id)
        if not can_move(expected, new):
            log.warning(
                "illegal transition refused",
                incident_id=incident_id,
                expected=expected.value,
                new=new.value,
            )
            return False
        # A race with another writer (an audit append, a competing transition) cancels the
        # transaction; read again and retry while the move is still the right one.
        known = current if current is not None and current.status == expected else None
        for _attempt in range(TRANSITION_ATTEMPTS):
            current, known = known or self.get(incident_id), None
            if current is None or current.status != expected:
                log.info(
                    "stale transition ignored",
                    incident_id=incident_id,
                    expected=expected.value,
                    new=new.value,
                    actual=current and current.status.value,
                )
                return False
            version, prev_seq = current.version, current.audit_seq
            try:
                self.ddb.transact_write_items(
                    TransactItems=[
                        {
                            "Update": {
                                "TableName": INCIDENT_STATE.name,
                                "Key": to_item({"incident_id": incident_id}),
                                "UpdateExpression": (
                                    "SET #s = :new, version = :next, updated_at = :now, "
                                    "audit_seq = :seq"
                                    + (", closed_at = :now" if new in TERMINAL else "")
                                    + (", #round = :round" if round_number else "")
                                ),
                                "ConditionExpression": (
                                    "#s = :expected AND version = :version AND "
                                    "(attribute_not_exists(audit_seq) OR audit_seq = :prev)"
                                ),
                                "ExpressionAttributeNames": {
                                    "#s": "status",
                                    **({"#round": "round"} if round_number else {}),
                                },
                                "ExpressionAttributeValues": to_item(
                                    {
                                        **({":round": round_number} if round_number else {}),
                                        ":new": new.value,
                                        ":expected": expected.value,
                                        ":version": version,
                                        ":next": version + 1,
                                        ":now": now_iso(),
                                        ":prev": prev_seq,
                                        ":seq": prev_seq + 1,
                                    }
                                ),
                            }
                        },
                        self._audit_put(
                            incident_id,
                            prev_seq + 1,
                            actor,
                            f"status {expected.value} -> {new.value}",
                            detail or {},
                        ),
                        *self._outbox_puts(
                            incident_id,
                            [in_round(e, round_number or current.round) for e in announce or []],
                        ),
                    ]
                )
                break
            except self.ddb.exceptions.TransactionCanceledException:
                continue
        else:
            raise StoreContention(
                f"{incident_id}: {expected.value} -> {new.value} lost {TRANSITION_ATTEMPTS} "
                "races in a row; the message will be retried"
            )
        log.info("incident moved", incident_id=incident_id, old=expected.value, new=new.value)
        status_event(expected.value, new.value)
        return True

    def note_alert(
        self, incident_id: str, alert_id: str, actor: str, action: str, detail: dict[str, Any]
    ) -> bool:
        """An audit entry for an alert that counts nothing (an alarm back to OK), once per
        alert however often it is handled: the alert's marker is written with the entry.
        False if it was noted before."""
        if self.alert_marked(incident_id, alert_id):
            return False
        seq = self._next_audit_seq(incident_id)
        try:
            self.ddb.transact_write_items(
                TransactItems=[
                    self._alert_marker(incident_id, alert_id),
                    self._audit_put(incident_id, seq, actor, action, detail),
                ]
            )
        except self.ddb.exceptions.TransactionCanceledException as exc:
            reasons = exc.response.get("CancellationReasons", [])
            if reasons and reasons[0].get("Code") == "ConditionalCheckFailed":
                return False  # noted meanwhile by another delivery of the same alert
            raise
        return True

    def _next_audit_seq(self, incident_id: str) -> int:
        return self._reserve_audit_seqs(incident_id, 1)[0]

    def _reserve_audit_seqs(self, incident_id: str, count: int) -> range:
        """`count` sequence numbers of the incident's audit trail, taken in one request."""
        answer = self.ddb.update_item(
            TableName=INCIDENT_STATE.name,
            Key=to_item({"incident_id": incident_id}),
            UpdateExpression="ADD audit_seq :count",
            ConditionExpression="attribute_exists(incident_id)",
            ExpressionAttributeValues=to_item({":count": count}),
            ReturnValues="UPDATED_NEW",
        )
        last = int(from_item(answer["Attributes"])["audit_seq"])
        return range(last - count + 1, last + 1)

    def append_audit(
        self, incident_id: str, actor: str, action: str, detail: dict[str, Any]
    ) -> int:
        """An audit entry outside a transition (a tool call, a note). Returns its sequence."""
        return self.append_audits(incident_id, actor, [(action, detail)])[0]

    def append_audits(
        self,
        incident_id: str,
        actor: str,
        entries: Sequence[tuple[str, dict[str, Any]]],
        context: tuple[ContextKey, dict[str, Any]] | None = None,
    ) -> list[int]:
        """Audit entries outside a transition, (action, detail) each, in one transaction
        with `context` (a context item to write with them, if given): all or none, two
        requests however many (one at a time took two each). Returns their sequences."""
        if len(entries) + (context is not None) > MAX_TRANSACTION_ITEMS:
            raise ValueError(
                f"{len(entries)} audit entries do not fit one transaction "
                f"({MAX_TRANSACTION_ITEMS} items)"
            )
        if not entries and context is None:
            return []
        seqs = list(self._reserve_audit_seqs(incident_id, len(entries))) if entries else []
        items = [
            self._audit_put(incident_id, seq, actor, action, detail)
            for seq, (action, detail) in zip(seqs, entries, strict=True)
        ]
        if context is not None:
            item, data = context
            row = self.context_item(incident_id, item, data)
            items.append({"Put": {"TableName": INCIDENT_CONTEXT.name, "Item": row}})
        self.ddb.transact_write_items(TransactItems=items)
        return seqs
