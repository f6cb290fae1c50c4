"""Kill any one worker with SIGKILL in the middle of an incident: the world starts it
again (as ECS would), SQS redelivers what it held, and the incident still ends RESOLVED
with each remediation executed exactly once."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleet.principals import Principal
from fleet.world import read_world, wait_for
from tests.integration.conftest import RunningWorld, running_world, world_overrides
from workers.incident_report import list_incidents, load_report
from workers.store import IncidentStore

# The status in which each worker is holding the incident's message when it is killed.
KILL_DURING = {
    "supervisor": "INVESTIGATING",
    "critic": "PROPOSED",
    "resolver": "VERIFYING",
    "watchdog": "INVESTIGATING",
}


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[RunningWorld]:
    # A model that thinks for a second per turn, as a hosted one does, so the kill lands
    # inside an investigation or a review rather than after it.
    overrides = world_overrides(
        tmp_path, target_count=1, offline_model_latency_s=1.0, queue_visibility_timeout_s=6
    )
    with running_world(overrides) as world:
        yield world


@pytest.mark.parametrize("worker", list(KILL_DURING))
def test_a_killed_worker_loses_nothing_and_runs_nothing_twice(
    fleet: RunningWorld, worker: str
) -> None:
    store = IncidentStore(fleet.clients(Principal.OPERATOR)("dynamodb"))
    fleet.wait_healthy("data-processor")
    assert fleet.fleet("chaos", "revoke", "--target", "s3").returncode == 0

    def incident() -> dict[str, str] | None:
        rows = list_incidents(store)
        return rows[0] if rows else None

    wait_for(
        lambda: (incident() or {}).get("status") == KILL_DURING[worker],
        90,
        f"the incident to reach {KILL_DURING[worker]}",
        0.1,
    )
    name = f"worker-{worker}"
    pid = int(read_world(fleet.settings)["processes"][name])  # type: ignore[index]
    os.kill(pid, signal.SIGKILL)

    wait_for(
        lambda: (incident() or {}).get("status") in ("RESOLVED", "ESCALATED", "FAILED"),
        150,
        "the incident to end",
        0.5,
    )
    found = incident()
    assert found is not None
    report = load_report(store, found["incident_id"])
    assert report is not None
    assert report.status == "RESOLVED", report.timeline
    assert [(a["service"], a["operation"]) for a in report.actions] == [("iam", "PutRolePolicy")]
    restarted = int(read_world(fleet.settings)["processes"][name])  # type: ignore[index]
    assert restarted != pid
    fleet.wait_healthy("data-processor")
