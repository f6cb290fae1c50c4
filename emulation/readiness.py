"""Waiting for a process to be ready for as long as it is alive and making progress.

A fixed deadline fails a healthy process on a busy machine and waits too long for a broken
one: a world is a dozen Python processes that each import for seconds of CPU, and beside a
CPU hog those seconds stretch to a minute. So a process is waited for while it lives and
moves: it (or a process it started) gains CPU time, or it writes to its log. It is given
up on only when it exits (with its exit code and the last line it logged) or stalls: alive
but without CPU time or a log line for `stall_s`, which on this machine means it waits on
something that will not come (a deadlock, a port that never answers), not that it is slow.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from core.errors import FleetError

# /proc/PID/stat counts CPU time in clock ticks.
_TICKS_PER_S = os.sysconf("SC_CLK_TCK")


class ChildProcess(Protocol):
    """What the launcher uses of a child: subprocess.Popen, or a service forked by the
    preloader (emulation/preloader_client.py)."""

    pid: int
    returncode: int | None

    def poll(self) -> int | None: ...

    def wait(self, timeout: float | None = None) -> int: ...

    def terminate(self) -> None: ...

    def kill(self) -> None: ...


class NotReadyError(FleetError):
    """A process exited, or stalled, before it was ready; the message names it and quotes
    the last line of its log."""


def _stat_fields(pid: int) -> list[str] | None:
    try:
        # The command name (field 2) may hold spaces and parentheses: split after its end.
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields and int(fields[1]) == pid:  # the parent's pid is field 4 (index 1 here)
                found.append(int(entry.name))
    return found


def cpu_seconds(pid: int, with_descendants: bool = False) -> float:
    """CPU time (user + system) a process has used so far; with its descendants, theirs too
    (a launcher mostly waits while its children work). 0 for a process that is gone."""
    pids, total = [pid], 0
    while pids:
        current = pids.pop()
        fields = _stat_fields(current)
        if fields:  # utime and stime are fields 14 and 15 (indexes 11 and 12 here)
            total += int(fields[11]) + int(fields[12])
        if with_descendants:
            pids.extend(_children(current))
    return total / _TICKS_PER_S


def last_log_line(log_path: Path, offset: int = 0) -> str:
    """The last non-empty line written to a log since `offset`, or a note that there is none."""
    try:
        with open(log_path, "rb") as log_file:
            log_file.seek(max(offset, os.path.getsize(log_path) - 4096))
            lines = log_file.read().decode(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    for line in reversed(lines):
        if line.strip():
            return line.strip()[-400:]
    return "(nothing logged)"


@dataclass
class Watched:
    """A process being waited for: its name for people, its log, and where this run's lines
    in that log start (a state directory used before keeps the old ones)."""

    name: str
    process: ChildProcess
    log_path: Path
    log_offset: int = 0
    with_descendants: bool = False
    _progress: tuple[float, int] = field(default=(-1.0, -1), init=False)

    def moved(self) -> bool:
        """Whether it used CPU time or wrote to its log since this was last asked."""
        try:
            size = self.log_path.stat().st_size
        except OSError:
            size = 0
        now = (cpu_seconds(self.process.pid, self.with_descendants), size)
        moved, self._progress = now != self._progress, now
        return moved


def wait_ready(
    watched: Watched,
    ready: Callable[[], bool],
    what: str,
    stall_s: float,
    every_s: float = 0.1,
) -> float:
    """Wait until `ready()`; the seconds it took. Raises NotReadyError if the process exits
    first or makes no progress for `stall_s`."""
    started = last_moved = next_look = time.monotonic()
    # Progress is read from /proc (every process's, for a launcher's descendants): a few
    # times per stall period is enough, where readiness is checked every `every_s`.
    look_every_s = min(1.0, stall_s / 4)
    while True:
        if ready():
            return time.monotonic() - started
        code = watched.process.poll()
        if code is not None:
            if ready():  # it did its part and left (a launcher that wrote its record)
                return time.monotonic() - started
            raise NotReadyError(
                f"{watched.name} exited with {code} before {what}; its last log line "
                f"({watched.log_path}): {last_log_line(watched.log_path, watched.log_offset)}"
            )
        now = time.monotonic()
        if now < next_look:
            time.sleep(every_s)
            continue
        next_look = now + look_every_s
        if watched.moved():
            last_moved = now
        elif now - last_moved > stall_s:
            raise NotReadyError(
                f"{watched.name} (pid {watched.process.pid}) made no progress for "
                f"{stall_s:g}s before {what}: alive, but no CPU time and no log line; its "
                f"last log line ({watched.log_path}): "
                f"{last_log_line(watched.log_path, watched.log_offset)}"
            )
        time.sleep(every_s)
