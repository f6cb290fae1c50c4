"""The fault-survival suite (`make test-faults`): for each fault in the fleet itself, on a
fresh world with a broken workload, every incident ends, every message published to a
stage is handled or dead-lettered (nothing lost, nothing left in flight), and no
remediation runs twice. The cases and their accounting live in chaos/survival.py, where
`make bench` runs them too."""

from __future__ import annotations

import pytest

import chaos.gameday
from chaos.survival import CASES, run_case
from tests.ports import reserve_port


@pytest.fixture(autouse=True)
def reserved_ports(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each case's world takes reserved ports (tests/ports.py): other worlds run beside it."""
    monkeypatch.setattr(chaos.gameday, "free_port", reserve_port)


@pytest.mark.timeout(420)
@pytest.mark.parametrize("case", list(CASES))
def test_the_fleet_survives(case: str) -> None:
    lines: list[str] = []
    result = run_case(case, lines.append)
    print("\n".join(lines))
    print(result.model_dump_json(indent=1))
    assert result.problems == [], result
    assert result.lost == 0 and result.doubled == 0
    assert result.final_statuses == ["RESOLVED"], result
    assert result.handled > 0
