"""An incident's report, its terminal view and its postmortem, read from records laid out as
the store keeps them (audit entries with their JSON detail, context items under their
names, a finished round's under `round{n}#`)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from markdown_it import MarkdownIt  # comes with rich (a runtime dependency)

from core.change_history import Change, ChangeHistory
from incidents.context_items import ContextItem, ContextKey, archived, transcript
from incidents.diagnosis import Diagnosis, FaultType
from incidents.incident import Incident
from incidents.incident_report import WHO_CHANGED_UNSEEN, IncidentReport, load_report
from incidents.lifecycle import IncidentStatus as S
from incidents.postmortem import postmortem_markdown
from incidents.report_text import render_text
from tests.incident_records import (
    ESCALATED_BECAUSE,
    FUNCTION,
    HOSTILE_LOG_LINE,
    IAM_CALL,
    NEXT_STEP,
    ROUND_2_BECAUSE,
    round_1_diagnosis,
    round_1_proposal,
    round_1_verification,
    round_2_diagnosis,
)

OPENED = datetime(2026, 11, 29, 10, 0, tzinfo=UTC)


class Recorded:
    """One incident's records as the store returns them."""

    def __init__(self, symptoms: list[str], round_number: int = 1) -> None:
        self.incident_id = "inc-test"
        self.symptoms, self.round = symptoms, round_number
        self.status = S.RECEIVED
        self.entries: list[dict[str, Any]] = []
        self.items: dict[str, dict[str, Any]] = {}
        self.closed_at: str | None = None
        self.note(0, "supervisor", "incident.opened", {"alert_event_id": "a-1"})

    def note(self, at_s: float, actor: str, action: str, detail: dict[str, Any]) -> None:
        self.entries.append(
            {
                "incident_id": self.incident_id,
                "seq": len(self.entries) + 1,
                "at": (OPENED + timedelta(seconds=at_s)).isoformat(timespec="milliseconds"),
                "actor": actor,
                "action": action,
                "detail": json.dumps(detail),
            }
        )

    def move(self, at_s: float, new: S, **detail: Any) -> None:
        self.note(at_s, "resolver", f"status {self.status} -> {new}", detail)
        self.status = new
        if new in (S.RESOLVED, S.ESCALATED):
            self.closed_at = self.entries[-1]["at"]

    def put(self, item: ContextItem | ContextKey, data: dict[str, Any]) -> None:
        self.items[item] = data

    # What a report reads (incidents.incident_report.ReportSource).
    def get(self, incident_id: str) -> Incident | None:
        if incident_id != self.incident_id:
            return None
        return Incident(
            incident_id=self.incident_id,
            fingerprint=f"{FUNCTION}|0",
            resource=FUNCTION,
            signature=self.symptoms[0],
            symptoms=self.symptoms,
            status=self.status,
            version=len(self.entries),
            alert_count=3,
            opened_at=OPENED.isoformat(timespec="milliseconds"),
            updated_at=self.entries[-1]["at"],
            last_alert_at=self.entries[0]["at"],
            closed_at=self.closed_at,
            audit_seq=len(self.entries),
            round=self.round,
        )

    def audit(self, incident_id: str) -> list[dict[str, Any]]:
        return list(reversed(self.entries))  # the store promises no order: seq orders them

    def get_context(
        self, incident_id: str, item: ContextItem | ContextKey
    ) -> dict[str, Any] | None:
        return self.items.get(item)


def _report(recorded: Recorded) -> IncidentReport:
    report = load_report(recorded, recorded.incident_id)
    assert report is not None
    return report


def _round_1(r: Recorded) -> None:
    """Round 1: restore IAM; it verified its part and runs still failed."""
    r.move(1, S.INVESTIGATING)
    r.move(5, S.DIAGNOSED)
    r.move(6, S.PROPOSED)
    r.move(7, S.APPROVED)
    r.move(8, S.EXECUTING)
    r.note(9, "resolver", "api_call", {**IAM_CALL.model_dump(), "outcome": "ok"})
    r.move(10, S.VERIFYING)


def _two_rounds_then_escalated() -> Recorded:
    r = Recorded(["errors", "throttles"], round_number=2)
    _round_1(r)
    r.move(30, S.INVESTIGATING, round=2, reason=ROUND_2_BECAUSE)
    for item, data in (
        (ContextItem.DIAGNOSIS, round_1_diagnosis()),
        (ContextItem.PROPOSAL, round_1_proposal()),
        (ContextItem.VERIFICATION, round_1_verification()),
        (transcript("diagnosis"), {"calls": [{}] * 4, "prompt_tokens": 1000}),
    ):
        r.put(archived(1, item), data)
    r.put(ContextItem.DIAGNOSIS, round_2_diagnosis())
    r.put(transcript("diagnosis"), {"calls": [{}] * 6, "prompt_tokens": 2000})
    r.move(40, S.ESCALATED, reason=ESCALATED_BECAUSE)
    return r


def test_each_round_is_read_back_from_its_own_records() -> None:
    report = _report(_two_rounds_then_escalated())
    assert (report.round, [r.number for r in report.rounds]) == (2, [1, 2])
    first, second = report.rounds
    assert first.diagnosis == round_1_diagnosis()
    assert first.verification == round_1_verification()
    assert [a["operation"] for a in first.actions] == ["PutRolePolicy"]
    assert (first.ended_at, first.ended_because) == (second.started_at, ROUND_2_BECAUSE)
    assert second.diagnosis == round_2_diagnosis() == report.diagnosis
    assert second.actions == [] and second.ended_at is None
    # The incident's whole cost and every call it made, over both rounds.
    assert (report.tool_calls, report.prompt_tokens) == (10, 3000)
    assert [a["operation"] for a in report.actions] == ["PutRolePolicy"]
    assert [e.round for e in report.timeline if e.action.endswith("-> INVESTIGATING")] == [1, 2]
    assert report.reached(S.DIAGNOSED) is not None and report.reached(S.DIAGNOSED, 2) is None
    assert report.symptoms == ["errors", "throttles"]


def test_an_escalation_says_what_a_person_needs() -> None:
    report = _report(_two_rounds_then_escalated())
    h = report.handover
    assert h.needs_a_person and h.why == ESCALATED_BECAUSE
    assert (h.diagnosed_in_round, h.confidence) == (2, 0.45)
    assert h.fault_types == [FaultType.CODE_BUG, FaultType.CONFIG_DRIFT]
    assert h.next_step == NEXT_STEP
    assert h.evidence[0].quote == HOSTILE_LOG_LINE
    assert h.who_changed == WHO_CHANGED_UNSEEN  # drift was found: who made it is not visible
    # `--json` prints the model: everything above is in it.
    dumped = report.model_dump(mode="json")
    assert dumped["handover"]["ruled_out"] == [
        "iam: at baseline (restored in round 1)",
        "concurrency: at baseline",
    ]
    assert dumped["handover"]["unseen"] == ["logs before 10:02: the log group has none"]
    assert dumped["rounds"][0]["ended_because"] == ROUND_2_BECAUSE
    assert dumped["recover_s"] is None and dumped["resolve_s"] is None


def test_the_terminal_puts_the_account_first_and_sends_no_escape_sequence() -> None:
    text = render_text(_report(_two_rounds_then_escalated()))
    lines = text.splitlines()
    assert lines[0].startswith("inc-test  ESCALATED  data-processor (errors, throttles)")
    assert lines[0].endswith("round 2")
    assert lines[2] == f"WHAT A PERSON NEEDS: {ESCALATED_BECAUSE}"
    account = text[: text.index("timeline:")]
    for shown in (
        "best hypothesis: Runs fail with a KeyError",
        "(code_bug, config_drift, confidence 0.45)",
        f"next step: {NEXT_STEP}",
        "- configuration: DATA_PREFIX is 'drifted/' (baseline 'input/')",
        "- iam: at baseline (restored in round 1)",
        "no drift explains:",
        "- logs before 10:02: the log group has none",
        f"who made the change: {WHO_CHANGED_UNSEEN}",
        "<script>window.__owned = 1</script>",
    ):
        assert shown in account, shown
    assert "\x1b" not in text and "\\x1b[2J" in text
    assert "  -- round 2 --" in lines
    assert any(line.startswith("round 1 (started") and ROUND_2_BECAUSE in line for line in lines)
    assert "    PutRolePolicy" not in text and "    iam:PutRolePolicy(" in text


# A person's change, as CloudTrail's event history tells it; the session name is theirs to
# choose, so it is data like any log line.
BY_HAND = Change(
    at=datetime(2026, 12, 8, 5, 2, 11, tzinfo=UTC),
    event="UpdateFunctionConfiguration20150331v2",
    source="lambda.amazonaws.com",
    resource="data-processor",
    who="AssumedRole ops/<img src=x onerror=alert(1)>",
    who_arn=None,
    by_fleet=False,
)


def test_the_postmortem_has_the_account_a_section_per_round_and_escapes_the_record() -> None:
    history = ChangeHistory(
        looked_up=["data-processor"], start=BY_HAND.at, end=None, changes=[BY_HAND]
    )
    report = _report(_two_rounds_then_escalated()).model_copy(update={"change_history": history})
    md = postmortem_markdown(report)
    headings = [line for line in md.splitlines() if line.startswith("#")]
    assert headings[:3] == [
        "# Postmortem: data-processor (errors, throttles), inc-test",
        "## Summary",
        "## Escalation: what a person needs",
    ]
    assert headings.index("## Round 1") < headings.index("## Round 2")
    assert headings.count("### Hypotheses and evidence") == 2
    account = md[md.index("## Escalation") : md.index("## Timeline")]
    # The model's prose is escaped as Markdown: DATA_PREFIX does not turn italic.
    assert "**Next step for a person:** Read the failing batch in s3://data/input/" in account
    assert "restore DATA\\_PREFIX if unintended" in account
    assert (
        "**Who made the change:** UpdateFunctionConfiguration20150331v2 on data-processor by "
        "AssumedRole ops/\\<img src=x onerror=alert(1)> at 2026-12-08T05:02:11Z"
    ) in account
    assert "**Why the fleet stopped:** confidence 0.45 \\< 0.6" in account
    # The log line is quoted as code: rendered, its tags are text, never elements.
    assert "`KeyError: 'records' <script>window.__owned = 1</script>" in account
    html = MarkdownIt("commonmark").enable("table").render(md)
    assert "<script>" not in html and "<img" not in html
    assert "&lt;script&gt;window.__owned = 1&lt;/script&gt;" in html
    assert "DATA_PREFIX" in html and "<em>" not in html
    assert "\x1b" not in md and "\\x1b[2J" in md  # `fleet incidents postmortem` prints it
    assert "| 10:00:30" not in md  # times are full ISO stamps
    assert f"**round 2 begins** (status VERIFYING -> INVESTIGATING: {ROUND_2_BECAUSE})" in md
    assert "- **Rounds of investigate-fix-verify:** 2" in md
    round_1 = md[md.index("## Round 1") : md.index("## Round 2")]
    assert "ended " in round_1 and f"another round because {ROUND_2_BECAUSE}" in round_1
    assert "- [ ] clean runs: 0 of 3 runs succeeded" in round_1


def test_a_relapse_counts_the_recovery_that_held_as_the_mttr() -> None:
    r = Recorded(["errors"], round_number=2)
    _round_1(r)
    r.move(20, S.RECOVERED)
    r.move(50, S.INVESTIGATING, round=2, reason="relapsed in the watch window: 2 failed runs")
    r.put(archived(1, ContextItem.DIAGNOSIS), round_1_diagnosis())
    r.move(55, S.DIAGNOSED)
    r.move(56, S.PROPOSED)
    r.move(57, S.APPROVED)
    r.move(58, S.EXECUTING)
    r.move(60, S.VERIFYING)
    r.move(70, S.RECOVERED)
    recovered = _report(r)
    assert (recovered.recover_s, recovered.resolve_s) == (70.0, None)
    assert recovered.reached(S.RECOVERED) == recovered.reached(S.RECOVERED, 1)
    assert not recovered.handover.needs_a_person
    r.move(130, S.RESOLVED)
    resolved = _report(r)
    assert (resolved.recover_s, resolved.resolve_s) == (70.0, 130.0)
    text = render_text(resolved)
    assert "recovered 70s after the incident opened" in text
    assert "resolved 130s after the incident opened" in text
    assert "WHAT A PERSON NEEDS" not in text
    md = postmortem_markdown(resolved)
    assert "(opened → recovered):** 70 s" in md and "(opened → resolved):** 130 s" in md
    assert "## Escalation" not in md


def test_a_fixed_incident_shows_the_account_compactly_beside_its_diagnosis() -> None:
    r = Recorded(["errors"])
    _round_1(r)
    r.put(ContextItem.DIAGNOSIS, round_1_diagnosis())
    r.move(20, S.RECOVERED)
    text = render_text(_report(r))
    assert "WHAT A PERSON NEEDS" not in text
    diagnosis = text[text.index("diagnosis:") :]
    assert "  drift: iam: inline policy s3-access deleted" in diagnosis
    assert "  ruled out: concurrency: at baseline" in diagnosis
    assert f"  who made the change: {WHO_CHANGED_UNSEEN}" in diagnosis
    assert "round 1" not in text  # one round: no round headings


def test_no_drift_no_claim_about_who_changed_it() -> None:
    r = Recorded(["errors"])
    r.move(1, S.INVESTIGATING)
    code_bug = Diagnosis.model_validate(round_2_diagnosis())
    r.put(
        ContextItem.DIAGNOSIS,
        code_bug.model_copy(update={"drifts": [], "fault_types": [FaultType.CODE_BUG]}).model_dump(
            mode="json"
        ),
    )
    r.move(5, S.ESCALATED, reason="a code bug: nothing the fleet may change fixes it")
    report = _report(r)
    assert report.handover.who_changed is None
    assert "who made the change" not in render_text(report)
    md = postmortem_markdown(report)
    assert "Who made the change" not in md
    assert "Fix the code and add a test with the failing input" in md  # what to change


def test_an_escalation_before_any_diagnosis_says_so() -> None:
    r = Recorded(["errors"])
    r.move(1, S.INVESTIGATING)
    r.move(300, S.ESCALATED, reason="stuck in INVESTIGATING for 300s")
    report = _report(r)
    assert report.handover.needs_a_person
    assert report.handover.hypothesis is None
    text = render_text(report)
    assert "WHAT A PERSON NEEDS: stuck in INVESTIGATING for 300s" in text
    assert "best hypothesis: no diagnosis was recorded" in text
    md = postmortem_markdown(report)
    assert "**Best hypothesis:** none: no diagnosis was recorded." in md
    assert "No diagnosis was recorded." in md


def test_the_agents_cost_adds_up_over_every_stage_and_round_in_each_view() -> None:
    r = Recorded(["errors"], round_number=2)
    _round_1(r)
    r.move(30, S.INVESTIGATING, round=2, reason=ROUND_2_BECAUSE)
    priced = {"calls": [{}] * 3, "prompt_tokens": 8000, "completion_tokens": 300}
    r.put(archived(1, transcript("diagnosis")), {**priced, "cost_usd": 0.00315})
    r.put(archived(1, transcript("proposal")), {**priced, "cost_usd": 0.00315, "quota_wait_s": 4})
    r.put(transcript("diagnosis"), {**priced, "cost_usd": 0.00315, "quota_wait_s": 2.5})
    # A transcript recorded before tokens were priced costs nothing, rather than a guess.
    r.put(transcript("review"), {"calls": [], "prompt_tokens": 900, "completion_tokens": 60})
    report = _report(r)
    assert [(x.cost_usd, x.quota_wait_s) for x in report.rounds] == [(0.0063, 4.0), (0.00315, 2.5)]
    assert (report.prompt_tokens, report.completion_tokens) == (24_900, 960)
    assert (report.cost_usd, report.quota_wait_s) == (0.00945, 6.5)
    line = "~24900 prompt and ~960 completion tokens, ~$0.0095 estimated"
    assert line in render_text(report) and line in postmortem_markdown(report)
    assert "6.5 s waiting for the fleet's model quota" in postmortem_markdown(report)
    assert json.loads(report.model_dump_json())["cost_usd"] == 0.00945
