"""The embedded world's clock for credentials: real time, plus however far its owner has
moved it on.

AWS's shortest role session lasts 900 s (AssumeRole's DurationSeconds), too long for a test
to wait for. Whoever owns the world - who can write its state directory, as only they can
read its administrator's keys - moves this clock forward by writing the offset file; the
emulator reads it at each request that needs the time (a stat; the file is re-read when it
changes), and so does the Lambda runtime when it asks whether its role's keys are still
fresh. It governs what waits on time in the world's IAM and CloudTrail: when sessions
expire, the request-time keys aws:CurrentTime and aws:EpochTime, and when a CloudTrail event
is delivered (emulation/cloudtrail.py). Everything else in the world (alarm periods, the
watch window, message timers, the time each event is stamped with) keeps real time. It only
moves forward.
"""

from __future__ import annotations

import os
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

FILE_NAME = "clock-offset"


class WorldClock:
    def __init__(self, path: Path | None):
        self.path = path
        self._seen: tuple[int, int] | None = None
        self._offset_s = 0.0
        self._lock = threading.Lock()

    def offset_s(self) -> float:
        if self.path is None:
            return 0.0
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            return 0.0
        seen = (stat.st_mtime_ns, stat.st_size)
        with self._lock:
            if seen != self._seen:
                try:
                    self._offset_s = max(0.0, float(self.path.read_text().strip() or 0))
                except (OSError, ValueError):  # being replaced, or not ours: keep the last
                    return self._offset_s
                self._seen = seen
            return self._offset_s

    def now(self) -> datetime:
        return datetime.now(UTC) + timedelta(seconds=self.offset_s())

    def advance(self, seconds: float) -> None:
        """Move the clock `seconds` forward (atomically: a reader sees before or after)."""
        if seconds < 0:
            raise ValueError("the world's clock only moves forward")
        if self.path is None:
            raise ValueError("this clock has no file to move it by")
        moved = self.offset_s() + seconds
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        tmp.write_text(f"{moved}\n")
        os.replace(tmp, self.path)


def of_state_dir(state_dir: Path) -> WorldClock:
    return WorldClock(state_dir / FILE_NAME)


# The emulator's own, installed at its start (emulation/emulator.py); real time until then.
_installed = WorldClock(None)


def install(path: Path | None) -> None:
    global _installed
    _installed = WorldClock(path)


def now() -> datetime:
    return _installed.now()
