"""The evaluator's period logic against CloudWatch's documented examples: M of N, each way of
treating missing data, and the reason in CloudWatch's words."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from emulation.alarm_evaluator import (
    EXTRA_RANGE_PERIODS,
    PUBLISH_DELAY_S,
    Datapoint,
    decide,
    evaluation_range,
)

PERIOD = timedelta(minutes=5)
FIRST = datetime(2026, 11, 29, 6, 0, tzinfo=UTC)


def _alarm(n: int, m: int, treat: str) -> dict[str, Any]:
    return {
        "EvaluationPeriods": n,
        "DatapointsToAlarm": m,
        "TreatMissingData": treat,
        "Threshold": 1.0,
        "ComparisonOperator": "GreaterThanOrEqualToThreshold",
    }


def _points(pattern: str) -> list[Datapoint]:
    """CloudWatch's notation, oldest first: 0 not breaching, X breaching, - missing."""
    values = {"0": 0.0, "X": 3.0, "-": None}
    return [Datapoint(FIRST + i * PERIOD, values[c]) for i, c in enumerate(pattern.split())]


# The two tables of "How alarm state is evaluated when data is missing" (CloudWatch User
# Guide): 3 of 3, then 2 of 3; columns MISSING, IGNORE, BREACHING, NOT BREACHING.
# "keep" is "Retain current state". One documented cell differs and is left out: 3 of 3,
# `X - - - -` under MISSING (ALARM there, INSUFFICIENT_DATA here; see the module docstring).
TABLE = [
    (3, 3, "0 - X - X", ("OK", "OK", "OK", "OK")),
    (3, 3, "0 - - - -", ("OK", "OK", "OK", "OK")),
    (3, 3, "- - - - -", ("INSUFFICIENT_DATA", "keep", "ALARM", "OK")),
    (3, 3, "0 X X - X", ("ALARM", "ALARM", "ALARM", "ALARM")),
    (3, 3, "- - - - X", ("INSUFFICIENT_DATA", "keep", "ALARM", "OK")),
    (3, 3, "X - - - -", (None, "keep", "ALARM", "OK")),
    (3, 2, "0 - X - X", ("ALARM", "ALARM", "ALARM", "ALARM")),
    (3, 2, "0 0 X 0 X", ("ALARM", "ALARM", "ALARM", "ALARM")),
    (3, 2, "0 - X - -", ("OK", "OK", "ALARM", "OK")),
    (3, 2, "- - - - 0", ("OK", "OK", "ALARM", "OK")),
    (3, 2, "- - - - X", ("INSUFFICIENT_DATA", "keep", "ALARM", "OK")),
]
TREATMENTS = ("missing", "ignore", "breaching", "notBreaching")


@pytest.mark.parametrize(
    ("n", "m", "pattern", "treat", "expected"),
    [
        pytest.param(n, m, pattern, treat, want, id=f"{m}of{n} {pattern} {treat}")
        for n, m, pattern, row in TABLE
        for treat, want in zip(TREATMENTS, row, strict=True)
        if want is not None
    ],
)
def test_the_documented_table(n: int, m: int, pattern: str, treat: str, expected: str) -> None:
    for current in ("OK", "ALARM"):
        decision = decide(_alarm(n, m, treat), _points(pattern), current)  # type: ignore[arg-type]
        assert decision.state == (current if expected == "keep" else expected), current


def test_m_of_n_counts_breaching_datapoints_that_need_not_be_consecutive() -> None:
    alarm = _alarm(3, 2, "missing")
    assert decide(alarm, _points("0 0 X 0 X"), "OK").state == "ALARM"
    assert decide(alarm, _points("0 0 0 0 X"), "ALARM").state == "OK"
    # Only the latest N real datapoints count: older breaches have left the window.
    assert decide(alarm, _points("X X 0 0 0"), "ALARM").state == "OK"


def test_the_alarm_reason_is_cloudwatchs() -> None:
    points = [Datapoint(datetime(2026, 11, 29, 6, 10, tzinfo=UTC), 3.0)]
    decision = decide(_alarm(1, 1, "notBreaching"), points, "OK")
    assert decision.state == "ALARM"
    assert decision.reason == (
        "Threshold Crossed: 1 out of the last 1 datapoints [3.0 (29/11/26 06:10:00)] was "
        "greater than or equal to the threshold (1.0) (minimum 1 datapoint for OK -> ALARM "
        "transition)."
    )


def test_the_recovery_reason_is_cloudwatchs() -> None:
    points = [Datapoint(datetime(2026, 11, 29, 6, 11, tzinfo=UTC), 0.0)]
    decision = decide(_alarm(1, 1, "notBreaching"), points, "ALARM")
    assert decision.state == "OK"
    assert decision.reason == (
        "Threshold Crossed: 1 datapoint [0.0 (29/11/26 06:11:00)] was not greater than or "
        "equal to the threshold (1.0)."
    )


def test_m_of_n_reasons_list_the_datapoints_newest_first() -> None:
    decision = decide(_alarm(3, 2, "missing"), _points("0 0 X 0 X"), "OK")
    assert decision.reason == (
        "Threshold Crossed: 2 out of the last 3 datapoints [3.0 (29/11/26 06:20:00), "
        "3.0 (29/11/26 06:10:00)] were greater than or equal to the threshold (1.0) "
        "(minimum 2 datapoints for OK -> ALARM transition)."
    )


def test_missing_data_reasons() -> None:
    none = _points("- - -")
    assert decide(_alarm(1, 1, "notBreaching"), none, "ALARM").reason == (
        "Threshold Crossed: no datapoints were received for 1 period and 1 missing datapoint "
        "was treated as [NonBreaching]."
    )
    assert decide(_alarm(1, 1, "missing"), none, "OK").reason == (
        "Insufficient Data: 1 datapoint was unknown."
    )
    filled = decide(_alarm(3, 2, "breaching"), _points("0 - X - -"), "OK")
    assert filled.state == "ALARM"
    assert "and 1 missing datapoint was treated as [Breaching]" in filled.reason


def test_the_range_is_whole_aligned_periods_that_have_ended() -> None:
    now = datetime(2026, 11, 29, 6, 0, 25, tzinfo=UTC)
    starts = evaluation_range(now, 10, 1)
    assert len(starts) == 1 + EXTRA_RANGE_PERIODS
    # 06:00:20-06:00:30 has not ended; the last whole one is 06:00:10-06:00:20.
    assert starts[-1] == datetime(2026, 11, 29, 6, 0, 10, tzinfo=UTC)
    assert all(s.second % 10 == 0 and s.microsecond == 0 for s in starts)
    assert [b - a for a, b in itertools.pairwise(starts)] == [timedelta(seconds=10)] * 2
    # Just after a period ends, it is not evaluated until its datapoint can have arrived.
    just_after = datetime(2026, 11, 29, 6, 0, 30, tzinfo=UTC) + timedelta(seconds=0.5)
    assert evaluation_range(just_after, 10, 1)[-1] == starts[-1]
    settled = just_after + timedelta(seconds=PUBLISH_DELAY_S)
    assert evaluation_range(settled, 10, 1)[-1] == starts[-1] + timedelta(seconds=10)
