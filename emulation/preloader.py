"""Embedded worlds: the fleet's Python services forked from one process that has already
imported what they share, instead of each importing it anew.

A world starts its agent workers, MCP servers and console at once on one machine, and each
spent 1.5-3.5 CPU-seconds importing much the same libraries (LangChain, LangGraph, the MCP
SDK, boto3, pydantic, OpenTelemetry) before doing anything: some 16 of a world's 25. The
preloader imports them once; each service is then a fork of it that runs its own command
line (`python -m fleet.cli worker supervisor`: module and arguments, its own environment,
working directory and log), as the standard library's forkserver does for multiprocessing.

So that the launcher still owns each service as its child (waits for it, reads its exit
code, restarts it, stops it by its PID), the launcher makes itself a child subreaper
(Linux's PR_SET_CHILD_SUBREAPER): the preloader forks a go-between that forks the service and
exits at once, and the orphaned service is handed to the launcher. Where that is not
available (not Linux), every service is a process of its own from the start, as on AWS,
where each is a container of its own.

A request is one JSON line on the preloader's standard input (`argv`, `env`, `cwd`, `log`);
the answer one JSON line on its standard output: `{"pid": N}` or `{"error": "..."}`.
"""

from __future__ import annotations

import io
import json
import os
import runpy
import sys
import threading
import time
from typing import Any

# What the services import before they do anything (their command groups' imports), once
# here for every service forked from here.
import setproctitle
import uvicorn  # noqa: F401

import console.app  # noqa: F401
import mcp_servers.app
import mcp_servers.resolver.server
import mcp_servers.supervisor.server  # noqa: F401
import workers.critic
import workers.resolver
import workers.stage
import workers.supervisor
import workers.watchdog  # noqa: F401
from emulation.preloader_client import READY


class BecomeService(BaseException):  # not an error: a change of role
    """Raised in the forked service, out of the preloader's loop, to run its command line at
    the top of the stack: it then exits as any Python process does (atexit handlers, such as
    the trace exporter's flush, and non-daemon threads included)."""

    def __init__(self, request: dict[str, Any], report_fd: int):
        super().__init__()
        self.request = request
        self.report_fd = report_fd


def run_service(request: dict[str, Any], report_fd: int) -> None:
    """In the forked service: become the command line asked for (SystemExit ends it)."""
    argv: list[str] = request["argv"]
    # Its own command line in ps and /proc, as if started on its own, before its PID is
    # told (and before the environment is replaced: the title is written over the argv and
    # environ strings the process began with).
    setproctitle.setproctitle(" ".join(argv))
    os.write(report_fd, f"{os.getpid()}\n".encode())
    os.close(report_fd)
    launcher = int(request["launcher_pid"])
    while os.getppid() != launcher:  # until the go-between is gone and the launcher has it
        try:
            os.kill(launcher, 0)
        except ProcessLookupError:
            os._exit(1)  # the launcher is gone: nobody would stop this service
        time.sleep(0.001)
    os.environ.clear()
    os.environ.update(request["env"])
    os.chdir(request["cwd"])
    log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(null)
    os.close(log)
    # The preloader's streams were buffered for its pipe; a service's log is written through,
    # as PYTHONUNBUFFERED makes it for a process started on its own.
    sys.stdin = open(0, encoding="utf-8", closefd=False)  # noqa: SIM115
    sys.stdout = io.TextIOWrapper(
        io.FileIO(1, "w", closefd=False), encoding="utf-8", write_through=True
    )
    sys.stderr = io.TextIOWrapper(
        io.FileIO(2, "w", closefd=False),
        encoding="utf-8",
        errors="backslashreplace",
        write_through=True,
    )
    at = argv.index("-m")
    sys.argv = [argv[at + 1], *argv[at + 2 :]]
    runpy.run_module(argv[at + 1], run_name="__main__", alter_sys=True)


def spawn(request: dict[str, Any]) -> int:
    """Fork the service through a go-between; its PID once it is the launcher's child."""
    if threading.active_count() != 1:
        raise RuntimeError("the preloader has started a thread: forking it is not safe")
    sys.stdout.flush()
    sys.stderr.flush()
    read_fd, write_fd = os.pipe()
    between = os.fork()
    if between == 0:  # the go-between: fork the service, then leave it to the launcher
        os.close(read_fd)
        if os.fork() == 0:
            raise BecomeService(request, write_fd)
        os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd) as report:
        said = report.readline().strip()
    os.waitpid(between, 0)  # gone: its child has been handed to the launcher
    if not said:
        raise RuntimeError("the service's fork failed before it said its PID")
    return int(said)


def serve() -> int:
    print(READY, flush=True)
    for line in sys.stdin:
        try:
            answer: dict[str, Any] = {"pid": spawn(json.loads(line))}
        except Exception as exc:
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(answer), flush=True)
    return 0  # stdin closed: the launcher is done with it


if __name__ == "__main__":
    try:
        sys.exit(serve())
    except BecomeService as become:
        run_service(become.request, become.report_fd)
        sys.exit(0)
