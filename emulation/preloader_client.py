"""The launcher's side of the preloader (emulation/preloader.py): start it, ask it for a
service, and hold each service it forks as what the launcher uses of subprocess.Popen."""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

# prctl(2): orphaned descendants become this process's children.
PR_SET_CHILD_SUBREAPER = 36
READY = "preloaded"


def become_subreaper() -> bool:
    """Make this process a child subreaper; False where the kernel has no such thing (then
    every service is started as a process of its own)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


class ForkedProcess:
    """A service the preloader forked and handed to this process (its subreaper): it is this
    process's child, waited for with waitpid as Popen does for its own."""

    def __init__(self, pid: int, args: list[str]):
        self.pid = pid
        self.args = args
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:  # reaped elsewhere: gone, its code unknown
                self.returncode = -1
                return self.returncode
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        end = None if timeout is None else time.monotonic() + timeout
        while (code := self.poll()) is None:
            if end is not None and time.monotonic() >= end:
                raise subprocess.TimeoutExpired(self.args, timeout or 0)
            time.sleep(0.02)
        return code

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signum)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


class PreloaderError(RuntimeError):
    """The preloader could not fork a service (the launcher starts it on its own instead)."""


class Preloader:
    """The preloader process, started as soon as the world starts (it imports while the
    emulator comes up), and asked for each service once it has said it is ready."""

    def __init__(self, env: dict[str, str], cwd: Path, log_path: Path):
        with open(log_path, "ab") as log_file:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "emulation.preloader"],
                cwd=cwd,
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log_file,
            )
        assert self.process.stdin is not None and self.process.stdout is not None
        self.requests: IO[bytes] = self.process.stdin
        self.answers: IO[bytes] = self.process.stdout
        self.ready = False

    def said_ready(self) -> bool:
        """Whether it has said it is ready (without waiting)."""
        if not self.ready and select.select([self.answers], [], [], 0)[0]:
            line = self.answers.readline().decode().strip()
            if line != READY:
                raise PreloaderError(f"the preloader said {line!r} before it was ready")
            self.ready = True
        return self.ready

    def spawn(self, argv: list[str], env: dict[str, str], cwd: Path, log: Path) -> ForkedProcess:
        request: dict[str, Any] = {
            "argv": argv,
            "env": env,
            "cwd": str(cwd),
            "log": str(log),
            "launcher_pid": os.getpid(),
        }
        try:
            self.requests.write((json.dumps(request) + "\n").encode())
            self.requests.flush()
            line = self.answers.readline()
        except OSError as exc:
            raise PreloaderError(f"the preloader is gone: {exc}") from None
        if not line:
            raise PreloaderError(f"the preloader is gone (exit code {self.process.poll()})")
        answer = json.loads(line)
        if "pid" not in answer:
            raise PreloaderError(answer.get("error", "no answer"))
        return ForkedProcess(int(answer["pid"]), argv)
