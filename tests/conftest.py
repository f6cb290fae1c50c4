"""Shared fixtures, and how the suite runs side by side under pytest-xdist.

`pytest` (pyproject's addopts) runs with `-n auto --dist loadgroup`: most of the suite's
wall time is worlds waiting (alarm periods, Lambda schedules, polls), not CPU, so several
worker processes run world-heavy tests at once. Each worker is its own process with its
own session fixtures, so it starts its own worlds (free ports, its own tmp_path state
directories); what must not be split between workers is grouped here:

* every test that uses one of the integration tests' shared worlds (`world`, and the
  packages' own: `workload_faults`' world, `operator`'s approving fleet) runs on the worker
  that holds it, in collection order, against that one world, as in a serial run;
* the tests of a module that has a module-scoped fixture (a world of its own, the Pulumi
  program under mocks) stay on one worker, so the fixture is built once.

Everything else (each game day, each fault-survival case, the unit tests) is scheduled
test by test. `-n 0` (or `--pdb`) runs serially; PYTEST_XDIST_AUTO_NUM_WORKERS=N chooses
the number of workers.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
TESTS = Path(__file__).resolve().parent
PROJECT_ROOT = TESTS.parent
# Worlds mostly wait, so more workers than the 2 cores CI has; 4 starved the game days'
# time limits on a loaded 2-core machine.
WORKERS = 3
# Paths that start no world: a run of only these stays in one process (no worker start-up).
WORLD_FREE = (TESTS / "unit", TESTS / "infra")
# The fixtures of the integration tests' shared worlds (tests/integration/conftest.py and
# its packages'): every test that uses one runs on the worker that holds it, one group per
# world, so that each world is started once. A package that declares its own `world`
# (workload_faults) or `approving_fleet` (operator) has a group of its own, on another
# worker, and its world stops with the package's last test.
SHARED_WORLDS = ("world", "approving_fleet")


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    """How many workers `-n auto` means here (instead of one per CPU)."""
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return None  # xdist's own hook honours the variable
    here = config.invocation_params.dir
    paths = [(here / arg.split("::")[0]).resolve() for arg in config.args]
    if paths and all(any(p.is_relative_to(d) for d in WORLD_FREE) for p in paths):
        return 0
    return WORKERS


def _module_scoped_here(item: pytest.Item) -> bool:
    """Whether the test uses a module-scoped fixture defined in its own module."""
    module = item.nodeid.split("::")[0]
    info = getattr(item, "_fixtureinfo", None)
    for defs in info.name2fixturedefs.values() if info else ():
        if defs and defs[-1].scope == "module" and defs[-1].baseid == module:
            return True
    return False


# tryfirst: xdist's worker turns the xdist_group marks into its scheduling groups in its own
# pytest_collection_modifyitems, which otherwise runs before this one.
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("xdist_group"):
            continue
        shared = [name for name in SHARED_WORLDS if name in getattr(item, "fixturenames", ())]
        if shared:
            package = item.path.parent.relative_to(TESTS).as_posix().replace("/", ".")
            item.add_marker(pytest.mark.xdist_group(f"{shared[0]}-{package}"))
        elif _module_scoped_here(item):
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::")[0]))
    # xdist hands out work in collection order: the shared worlds' groups, each minutes of
    # tests one after another on one worker, go first, so that they do not start last and
    # leave the run waiting on them while the other workers idle; the unit and infra tests,
    # seconds each, go last, to fill the gaps. (A stable sort: a group keeps its order.)
    items.sort(key=_start_order)


# The longest tests that are not in a shared world's group, 2-4 minutes each (a series of
# game days on one world; the random game day; the quota burst, its module's world): next,
# longest first, so that none of them starts when the other workers are nearly done and
# leaves the run waiting on it. The fault-survival cases (about a minute each) and the other
# tests of their own worlds follow.
LONGEST = (
    "integration/test_gameday.py::test_scenarios_pass",
    "integration/test_random_gameday.py",
    "integration/test_model_quota.py",
)


def _start_order(item: pytest.Item) -> int:
    group = item.get_closest_marker("xdist_group")
    if group and str(group.args[0]).startswith(SHARED_WORLDS):
        return 0
    if item.nodeid.removeprefix("tests/").startswith(LONGEST):
        return 1
    return 3 if any(item.path.is_relative_to(d) for d in WORLD_FREE) else 2


class _GroupedNodeIds:
    """What `--dist loadgroup` does on the worker, for pytest 9.2: xdist 3.8 marks a test's
    group by appending "@group" to `item._nodeid`, which pytest 9.2's structured node ids no
    longer read, so every group was silently split (pytest-xdist#1386). Runs after xdist's
    own hook and leaves ids that already carry their group alone."""

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(
        self, config: pytest.Config, items: list[pytest.Item]
    ) -> None:
        if not getattr(config.option, "loadgroup", False):
            return
        for item in items:
            names = sorted(
                {
                    str(m.args[0] if m.args else m.kwargs.get("name", "default"))
                    for m in item.iter_markers("xdist_group")
                }
            )
            suffix = "@" + "_".join(names)
            if not names or item.nodeid.endswith(suffix):
                continue
            structured = getattr(item, "_id", None)
            if structured is not None and not isinstance(structured, str):
                item._id = type(structured).parse(item.nodeid + suffix)  # type: ignore[attr-defined]


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(_GroupedNodeIds(), "fleet-grouped-node-ids")


@pytest.fixture(scope="session", autouse=True)
def private_state_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Anything that falls back on the default state directory (`.fleet` in the working
    directory) gets this worker's own instead, and the run must leave the checkout's alone."""
    project_state = PROJECT_ROOT / ".fleet"
    existed = project_state.exists()
    state_dir = tmp_path_factory.mktemp("default-state")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FLEET_STATE_DIR", str(state_dir))
        yield state_dir
    if not existed:
        assert not project_state.exists(), f"a test wrote the checkout's {project_state}"


@pytest.fixture(scope="session")
def alarm_fixture() -> dict[str, Any]:
    return dict(json.loads((FIXTURES / "cloudwatch-alarm-message.json").read_text()))


@pytest.fixture(scope="session")
def envelope_fixture() -> dict[str, Any]:
    return dict(json.loads((FIXTURES / "sqs-body-sns-envelope-alarm.json").read_text()))
