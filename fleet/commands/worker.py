"""`fleet worker`: a stage's consumer on its queue until SIGTERM (the worker runtime's entry).

It configures its own JSON logs and, started by `fleet up`, stops with it. It imports the
worker's stack alone: the stage's handler (and through it the agents, for the stages that
run one), never the console or the MCP servers.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from core import structured_logging, tracing
from core.aws import Clients
from core.credentials import holding_own_keys
from core.errors import UsageError
from core.principals import Principal
from core.service_process import stop_when_orphaned
from core.settings import Settings
from fleet.commands import Subparsers, add_command
from queues.topology import Stage, build_topology
from workers.stage import StageHandler, build_consumer

# module:function of each stage's handler; `fleet worker --handler` runs another.
DEFAULT_HANDLERS = {
    Stage.SUPERVISOR: "workers.supervisor:handle",
    Stage.RESOLVER: "workers.resolver:handle",
    Stage.CRITIC: "workers.critic:handle",
    Stage.WATCHDOG: "workers.watchdog:handle",
}


def _load_handler(spec: str) -> StageHandler:
    module, _, attr = spec.partition(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise UsageError(f"cannot load handler {spec!r}: {exc}") from None


def run_consumer(stage: Stage, handler: StageHandler, settings: Settings) -> int:
    """Run the stage's consumer until SIGTERM; its exit code."""
    consumer = build_consumer(
        build_topology(settings).queue(stage),
        handler,
        settings,
        Clients(Principal(stage.value), holding_own_keys(settings, Principal(stage.value))),
    )
    consumer.install_signal_handlers()
    return consumer.run()


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    stage = Stage(args.stage)
    spec = args.handler or DEFAULT_HANDLERS.get(stage)
    if spec is None:
        raise UsageError(f"no handler for stage {stage.value} yet; pass --handler module:function")
    handler = _load_handler(spec)
    if args.concurrency:
        settings = settings.model_copy(update={"worker_concurrency": args.concurrency})
    structured_logging.configure(f"worker-{stage.value}")
    tracing.configure(f"worker-{stage.value}", settings)
    if settings.launcher_pid:  # a child of `fleet up`: leave with it
        stop_when_orphaned(settings.launcher_pid)
    code = run_consumer(stage, handler, settings)
    tracing.flush()  # os._exit skips what the SDK does at exit
    sys.stderr.flush()
    # Handler threads still running past the grace period had their messages returned:
    # leave without waiting for them.
    os._exit(code)


def register(sub: Subparsers) -> None:
    worker = add_command(sub, "worker")
    worker.add_argument("stage", choices=[s.value for s in Stage])
    worker.add_argument("--handler", help="module:function to run instead of the stage's own")
    worker.add_argument("--concurrency", type=int, help="messages in flight at once")
    worker.set_defaults(func=cmd_worker, own_logging=True)
