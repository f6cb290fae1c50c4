"""GetMetricStatistics matches a metric's dimensions exactly, as CloudWatch does.

In CloudWatch each combination of dimensions is a metric of its own: Lambda publishes an
alias's invocations under FunctionName, Resource and ExecutedVersion *and* under
FunctionName alone, and a query for FunctionName alone sees the latter only. moto 5.2.5
returns every datum whose dimensions include the query's, so such a query would count
each invocation twice. The patch keeps, in each period, only the data whose dimensions are
exactly the query's (GetMetricData already compares them exactly in moto).

The patch checks the moto version, so an upgrade fails loudly instead of silently.
"""

from __future__ import annotations

import functools
from typing import Any

from moto.cloudwatch.models import CloudWatchBackend

from emulation.moto_version import require_patched_moto

_applied = False


def _key(dimensions: list[Any]) -> list[tuple[str, str]]:
    return sorted((d.name, d.value) for d in dimensions)


def _exactly(method: Any) -> Any:
    @functools.wraps(method)
    def get_metric_statistics(self: Any, *args: Any, **kwargs: Any) -> list[Any]:
        periods: list[Any] = method(self, *args, **kwargs)
        dimensions = kwargs.get("dimensions", args[6] if len(args) > 6 else [])
        wanted = sorted((d["Name"], d.get("Value")) for d in dimensions or [])
        kept = []
        for period in periods:
            period.metric_data = [m for m in period.metric_data if _key(m.dimensions) == wanted]
            if period.metric_data:
                kept.append(period)
        return kept

    return get_metric_statistics


def apply() -> None:
    global _applied
    if _applied:
        return
    require_patched_moto(__name__, "re-check the dimension matching")
    CloudWatchBackend.get_metric_statistics = _exactly(  # type: ignore[method-assign]
        CloudWatchBackend.get_metric_statistics
    )
    _applied = True
