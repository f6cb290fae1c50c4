"""The tests that break the workload and wait for it to heal (faults, alarms, baselines, a
bad deploy, hand-made changes), on a world of their own beside the session's `world`.

The world is the package's (tests/conftest.py keeps the package's tests together on one
worker, another than the session world's): the two sets run side by side, and this one
stops once its tests are done instead of running its workload idle until the end of the
session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from core.aws import Clients
from core.principals import Principal
from tests.integration.conftest import RunningWorld, running_world, world_overrides


@pytest.fixture(scope="package")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningWorld]:
    """The world alone (no stage workers), as the session's."""
    overrides = world_overrides(tmp_path_factory.mktemp("workload-faults"), run_workers=False)
    with running_world(overrides) as running:
        yield running


@pytest.fixture(scope="package")
def admin(world: RunningWorld) -> Clients:
    """The bootstrap administrator: what the tests use to inspect the world."""
    return world.clients(Principal.ADMIN)
