"""The operator's side of a fleet that waits for a person: its flow at the CLI, its approval
at the console, and the keys each of its processes holds, on one world for the package.

The world is the package's (tests/conftest.py keeps the package's tests together on one
worker): it stops once they are done, instead of running its workload idle until the end
of the session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.conftest import RunningWorld, running_world, world_overrides


@pytest.fixture(scope="package")
def approving_fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningWorld]:
    """The whole fleet, two functions, every fix approved by a person, and a watchdog that
    ticks fast. Each test leaves the workload at its baseline for the next; a test that
    leaves an incident ESCALATED (which every alert of its function then joins, for the
    person who has it) breaks the second function, data-processor-2, not the first."""
    overrides = world_overrides(
        tmp_path_factory.mktemp("approving-fleet"),
        target_count=2,
        require_human_approval=True,
        watchdog_tick_s=2,
    )
    with running_world(overrides) as running:
        yield running


@pytest.fixture
def fleet(approving_fleet: RunningWorld) -> RunningWorld:
    return approving_fleet
