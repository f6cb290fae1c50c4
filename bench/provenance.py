"""Where and when each part of bench/results.json was measured.

`make bench` runs its parts (runtime, storm, mttr, ...) and `fleet bench --parts` only some
of them; the parts a run leaves out keep their latest figures. The file is a mix of runs, so
one commit and date at its top would be wrong for most of it. Each part carries its own
provenance instead: the commit it was measured at (`-dirty` if the tree had changes), when
it started, the machine and how loaded it was, and the settings it ran with. A part carried
over keeps its provenance as it was: no run restamps a figure it did not measure.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel


class Machine(BaseModel):
    cpus: int | None
    python: str
    platform: str
    # The 1, 5 and 15 minute load averages as the part started: a machine busy with something
    # else (a test suite, another bench) slows every figure, and this is where it shows.
    # None where it was not recorded.
    load_average: list[float] | None = None


class Provenance(BaseModel):
    """When and where a part was measured. `commit` None: not known (a figure carried over
    from before parts carried their provenance, with nothing left to say where it came from)."""

    commit: str | None
    at: str | None  # UTC, ISO 8601
    machine: Machine | None
    settings: dict[str, Any] | None
    # How this provenance was established when the run that measured the part did not stamp
    # it itself (recovered from git history, or unknown); None when it did.
    note: str | None = None

    def describe(self) -> str:
        """The compact form the table and the README print: `25940f0, 2026-11-30 02:04 UTC`."""
        if self.commit is None:
            return "provenance unknown"
        if self.at is None:
            return f"{self.commit}, date unknown"
        at = datetime.fromisoformat(self.at).astimezone(UTC)
        return f"{self.commit}, {at:%Y-%m-%d %H:%M} UTC"


class MeasuredPart(BaseModel):
    provenance: Provenance
    figures: dict[str, Any]


class LastRun(BaseModel):
    """The run that last wrote the file: what it measured and what failed. It says nothing
    about the parts it carried over."""

    at: str
    commit: str | None
    measured: list[str]
    errors: dict[str, str]


class BenchResults(BaseModel):
    last_run: LastRun
    carried_over: list[str]  # parts the last run did not measure: their own provenance holds
    parts: dict[str, MeasuredPart]


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def current_commit(root: Path) -> str | None:
    """HEAD's short hash, `-dirty` if the work tree has changes (they may be what was
    measured); None outside a git checkout."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        changes = subprocess.run(
            ["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("-dirty" if changes else "")


def this_machine() -> Machine:
    try:
        load: list[float] | None = [round(x, 2) for x in os.getloadavg()]
    except OSError:  # the platform cannot tell
        load = None
    return Machine(
        cpus=os.cpu_count(),
        python=platform.python_version(),
        platform=platform.platform(),
        load_average=load,
    )


def stamp(settings: dict[str, Any], root: Path) -> Provenance:
    """A part's provenance as it starts: the commit now (the tree can change during an
    hour-long run), the time, this machine and its load, the part's settings."""
    return Provenance(
        commit=current_commit(root), at=now(), machine=this_machine(), settings=settings
    )


def combine(
    previous: BenchResults | None,
    measured: Mapping[str, MeasuredPart],
    errors: Mapping[str, str],
    order: Sequence[str],
    run: LastRun,
) -> BenchResults:
    """This run's parts over the previous file's: a part this run measured replaces its old
    figures and provenance; any other (not asked for, or failed) is kept exactly as it was.
    Parts are listed in `order`, then any the bench no longer has."""
    kept = dict(previous.parts) if previous else {}
    carried = [name for name in kept if name not in measured]
    merged = {**kept, **measured}
    ranked = [n for n in order if n in merged] + [n for n in merged if n not in order]
    return BenchResults(
        last_run=run.model_copy(update={"measured": list(measured), "errors": dict(errors)}),
        carried_over=[n for n in ranked if n in carried],
        parts={name: merged[name] for name in ranked},
    )


# How the file laid the parts' figures out before each part carried its provenance: every
# figure at the top level, one commit, date, machine and settings for the whole file.
FLAT_FIGURES: dict[str, tuple[str, ...]] = {
    "runtime": ("runtime_overhead", "runtime_overhead_ratio"),
    "console": ("console_dead_letters",),
    "storm": ("storm", "storms", "storm_scaling"),
    "mttr": (
        "alarm_period_s",
        "cold_start_s",
        "mttr",
        "tool_calls",
        "diagnosis_tokens",
        "incident_cost",
    ),
    "mttr-period": ("mttr_long_period",),
    "many": ("many",),
    "faults": ("faults",),
    "random": ("random_gameday",),
}
# Which of that file's settings each part ran with.
FLAT_SETTINGS: dict[str, tuple[str, ...]] = {
    "runtime": ("emulator", "runtime"),
    "console": ("emulator", "runtime"),
    "storm": ("emulator", "runtime"),
    "mttr": ("emulator", "incidents"),
    "mttr-period": ("emulator", "incidents"),
    "many": ("emulator", "incidents"),
    "random": ("emulator", "incidents"),
    "faults": ("emulator", "fault_survival"),
}


def from_flat(flat: Mapping[str, Any]) -> dict[str, MeasuredPart]:
    """The parts of a file written before parts carried their provenance. A part that file's
    run measured gets its commit, date, machine and settings; a part it had carried over
    gets none, since that file did not say where it came from."""
    carried = set(flat.get("carried_over", []))
    machine = flat.get("machine")
    settings = flat.get("settings") or {}
    parts: dict[str, MeasuredPart] = {}
    for name, keys in FLAT_FIGURES.items():
        figures = {k: flat[k] for k in keys if k in flat}
        if not figures:
            continue
        if any(k in carried for k in figures):
            provenance = Provenance(
                commit=None,
                at=None,
                machine=None,
                settings=None,
                note=f"carried over into a file written at {flat.get('commit')} from an "
                "earlier run it did not name",
            )
        else:
            provenance = Provenance(
                commit=flat.get("commit"),
                at=flat.get("at"),
                machine=Machine(**machine) if machine else None,
                settings={k: settings[k] for k in FLAT_SETTINGS[name] if k in settings},
                note="from a file with one provenance for every part: `at` is when that run "
                "wrote it, the settings are the whole run's",
            )
        parts[name] = MeasuredPart(provenance=provenance, figures=figures)
    return parts


def read(path: Path) -> BenchResults | None:
    """The results file as written, or as parts with what provenance an older file gives."""
    if not path.exists():
        return None
    raw = json.loads(path.read_text())
    if "parts" in raw:
        return BenchResults.model_validate(raw)
    parts = from_flat(raw)
    return BenchResults(
        last_run=LastRun(
            at=raw.get("at", ""),
            commit=raw.get("commit"),
            measured=[n for n, p in parts.items() if p.provenance.commit is not None],
            errors=raw.get("errors", {}),
        ),
        carried_over=[n for n, p in parts.items() if p.provenance.commit is None],
        parts=parts,
    )


def write(path: Path, results: BenchResults) -> None:
    path.write_text(results.model_dump_json(indent=2) + "\n")
