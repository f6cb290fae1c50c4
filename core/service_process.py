"""How a long-running child of `fleet up` lives: JSON logs, stop on SIGTERM/SIGINT, and stop
by itself if the launcher dies without stopping it (kill -9, OOM): an orphaned emulator
would hold the port and block the next world."""

from __future__ import annotations

import os
import signal
import threading
from typing import Protocol

from core import structured_logging

POLL_S = 1.0


class Service(Protocol):
    stop_event: threading.Event

    def run(self) -> None: ...


def stop_when_orphaned(launcher_pid: int | None) -> None:
    # The launcher's pid comes from the launcher itself: a child that is still starting when
    # the launcher dies would otherwise take its new parent (init) for the launcher.
    parent = launcher_pid or os.getppid()

    def watch() -> None:
        while True:
            threading.Event().wait(POLL_S)
            if os.getppid() != parent:
                os.kill(os.getpid(), signal.SIGTERM)
                return

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def run_service(name: str, service: Service, launcher_pid: int | None) -> None:
    structured_logging.configure(name)
    signal.signal(signal.SIGTERM, lambda *_: service.stop_event.set())
    signal.signal(signal.SIGINT, lambda *_: service.stop_event.set())
    stop_when_orphaned(launcher_pid)
    service.run()
