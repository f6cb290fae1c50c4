"""The protected function's own failure reports: a new fault is reported at its first failed
run (the earliest honest signal of it), a function that keeps failing is not a storm."""

from __future__ import annotations

import contextlib
import importlib
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest

TOPIC = "arn:aws:sns:us-east-1:123456789012:incident-alerts"


class Published:
    def __init__(self) -> None:
        self.reports: list[dict[str, Any]] = []

    def publish(self, **kwargs: Any) -> dict[str, str]:
        self.reports.append(kwargs)
        return {"MessageId": str(len(self.reports))}


@pytest.fixture
def function(monkeypatch: pytest.MonkeyPatch) -> tuple[ModuleType, Published, list[bool]]:
    """The handler module as Lambda loads it, its SNS client recording what it publishes and
    its work failing or not as the test says."""
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("ALERTS_TOPIC_ARN", TOPIC)
    monkeypatch.setenv("FAILURE_REPORT_INTERVAL_S", "60")
    module = importlib.reload(importlib.import_module("workload.data_processor"))
    published = Published()
    fails: list[bool] = []

    def work(_name: str) -> dict[str, Any]:
        if fails.pop(0):
            raise PermissionError("AccessDenied on s3:GetObject")
        return {"batch": "b1", "count": 1, "total": 1}

    monkeypatch.setattr(module, "sns", published)
    monkeypatch.setattr(module, "_process", work)
    return module, published, fails


def run(module: ModuleType, n: int) -> None:
    context = SimpleNamespace(aws_request_id=f"req-{n}")
    with contextlib.suppress(PermissionError):  # a failed run raises, as on Lambda
        module.handler({}, context)


def test_a_new_fault_is_reported_at_its_first_failed_run_even_within_the_interval(
    function: tuple[ModuleType, Published, list[bool]],
) -> None:
    module, published, fails = function
    fails.extend([True, True, True, False, True])
    for n in range(5):
        run(module, n)
    # The first failure, then two more of the same: one report. A clean run ends that
    # fault; the next failure is a new one, reported at once though a minute has not passed.
    assert [r["Subject"] for r in published.reports] == ["FAILURE: data-processor"] * 2
    assert '"request_id": "req-0"' in published.reports[0]["Message"]
    assert '"request_id": "req-4"' in published.reports[1]["Message"]


def test_a_function_that_keeps_failing_reports_once_per_interval(
    function: tuple[ModuleType, Published, list[bool]],
) -> None:
    module, published, fails = function
    fails.extend([True] * 30)
    for n in range(30):
        run(module, n)
    assert len(published.reports) == 1
