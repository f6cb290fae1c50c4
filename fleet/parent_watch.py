"""Children of `fleet up` stop themselves if the launcher dies without stopping them
(kill -9, OOM): an orphaned emulator would hold the port and block the next world."""

from __future__ import annotations

import os
import signal
import threading

POLL_S = 1.0


def stop_when_orphaned() -> None:
    parent = os.getppid()

    def watch() -> None:
        while True:
            threading.Event().wait(POLL_S)
            if os.getppid() != parent:
                os.kill(os.getpid(), signal.SIGTERM)
                return

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
