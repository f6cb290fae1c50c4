"""Each part of bench/results.json says where and when it was measured, and a run of some
parts leaves the others exactly as they were: figures, commit, time and all."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from bench import incidents, provenance, run
from bench.provenance import read
from bench.run import PARTS
from bench.table import results_table
from core.settings import Settings

# What each stand-in part measures: enough to tell one run's figures from another's.
FIGURES: dict[str, dict[str, Any]] = {
    "startup": {
        "startup": {
            "help_s": {"min": 0.05, "median": 0.06, "max": 0.08},
            "worker_help_s": {"min": 0.9, "median": 1.0, "max": 1.1},
            "world_ready_s": {
                "quiet": {"min": 11.0, "median": 12.0, "max": 13.0},
                "cpu_hog": {"min": 20.0, "median": 22.0, "max": 25.0},
            },
            "world_ready_hog_over_quiet": 1.83,
        }
    },
    "runtime": {
        "runtime_overhead": {"bare_msgs_per_s": 862.0, "runtime_msgs_per_s": 412.0, "ratio": 0.48},
        "runtime_overhead_ratio": 0.48,
    },
    "console": {"console_dead_letters": {"first_page_1000_over_50": 1.19}},
    "storm": {
        "storm": {
            "alerts": 500,
            "workers": 1,
            "incidents_opened": 1,
            "alerts_counted": 500,
            "drain_s": 1.11,
            "dead_lettered": 0,
        }
    },
    "mttr": {"alarm_period_s": 10, "mttr": {"revoke": {"p50_s": 3.9}}},
    "mttr-period": {"mttr_long_period": {"alarm_period_s": 30}},
    "many": {"many": {"targets": 10}},
    "faults": {"faults": {"kill-9-critic": {"passed": True}}},
    "random": {"random_gameday": {"passed": 5}},
}
Bench = Callable[..., int]


@pytest.fixture
def fake_bench(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Bench:
    """`fleet bench` with each part's measurement replaced by a stand-in (no world), writing
    its own results file: `fake_bench(commit, parts)` runs those parts as if HEAD were `commit`;
    `measured` overrides what a part's stand-in returns (a callable may raise)."""
    monkeypatch.setattr(run, "RESULTS", tmp_path / "results.json")
    monkeypatch.setattr(run.structured_logging, "configure", lambda *a, **k: None)
    monkeypatch.setattr(run, "results_table", lambda results: "")

    @contextlib.contextmanager
    def no_world(_log: Any) -> Iterator[Settings]:
        yield Settings()

    monkeypatch.setattr(run, "_shared_world", no_world)

    def bench(
        commit: str,
        parts: tuple[str, ...] = PARTS,
        measured: dict[str, Callable[[], dict[str, Any]]] | None = None,
    ) -> int:
        made = {name: (lambda name=name: FIGURES[name]) for name in PARTS} | (measured or {})
        monkeypatch.setattr(provenance, "current_commit", lambda _root: commit)
        monkeypatch.setattr(run, "current_commit", lambda _root: commit)
        monkeypatch.setattr(run, "_runtime", lambda *_a: made["runtime"]())
        monkeypatch.setattr(
            run, "dead_letter_pages", lambda _s: made["console"]()["console_dead_letters"]
        )
        monkeypatch.setattr(run, "_storms", lambda *_a: made["storm"]())
        monkeypatch.setattr(run, "startup", lambda _log: made["startup"]()["startup"])
        monkeypatch.setattr(incidents, "mttr", lambda *_a, **_k: made["mttr"]())
        for name, helper in (
            ("mttr-period", "_long_period"),
            ("many", "_many"),
            ("faults", "_faults"),
            ("random", "_random"),
        ):
            (key,) = FIGURES[name]
            monkeypatch.setattr(run, helper, lambda *_a, name=name, key=key: made[name]()[key])
        return run.run(parts=parts, mttr_runs=5)

    return bench


def _written(path: Path) -> dict[str, Any]:
    raw: dict[str, Any] = json.loads(path.read_text())
    return raw


def test_every_part_of_a_fresh_run_says_where_when_and_how_it_was_measured(
    fake_bench: Bench, tmp_path: Path
) -> None:
    assert fake_bench("abc1234-dirty") == 0
    written = _written(tmp_path / "results.json")
    assert list(written["parts"]) == list(PARTS)
    assert written["carried_over"] == []
    for name, part in written["parts"].items():
        stamped = part["provenance"]
        assert stamped["commit"] == "abc1234-dirty", name
        assert datetime.fromisoformat(stamped["at"]).utcoffset() == UTC.utcoffset(None)
        machine = stamped["machine"]
        assert machine["cpus"] and machine["python"] and machine["platform"], name
        assert len(machine["load_average"]) == 3, name
        assert stamped["settings"]["emulator"].startswith("moto "), name
        assert part["figures"] == FIGURES[name]
    settings = {name: part["provenance"]["settings"] for name, part in written["parts"].items()}
    # Each part's own settings, not one set for the whole file.
    assert settings["mttr"]["runs_per_kind"] == 5 and settings["mttr"]["alarm_period_s"] == 10
    assert settings["mttr-period"]["alarm_period_s"] == 30
    assert settings["mttr"]["watch_window_s"] == 10 and settings["many"]["watch_window_s"] == 30
    assert settings["runtime"]["messages"] == 1000
    assert settings["faults"]["offline_model_latency_s"] == 1.0


def test_a_run_of_some_parts_leaves_the_others_provenance_and_figures_untouched(
    fake_bench: Bench, tmp_path: Path
) -> None:
    fake_bench("abc1234")
    before = _written(tmp_path / "results.json")["parts"]
    remeasured = {"mttr": lambda: {"alarm_period_s": 10, "mttr": {"revoke": {"p50_s": 4.4}}}}
    assert fake_bench("def5678-dirty", parts=("mttr",), measured=remeasured) == 0
    written = _written(tmp_path / "results.json")
    after = written["parts"]
    assert after["mttr"]["provenance"]["commit"] == "def5678-dirty"
    assert after["mttr"]["figures"]["mttr"]["revoke"]["p50_s"] == 4.4
    for name in PARTS:
        if name != "mttr":
            assert after[name] == before[name], name  # never restamped with the new commit
    assert written["carried_over"] == [name for name in PARTS if name != "mttr"]
    assert written["last_run"]["commit"] == "def5678-dirty"
    assert written["last_run"]["measured"] == ["mttr"]


def test_a_part_that_fails_keeps_its_last_figures_and_the_run_says_why(
    fake_bench: Bench, tmp_path: Path
) -> None:
    fake_bench("abc1234")
    before = _written(tmp_path / "results.json")["parts"]

    def broken() -> dict[str, Any]:
        raise RuntimeError("revoke run 2 did not pass")

    assert fake_bench("def5678", parts=("mttr", "many"), measured={"mttr": broken}) == 1
    written = _written(tmp_path / "results.json")
    assert written["parts"]["mttr"] == before["mttr"]
    assert written["parts"]["many"]["provenance"]["commit"] == "def5678"
    assert "revoke run 2 did not pass" in written["last_run"]["errors"]["mttr"]
    assert "mttr" in written["carried_over"] and "many" not in written["carried_over"]


def test_a_carried_over_part_is_printed_with_the_commit_it_was_measured_at(
    fake_bench: Bench, tmp_path: Path
) -> None:
    results = tmp_path / "results.json"
    # A file as the migration left it: the storm measured at 25940f0, hours before.
    fake_bench("25940f0", parts=("storm",))
    stored = _written(results)
    stored["parts"]["storm"]["provenance"]["at"] = "2026-11-30T02:04:15+00:00"
    results.write_text(json.dumps(stored))
    fake_bench("b040f78-dirty", parts=("runtime",))
    printed = read(results)
    assert printed is not None
    assert printed.parts["storm"].provenance.commit == "25940f0"
    console = Console(width=200, record=True)
    console.print(results_table(printed))
    text = console.export_text()
    assert "storm (carried over)" in text and "25940f0, 2026-11-30 02:04 UTC" in text
    assert "b040f78-dirty" in text


def test_an_older_file_s_carried_figures_are_marked_as_of_unknown_provenance(
    tmp_path: Path,
) -> None:
    # The shape before parts carried their provenance: one commit for the whole file, which
    # was true only of the parts its run measured.
    older = {
        "at": "2026-11-30T08:43:15+00:00",
        "commit": "b040f78-dirty",
        "machine": {"cpus": 2, "python": "3.11.7", "platform": "Linux"},
        "settings": {"emulator": "moto 5.2.5", "runtime": {"batch": 10}, "incidents": {}},
        "runtime_overhead": {"ratio": 0.48},
        "runtime_overhead_ratio": 0.48,
        "many": {"targets": 10},
        "figures": ["many", "runtime_overhead", "runtime_overhead_ratio"],
        "carried_over": ["many"],
        "errors": {},
    }
    path = tmp_path / "results.json"
    path.write_text(json.dumps(older))
    results = read(path)
    assert results is not None
    runtime, many = results.parts["runtime"].provenance, results.parts["many"].provenance
    assert runtime.commit == "b040f78-dirty" and runtime.settings == {
        "emulator": "moto 5.2.5",
        "runtime": {"batch": 10},
    }
    assert many.commit is None and many.at is None
    assert many.describe() == "provenance unknown"
    assert results.carried_over == ["many"]


def test_every_part_of_the_committed_results_says_where_it_was_measured() -> None:
    results = read(run.RESULTS)
    assert results is not None
    for name, part in results.parts.items():
        stamped = part.provenance
        assert stamped.commit and stamped.at, name
        assert stamped.machine is not None and stamped.settings, name
