"""The AWS/Lambda metrics as Lambda publishes them: one datapoint per metric per period.

Lambda does not put a datapoint per invocation: it aggregates its metrics per period (a
minute on AWS; here the world's alarm period, so nothing is finer than what the alarms
see), aligned to the epoch, at standard resolution, and publishes each period once it has
ended. A run counts in the period in which it ended (when its outcome is known).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

Dimensions = tuple[tuple[str, str], ...]
# PutMetricData takes at most this many datapoints per call (the classic limit).
MAX_DATA_PER_CALL = 20


@dataclass
class Aggregate:
    """CloudWatch's StatisticValues of one metric over one period."""

    unit: str
    sample_count: float = 0.0
    total: float = 0.0
    minimum: float = float("inf")
    maximum: float = float("-inf")

    def add(self, value: float) -> None:
        self.sample_count += 1
        self.total += value
        self.minimum = min(self.minimum, value)
        self.maximum = max(self.maximum, value)


@dataclass
class PeriodMetrics:
    """Datapoints gathered per (period start, metric, dimensions); thread-safe."""

    period_s: int
    _periods: dict[tuple[int, str, Dimensions], Aggregate] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def period_start(self, at: float) -> int:
        return int(at // self.period_s) * self.period_s

    def add(
        self, name: str, value: float, unit: str, dimension_sets: Sequence[Dimensions], at: float
    ) -> None:
        """One observation, under each set of dimensions it is published with."""
        start = self.period_start(at)
        with self._lock:
            for dimensions in dimension_sets:
                key = (start, name, dimensions)
                self._periods.setdefault(key, Aggregate(unit)).add(value)

    def take_ended(self, now: float, everything: bool = False) -> list[dict[str, Any]]:
        """The MetricData of every period that has ended by `now` (all, at shutdown), removed
        from what is held."""
        current = self.period_start(now)
        with self._lock:
            keys = [k for k in self._periods if everything or k[0] < current]
            taken = {k: self._periods.pop(k) for k in keys}
        return [
            {
                "MetricName": name,
                "Dimensions": [{"Name": n, "Value": v} for n, v in dimensions],
                "Timestamp": datetime.fromtimestamp(start, UTC),
                "StatisticValues": {
                    "SampleCount": agg.sample_count,
                    "Sum": agg.total,
                    "Minimum": agg.minimum,
                    "Maximum": agg.maximum,
                },
                "Unit": agg.unit,
            }
            for (start, name, dimensions), agg in sorted(taken.items(), key=lambda kv: kv[0])
        ]


def publish(cloudwatch: Any, data: list[dict[str, Any]]) -> None:
    for i in range(0, len(data), MAX_DATA_PER_CALL):
        cloudwatch.put_metric_data(
            Namespace="AWS/Lambda", MetricData=data[i : i + MAX_DATA_PER_CALL]
        )
