"""Every fault kind, for real in the emulator: healthy before, the right error after, healthy
again after `fleet chaos restore`. Faults are made with the real CLI."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.conftest import RunningWorld

FUNCTION = "data-processor"


@pytest.fixture
def healthy(world: RunningWorld) -> Iterator[RunningWorld]:
    world.wait_healthy(FUNCTION)
    yield world
    world.fleet("chaos", "restore", "--function", FUNCTION)


FAULTS = [
    pytest.param(
        ["revoke", "--target", "s3"],
        "failing",
        "AccessDenied",
        "ReadInputWriteOutput",
        id="revoke-s3",
    ),
    pytest.param(
        ["revoke", "--target", "metrics"],
        "failing",
        "PutMetricData",
        "PutCustomMetrics",
        id="revoke-metrics",
    ),
    # With logs revoked too, the error shows in the metrics only (Lambda drops the logs).
    pytest.param(
        ["revoke", "--target", "all"], "failing", None, "baseline policy", id="revoke-all"
    ),
    pytest.param(
        ["deny", "--target", "s3"], "failing", "AccessDenied", "chaos-explicit-deny", id="deny-s3"
    ),
    pytest.param(
        ["throttle", "--concurrency", "0"], "throttled", None, "reserved 0", id="throttle"
    ),
    # With no egress the connect hangs (as on AWS) until the function's own timeout.
    pytest.param(
        ["network-block"],
        "failing",
        "Task timed out after 10.00 seconds",
        "egress",
        id="network-block",
    ),
    # Another bucket is outside the role's policy: AWS refuses it before it looks for it.
    pytest.param(
        ["env-drift", "--var", "DATA_BUCKET", "--value", "no-such-bucket"],
        "failing",
        "GetObject operation: Access Denied",
        "environment DATA_BUCKET",
        id="env-drift-bucket",
    ),
    pytest.param(
        ["env-drift", "--var", "WORK_SECONDS", "--value", "soon"],
        "failing",
        "ValueError: could not convert string to float",
        "environment WORK_SECONDS",
        id="env-drift-value",
    ),
    pytest.param(
        ["timeout", "--seconds", "1"],
        "failing",
        "Task timed out after 1.00 seconds",
        "timeout 1s",
        id="timeout",
    ),
    # A published version whose handler fails, with the alias live moved to it.
    pytest.param(
        ["bad-deploy"], "failing", "KeyError: 'BATCH_SCHEMA'", "deploy: alias live", id="bad-deploy"
    ),
]


@pytest.mark.parametrize(("fault", "health", "error", "drift"), FAULTS)
def test_fault_breaks_the_workload_and_restore_heals_it(
    healthy: RunningWorld, fault: list[str], health: str, error: str | None, drift: str
) -> None:
    done = healthy.fleet("chaos", *fault, "--function", FUNCTION)
    assert done.returncode == 0, done.stderr

    broken = healthy.wait_status(
        FUNCTION,
        f"{health} with {error!r}",
        lambda s: s.health == health and (error is None or error in (s.runs.last_error or "")),
    )
    assert not broken.at_baseline
    assert any(drift in line for line in broken.drift), broken.drift

    restored = healthy.fleet("chaos", "restore", "--function", FUNCTION)
    assert restored.returncode == 0, restored.stderr
    healthy.wait_healthy(FUNCTION)

    shown = healthy.fleet("chaos", "status", "--function", FUNCTION, "--json")
    assert shown.returncode == 0, shown.stderr
    assert '"at_baseline": true' in shown.stdout


def test_revoking_logs_loses_the_logs_and_fails_the_audit_write(healthy: RunningWorld) -> None:
    # Lambda writes logs with the execution role: without the permission they are dropped,
    # so the error shows in the metrics (and the function's own failure report), not in logs.
    assert (
        healthy.fleet("chaos", "revoke", "--target", "logs", "--function", FUNCTION).returncode == 0
    )
    broken = healthy.wait_status(FUNCTION, "failing", lambda s: s.health == "failing")
    assert "iam: statement WriteOwnLogs missing" in broken.drift
    assert healthy.fleet("chaos", "restore", "--function", FUNCTION).returncode == 0
    healthy.wait_healthy(FUNCTION)


def test_revoking_sns_is_latent_until_something_else_fails(healthy: RunningWorld) -> None:
    # The permission only serves failure reports: runs keep succeeding, the drift is visible.
    assert (
        healthy.fleet("chaos", "revoke", "--target", "sns", "--function", FUNCTION).returncode == 0
    )
    latent = healthy.wait_status(
        FUNCTION, "drifted while healthy", lambda s: not s.at_baseline and s.health == "healthy"
    )
    assert "iam: statement ReportFailures missing" in latent.drift


def test_throttle_to_zero_is_read_back_as_zero(healthy: RunningWorld) -> None:
    from core.lambda_concurrency import reserved_concurrency
    from core.principals import Principal

    lam = healthy.clients(Principal.OPERATOR)("lambda")
    assert reserved_concurrency(lam, FUNCTION) is None
    assert healthy.fleet("chaos", "throttle", "--function", FUNCTION).returncode == 0
    assert reserved_concurrency(lam, FUNCTION) == 0
