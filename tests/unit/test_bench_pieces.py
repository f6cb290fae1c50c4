from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bench.incidents import (
    dominant_phase,
    fault_phases,
    floor_phases,
    floor_s,
    last_recovered_s,
    percentile,
    phase_split,
    until_phase,
)
from core.settings import Settings
from incidents.incident_report import IncidentReport, TimelineEntry


def test_percentiles_are_nearest_rank_of_the_sample() -> None:
    runs = [14.0, 12.0, 30.0, 13.0, 15.0]
    assert percentile(runs, 50) == 14.0
    assert percentile(runs, 95) == 30.0  # with five runs, p95 is the slowest
    assert percentile([7.0], 95) == 7.0


def test_a_reported_fault_s_floor_is_a_failed_run_and_the_clean_runs_after_the_fix() -> None:
    settings = Settings(
        target_interval_s=1, alarm_period_s=10, workload_work_s=1.2, verify_successful_runs=2
    )
    # Healthy runs of 1.2 s start back to back: 0.6 s to the next, which fails at once.
    # After the fix, half an interval to the next run (failed runs end at once), its 1.2 s
    # of work, and the second clean run ends 1.2 s later.
    assert floor_phases("revoke", settings) == {"detect": 0.6, "verify": 2.9}
    assert floor_s("revoke", settings) == floor_s("env-drift", settings) == 3.5
    # Runs shorter than the interval start an interval apart.
    short = Settings(**{**settings.model_dump(), "workload_work_s": 0.2})
    assert floor_phases("revoke", short) == {"detect": 0.5, "verify": 1.7}


def test_an_alarm_seen_fault_s_floor_waits_for_its_period_and_moves_with_it() -> None:
    settings = Settings(
        target_interval_s=1, alarm_period_s=10, alarm_poll_s=1.0, workload_work_s=0.2
    )
    # Half an interval to the next run; half a period to its end, 3 s until its datapoint
    # is published, half a poll.
    assert floor_phases("throttle", settings)["detect"] == 0.5 + 5 + 3 + 0.5
    # A blocked network hangs the run for the function's whole timeout first.
    blocked = floor_phases("network-block", settings)["detect"]
    assert blocked == floor_phases("throttle", settings)["detect"] + settings.workload_timeout_s
    longer = Settings(**{**settings.model_dump(), "alarm_period_s": 30})
    assert floor_s("throttle", longer) - floor_s("throttle", settings) == 10.0
    assert floor_s("revoke", longer) == floor_s("revoke", settings)


def test_a_floor_counts_the_new_execution_environments_its_fault_and_fix_start() -> None:
    settings = Settings(target_interval_s=1, alarm_period_s=10, alarm_poll_s=1.0)
    cold = 0.6
    # An IAM change leaves the warm environment; a changed environment starts a new one
    # before the failed run and another before the first clean run.
    assert floor_phases("revoke", settings, cold) == floor_phases("revoke", settings)
    drift, drift_warm = (
        floor_phases("env-drift", settings, cold),
        floor_phases("env-drift", settings),
    )
    assert drift["detect"] == drift_warm["detect"] + cold
    assert drift["verify"] == round(drift_warm["verify"] + cold, 2)
    # A lowered timeout cuts the first failed run at the new timeout, start included; its
    # fix starts one more.
    timeout = floor_phases("timeout", settings, cold)
    assert timeout["detect"] == floor_phases("timeout", settings)["detect"]
    assert floor_s("timeout", settings, cold) == round(floor_s("timeout", settings) + cold, 1)


def test_a_hung_run_holds_the_fix_back_until_the_timeout_it_hangs_for_ends() -> None:
    settings = Settings(
        target_interval_s=1,
        alarm_period_s=10,
        alarm_poll_s=1.0,
        workload_timeout_s=10,
        workload_work_s=0.2,
        verify_successful_runs=3,
    )
    # Detected 18.5 s after the first hung run started, during the second hung run: the
    # next run, the first the fix reaches, starts when that one ends at 20 s.
    blocked = floor_phases("network-block", settings)
    assert blocked["detect"] == 0.5 + 10 + 5 + 3 + 0.5
    assert blocked["verify"] == pytest.approx(1.5 + 0.2 + 2 * 1)
    # A longer timeout: detected at 23.5 s, during the second run, which ends at 30 s.
    longer = Settings(**{**settings.model_dump(), "workload_timeout_s": 15})
    assert floor_phases("network-block", longer)["verify"] == pytest.approx(6.5 + 0.2 + 2)
    # A kind whose runs fail at once waits only for the next run.
    assert floor_phases("revoke", settings)["verify"] == pytest.approx(0.5 + 0.2 + 2)


def test_the_mttr_runs_land_their_faults_evenly_over_an_alarm_period() -> None:
    assert fault_phases(5) == pytest.approx([0.1, 0.3, 0.5, 0.7, 0.9])
    assert sorted(fault_phases(3))[1] == 0.5  # the median run lands mid-period
    # Periods are aligned to the epoch: from 1003 s into 10 s periods, 0.5 of a period is
    # at 1005 s; 0.1 of one has passed in this period, so it is at 1011 s.
    assert until_phase(0.5, 10, 1003.0) == pytest.approx(2.0)
    assert until_phase(0.1, 10, 1003.0) == pytest.approx(8.0)


def test_the_dominant_phase_is_the_longest_before_recovery() -> None:
    phases = {"detect": 6.0, "diagnose": 0.3, "verify": 3.1, "watch": 15.0}
    assert dominant_phase(phases) == "detect"


def _report(fault_at: datetime, offsets: dict[str, float]) -> IncidentReport:
    def at(seconds: float) -> str:
        return (fault_at + timedelta(seconds=seconds)).isoformat()

    timeline = [
        TimelineEntry(at=at(t), actor="test", action=f"status X -> {status}", detail={})
        for status, t in offsets.items()
    ]
    return IncidentReport(
        incident_id="inc-1",
        resource="data-processor",
        signature="s",
        status="RESOLVED",
        opened_at=at(2.0),
        closed_at=at(offsets["RESOLVED"]),
        alert_count=1,
        timeline=timeline,
        diagnosis=None,
        proposal=None,
        review=None,
        approval=None,
        verification=None,
        actions=[],
        rollbacks=[],
        tool_calls=0,
        prompt_tokens=0,
        completion_tokens=0,
    )


def test_the_phases_add_up_to_the_time_to_resolve_and_say_which_step_took_it() -> None:
    fault_at = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
    offsets = {
        "DIAGNOSED": 3.0,
        "PROPOSED": 3.5,
        "APPROVED": 3.75,
        "VERIFYING": 4.0,
        "RECOVERED": 9.0,
        "RESOLVED": 40.0,
    }
    split = phase_split(_report(fault_at, offsets), fault_at)
    assert split == {
        "detect": 2.0,
        "diagnose": 1.0,
        "propose": 0.5,
        "review": 0.25,
        "execute": 0.25,
        "verify": 5.0,
        "watch": 31.0,
    }
    # MTTR is to RECOVERED: every phase but the watch.
    assert sum(v for k, v in split.items() if k != "watch") == 9.0
    del offsets["APPROVED"]
    with pytest.raises(ValueError, match="never reached APPROVED"):
        phase_split(_report(fault_at, offsets), fault_at)


def test_many_incidents_recover_when_the_last_of_them_does() -> None:
    fault_at = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
    done = {"RECOVERED": 20.0, "RESOLVED": 40.0}
    reports = [_report(fault_at, done), _report(fault_at, {**done, "RECOVERED": 31.5})]
    assert last_recovered_s(list(reports), fault_at) == 31.5
    # One that never ran cleanly again (escalated) leaves no time to report, nor does none.
    reports.append(_report(fault_at, {"RESOLVED": 50.0}))
    assert last_recovered_s(list(reports), fault_at) is None
    assert last_recovered_s([], fault_at) is None


def test_the_bench_table_says_which_random_game_day_ran_and_its_pass_rate() -> None:
    from rich.console import Console

    from bench.run import _table

    results = {
        "commit": "abc",
        "machine": {"cpus": 2},
        "random_gameday": {
            "ran": "fleet gameday --random 5 --seed 1",
            "rounds": 5,
            "passed": 3,
            "pass_rate": 0.6,
            "by_kind": {
                "control": {"rounds": 1, "passed": 1},
                "fixable": {"rounds": 4, "passed": 2},
            },
            "rounds_granted_wider": 0,
        },
    }
    console = Console(width=200, record=True)
    console.print(_table(results))
    text = console.export_text()
    assert "fleet gameday --random 5 --seed 1" in text
    assert "3 of 5 passed (60%)" in text and "fixable 2/4" in text


def test_the_bench_table_shows_tracing_and_the_dead_letter_pages() -> None:
    from rich.console import Console

    from bench.run import _table

    results = {
        "commit": "abc",
        "machine": {"cpus": 2},
        "runtime_overhead": {
            "bare_msgs_per_s": 800.0,
            "runtime_msgs_per_s": 380.0,
            "ratio": 0.475,
            "traced_ratio": 0.465,
            "tracing_cost": 0.98,
        },
        "console_dead_letters": {
            "sizes": {
                "50": {"first_page_ms_p50": 90.0, "first_page_ms_p95": 140.0},
                "1000": {"first_page_ms_p50": 130.0, "first_page_ms_p95": 200.0},
            },
            "dead_letters_read": 1000,
            "received_by_page_loads": 0,
        },
    }
    console = Console(width=200, record=True)
    console.print(_table(results))
    text = console.export_text()
    assert "0.465; 0.98" in text
    assert "with 1000 in the DLQ (p50 / p95)" in text and "130.0 / 200.0 ms" in text
    assert "0 of 1000" in text
