from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from rich.console import Console

from bench.incidents import (
    UNAVOIDABLE_PHASES,
    dominant_phase,
    fastest_chain,
    fault_phases,
    kind_figures,
    last_recovered_s,
    percentile,
    phase_split,
    until_phase,
)
from bench.provenance import BenchResults, LastRun, MeasuredPart, Provenance
from bench.table import results_table
from incidents.incident_report import IncidentReport, TimelineEntry


def test_percentiles_are_nearest_rank_of_the_sample() -> None:
    runs = [14.0, 12.0, 30.0, 13.0, 15.0]
    assert percentile(runs, 50) == 14.0
    assert percentile(runs, 95) == 30.0  # with five runs, p95 is the slowest
    assert percentile([7.0], 95) == 7.0


def _run(detect: float, verify: float, fleet: float = 0.4, watch: float = 15.0) -> dict[str, float]:
    """One run's phases (`phase_split`'s shape), the fleet's own four steps `fleet` s in all."""
    step = fleet / 4
    return {
        "detect": detect,
        "diagnose": step,
        "propose": step,
        "review": step,
        "execute": step,
        "verify": verify,
        "watch": watch,
    }


def _mttr_of(run: dict[str, float]) -> float:
    return round(sum(v for k, v in run.items() if k != "watch"), 2)


def test_the_fastest_chain_is_the_least_each_unavoidable_phase_took_in_any_run() -> None:
    # The fault that landed near its alarm period's end was seen soonest (run 2); the fix
    # that landed just before a run started was proven soonest (run 3).
    runs = [_run(8.1, 3.2), _run(4.6, 3.9), _run(9.7, 2.9)]
    assert fastest_chain(runs) == {"detect": 4.6, "verify": 2.9}
    assert UNAVOIDABLE_PHASES == ("detect", "verify")
    # No run beat it: every run's MTTR is at least the chain, whatever the fleet's steps took.
    assert all(_mttr_of(run) >= 4.6 + 2.9 for run in runs)
    with pytest.raises(ValueError, match="no runs"):
        fastest_chain([])


def test_a_kind_s_figures_hold_the_chain_its_phases_and_the_median_s_ratio_to_it() -> None:
    runs = [_run(8.1, 3.2), _run(4.6, 3.9), _run(9.7, 2.9)]
    totals = [_mttr_of(run) for run in runs]  # 11.7, 8.9, 13.0
    figures = kind_figures("throttle", totals, runs)
    assert figures["detected_by"] == "an alarm"
    assert figures["fastest_chain_s"] == 7.5
    assert list(figures["fastest_chain_phases_s"]) == ["detect", "verify"]
    assert figures["p50_over_fastest_chain"] == round(11.7 / 7.5, 2)
    assert figures["p50_s"] == 11.7 and figures["runs"] == 3
    # Each run's own phases are kept, so the chain can be checked against them.
    assert figures["by_run_s"][1] == {"mttr": 8.9, **runs[1]}
    assert "floor_s" not in figures


def test_a_slower_fleet_raises_the_ratio_and_leaves_the_chain_where_it_was() -> None:
    quick = [_run(1.1, 2.9, fleet=0.6), _run(0.5, 3.4, fleet=0.7), _run(0.9, 3.0, fleet=0.6)]
    slow = [_run(d["detect"], d["verify"], fleet=2.4) for d in quick]
    fast_figures = kind_figures("revoke", [_mttr_of(r) for r in quick], quick)
    slow_figures = kind_figures("revoke", [_mttr_of(r) for r in slow], slow)
    assert slow_figures["fastest_chain_s"] == fast_figures["fastest_chain_s"] == 3.4
    assert slow_figures["p50_over_fastest_chain"] > fast_figures["p50_over_fastest_chain"] >= 1


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


def _printed(parts: dict[str, dict[str, Any]]) -> str:
    """The bench's table for these parts' figures, all measured by one run, as text."""
    provenance = Provenance(
        commit="abc1234", at="2026-11-30T08:43:15+00:00", machine=None, settings={}
    )
    results = BenchResults(
        last_run=LastRun(at=provenance.at or "", commit="abc1234", measured=list(parts), errors={}),
        carried_over=[],
        parts={
            name: MeasuredPart(provenance=provenance, figures=figures)
            for name, figures in parts.items()
        },
    )
    console = Console(width=200, record=True)
    console.print(results_table(results))
    return console.export_text()


def test_the_bench_table_says_which_random_game_day_ran_and_its_pass_rate() -> None:
    text = _printed(
        {
            "random": {
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
                }
            }
        }
    )
    assert "fleet gameday --random 5 --seed 1" in text
    assert "3 of 5 passed (60%)" in text and "fixable 2/4" in text


def test_the_bench_table_shows_tracing_and_the_dead_letter_pages() -> None:
    text = _printed(
        {
            "runtime": {
                "runtime_overhead": {
                    "bare_msgs_per_s": 800.0,
                    "runtime_msgs_per_s": 380.0,
                    "ratio": 0.475,
                    "traced_ratio": 0.465,
                    "tracing_cost": 0.98,
                }
            },
            "console": {
                "console_dead_letters": {
                    "sizes": {
                        "50": {"first_page_ms_p50": 90.0, "first_page_ms_p95": 140.0},
                        "1000": {"first_page_ms_p50": 130.0, "first_page_ms_p95": 200.0},
                    },
                    "dead_letters_read": 1000,
                    "received_by_page_loads": 0,
                }
            },
        }
    )
    assert "0.465; 0.98" in text
    assert "with 1000 in the DLQ (p50 / p95)" in text and "130.0 / 200.0 ms" in text
    assert "0 of 1000" in text


def test_the_bench_table_prints_each_kind_s_median_against_its_fastest_chain() -> None:
    runs = [_run(8.1, 3.2), _run(4.6, 3.9), _run(9.7, 2.9)]
    throttle = kind_figures("throttle", [_mttr_of(r) for r in runs], runs)
    text = _printed({"mttr": {"alarm_period_s": 10, "mttr": {"throttle": throttle}}})
    assert "11.7 / 13.0 s = 1.56 x the fastest chain 7.5 s (detect 4.6 + verify 2.9)" in text
    # A kind measured before the runs' phases were kept says it has no chain.
    del throttle["fastest_chain_s"]
    text = _printed({"mttr": {"alarm_period_s": 10, "mttr": {"throttle": throttle}}})
    assert "no fastest chain" in text
