"""Runs read from a function's log lines: START…REPORT pairs, their errors, and what a
throttle (no line at all) leaves."""

from __future__ import annotations

import json
from typing import Any

from core.lambda_runs import parse_runs
from emulation.lambda_metrics import PeriodMetrics

A, B, C = "6f1c8a3e-0001", "6f1c8a3e-0002", "6f1c8a3e-0003"
STREAM = "2026/11/29/[$LATEST]abc"


def _events(*lines: tuple[int, str], stream: str = STREAM) -> list[dict[str, Any]]:
    return [{"timestamp": t, "message": m, "logStreamName": stream} for t, m in lines]


def _report(request_id: str, ms: float, status: str = "") -> str:
    return (
        f"REPORT RequestId: {request_id}\tDuration: {ms:.2f} ms\tBilled Duration: {int(ms) + 1} "
        f"ms\tMemory Size: 256 MB\tMax Memory Used: 80 MB{status}"
    )


def test_a_clean_run_an_error_and_a_timeout() -> None:
    error = json.dumps({"errorType": "AccessDenied", "errorMessage": "no", "requestId": B})
    runs = parse_runs(
        _events(
            (1000, f"START RequestId: {A} Version: $LATEST"),
            (1001, "processed batch 7: 3 records"),
            (2200, f"END RequestId: {A}"),
            (2201, _report(A, 1200.0)),
            (3000, f"START RequestId: {B} Version: $LATEST"),
            (3001, "[ERROR] AccessDenied: no"),
            (3100, error),
            (3101, f"END RequestId: {B}"),
            (3102, _report(B, 100.0)),
            (4000, f"START RequestId: {C} Version: $LATEST"),
            (5000, f"2026-11-29T06:10:05.000Z {C} Task timed out after 1.00 seconds"),
            (5001, f"END RequestId: {C}"),
            (5002, _report(C, 1000.0, "\tStatus: timeout")),
        )
    )
    assert [(r.request_id, r.clean, r.error) for r in runs] == [
        (A, True, None),
        (B, False, "AccessDenied: no"),
        (C, False, "Task timed out after 1.00 seconds"),
    ]
    assert runs[0].duration_ms == 1200.0 and runs[0].ended_ms == 2201


def test_a_run_still_going_is_not_finished_and_not_clean() -> None:
    (run,) = parse_runs(_events((1000, f"START RequestId: {A} Version: $LATEST")))
    assert not run.finished and not run.clean


def test_a_run_begun_before_the_window_and_other_streams_make_no_runs() -> None:
    runs = parse_runs(
        _events((1000, f"END RequestId: {A}"), (1001, _report(A, 5.0)))
        + _events((1002, '{"batch": 7, "count": 3}'), stream="batch-audit")
        + _events((1003, "START RequestId: fake injected by a log line"), stream="other")
    )
    # A START line without its REPORT is an unfinished run, never a clean one.
    assert [r.clean for r in runs] == [False]


def test_runs_in_two_environments_interleave_by_time() -> None:
    runs = parse_runs(
        _events((1000, f"START RequestId: {A}"), (1500, _report(A, 500.0)), stream="one")
        + _events((1200, f"START RequestId: {B}"), (1300, _report(B, 100.0)), stream="two")
    )
    assert [r.request_id for r in runs] == [A, B]
    assert all(r.clean for r in runs)


def test_a_throttle_leaves_no_run() -> None:
    # A throttled invocation never starts: no lines, so no run; it shows in Throttles only.
    assert parse_runs([]) == []


def test_metrics_are_published_per_ended_period_aligned_to_the_epoch() -> None:
    metrics = PeriodMetrics(period_s=10)
    fn = (("FunctionName", "data-processor"),)
    for at, errors in ((1000.5, 0.0), (1004.0, 1.0), (1009.9, 1.0), (1010.1, 0.0)):
        metrics.add("Errors", errors, "Count", [fn], at)
        metrics.add("Duration", at - 1000, "Milliseconds", [fn], at)
    assert metrics.take_ended(1009.99) == []  # 1000-1010 has not ended
    ended = metrics.take_ended(1010.2)
    assert {d["MetricName"] for d in ended} == {"Errors", "Duration"}
    errors = next(d for d in ended if d["MetricName"] == "Errors")
    assert errors["Timestamp"].timestamp() == 1000
    assert errors["StatisticValues"] == {
        "SampleCount": 3.0,
        "Sum": 2.0,
        "Minimum": 0.0,
        "Maximum": 1.0,
    }
    assert errors["Dimensions"] == [{"Name": "FunctionName", "Value": "data-processor"}]
    assert "StorageResolution" not in errors  # standard resolution
    assert metrics.take_ended(1010.2) == []  # published once
    assert [d["Timestamp"].timestamp() for d in metrics.take_ended(1020.0)] == [1010, 1010]
