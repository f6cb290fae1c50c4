"""`fleet`: one command with subcommands; every Make target is a thin wrapper over it.

Exit codes: 0 success, 1 a failure the message explains, 2 bad usage (unknown target,
function or option; the message names the valid choices).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from fleet.errors import FleetError, UsageError
from fleet.settings import Settings, get_settings


def _emit_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


# ---------------------------------------------------------------- world


def cmd_up(args: argparse.Namespace, settings: Settings) -> int:
    from fleet import structured_logging
    from fleet.world import run_world

    structured_logging.configure("world")
    if args.port:
        settings = settings.model_copy(update={"emulator_port": args.port})
    return run_world(settings, args.targets or settings.target_count)


def cmd_down(args: argparse.Namespace, settings: Settings) -> int:
    from fleet.world import stop_world

    pid = stop_world(settings)
    print(f"world (pid {pid}) stopped")
    return 0


def cmd_provision(args: argparse.Namespace, settings: Settings) -> int:
    from fleet.provisioning import ProvisionReport
    from fleet.world import provision, read_world

    world = read_world(settings)
    if world is None:
        raise FleetError("no world is running: start one with `fleet up`")
    report = ProvisionReport()
    provision(settings, int(world["targets"]), report)
    if args.json:
        _emit_json({"summary": report.summary(), "changes": report.as_json()})
    else:
        for change in report.changed:
            print(f"{change.action:9} {change.kind:18} {change.name}")
        print(report.summary())
    return 0


# ---------------------------------------------------------------- chaos


def _protected_functions(settings: Settings) -> list[str]:
    from chaos.lambda_runtime import protected_functions
    from fleet.aws import Clients
    from fleet.principals import Principal

    return protected_functions(Clients(Principal.OPERATOR, settings)("lambda"))


def _specs(settings: Settings, function: str | None, every: bool) -> list[Any]:
    from chaos.workload.spec import FUNCTION_BASE_NAME, spec_for

    deployed = _protected_functions(settings)
    names = (deployed if every else [FUNCTION_BASE_NAME]) if function is None else [function]
    for name in names:
        if name not in deployed:
            raise UsageError(
                f"unknown function {name!r}; protected functions: {', '.join(deployed) or 'none'}"
            )
    return [spec_for(name, settings) for name in names]


def cmd_chaos(args: argparse.Namespace, settings: Settings) -> int:
    from chaos import faults
    from fleet.aws import Clients
    from fleet.principals import Principal

    clients = Clients(Principal.OPERATOR, settings)
    if args.fault == "status":
        return _chaos_status(args, settings, clients)
    every = args.fault == "restore" and args.function is None
    actions: dict[str, Callable[[Any], str]] = {
        "revoke": lambda spec: faults.revoke(clients, spec, faults.parse_targets(args.target)),
        "deny": lambda spec: faults.deny(clients, spec, faults.parse_targets(args.target)),
        "throttle": lambda spec: faults.throttle(clients, spec, args.concurrency),
        "network-block": lambda spec: faults.network_block(clients, spec),
        "env-drift": lambda spec: faults.env_drift(clients, spec, args.var, args.value),
        "timeout": lambda spec: faults.timeout(clients, spec, args.seconds),
        "restore": lambda spec: faults.restore(clients, spec),
    }
    if args.fault in ("revoke", "deny"):
        faults.parse_targets(args.target)  # a bad target fails before anything changes
    for spec in _specs(settings, args.function, every):
        print(actions[args.fault](spec))
    return 0


def _chaos_status(args: argparse.Namespace, settings: Settings, clients: Any) -> int:
    from chaos.status import function_status

    window = args.window or max(5, int(3 * settings.target_interval_s + settings.workload_work_s))
    statuses = [
        function_status(clients, spec, window) for spec in _specs(settings, args.function, True)
    ]
    if args.json:
        _emit_json([s.as_json() for s in statuses])
        return 0
    for s in statuses:
        r = s.runs
        print(
            f"{s.function}: {s.health} (last {r.window_s}s: {r.invocations} runs, "
            f"{r.errors} errors, {r.throttles} throttles); "
            f"{'at baseline' if s.at_baseline else 'DRIFTED from baseline'}"
        )
        for d in s.drift:
            print(f"  - {d}")
        if r.last_error:
            print(f"  last error: {r.last_error}")
    return 0


# ---------------------------------------------------------------- baselines


def cmd_baseline(args: argparse.Namespace, settings: Settings) -> int:
    from fleet.aws import Clients
    from fleet.principals import Principal
    from workers.baselines import BaselineStore, capture

    clients = Clients(Principal.OPERATOR, settings)
    names = [s.name for s in _specs(settings, args.function, True)]
    if args.action == "capture":
        for captured in capture(clients, names, "fleet baseline capture"):
            print(f"{captured.function}: baseline v{captured.version} ({captured.captured_at})")
        return 0
    store = BaselineStore(clients("dynamodb"))
    baselines = {name: store.latest(name) for name in names}
    if args.json:
        _emit_json({n: b.model_dump() if b else None for n, b in baselines.items()})
        return 0
    for name, b in baselines.items():
        if b is None:
            print(f"{name}: no baseline recorded (`fleet baseline capture --function {name}`)")
            continue
        print(f"{name}: baseline v{b.version}, captured {b.captured_at} by {b.captured_by}")
        print(
            f"  role {b.role_name}: inline {', '.join(b.inline_policies) or 'none'}; "
            f"attached {', '.join(b.attached_policy_arns) or 'none'}"
        )
        concurrency = "unreserved" if b.reserved_concurrency is None else b.reserved_concurrency
        print(f"  concurrency {concurrency}; timeout {b.timeout_s}s; memory {b.memory_mb} MB")
        print(f"  environment: {', '.join(sorted(b.environment)) or 'none'}")
        for g in b.security_groups:
            print(
                f"  {g.group_name} ({g.group_id}): {len(g.egress)} egress, "
                f"{len(g.ingress)} ingress rule(s)"
            )
    return 0


# ---------------------------------------------------------------- tail


def cmd_tail(args: argparse.Namespace, settings: Settings) -> int:
    from fleet.aws import Clients
    from fleet.principals import Principal
    from queues.tail import TailSnapshot, safe_snapshot
    from queues.topology import build_topology

    clients = Clients(Principal.OPERATOR, settings)
    topology = build_topology(settings)
    from rich.console import Console
    from rich.live import Live

    from queues.tail_view import render

    if args.once:
        once = safe_snapshot(clients, topology, None)
        if args.json:
            _emit_json(once.model_dump())
        else:
            Console().print(render(once))
        return 1 if once.error else 0
    snap: TailSnapshot | None = None
    try:
        # --json streams one snapshot per line (for scripts); otherwise a live table.
        with Live(auto_refresh=False, console=Console(quiet=args.json)) as live:
            while True:
                snap = safe_snapshot(clients, topology, snap)
                if args.json:
                    print(json.dumps(snap.model_dump()), flush=True)
                else:
                    live.update(render(snap), refresh=True)
                time.sleep(settings.tail_refresh_s)
    except KeyboardInterrupt:
        return 0


# ---------------------------------------------------------------- workers


DEFAULT_HANDLERS = {"supervisor": "workers.intake:handle_alert"}


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    import importlib
    import os

    from fleet import structured_logging
    from fleet.aws import Clients
    from fleet.principals import Principal
    from queues.consumer import Consumer
    from queues.topology import Stage, build_topology

    stage = Stage(args.stage)
    spec = args.handler or DEFAULT_HANDLERS.get(stage.value)
    if spec is None:
        raise UsageError(f"no handler for stage {stage.value} yet; pass --handler module:function")
    module, _, attr = spec.partition(":")
    try:
        handler = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise UsageError(f"cannot load handler {spec!r}: {exc}") from None
    if args.concurrency:
        settings = settings.model_copy(update={"worker_concurrency": args.concurrency})
    structured_logging.configure(f"worker-{stage.value}")
    consumer = Consumer(
        build_topology(settings).queue(stage),
        handler,
        settings,
        Clients(Principal(stage.value), settings),
    )
    consumer.install_signal_handlers()
    code = consumer.run()
    sys.stderr.flush()
    # Handler threads still running past the grace period had their messages returned:
    # leave without waiting for them.
    os._exit(code)


def cmd_failures(args: argparse.Namespace, settings: Settings) -> int:
    from fleet.aws import Clients
    from fleet.principals import Principal
    from queues.failures import FailureLog

    records = FailureLog(Clients(Principal.OPERATOR, settings)("dynamodb")).all(args.queue)
    if args.json:
        _emit_json([r.model_dump() for r in records])
        return 0
    for r in records:
        where = "DLQ" if r.dead_lettered else f"retrying ({r.receive_count} receives)"
        print(
            f"{r.last_failure_at}  {r.queue:10} {r.message_id}  {where}  {r.error_class}: "
            f"{r.reason[:160]}"
        )
    if not records:
        print("no failures recorded")
    return 0


# ---------------------------------------------------------------- MCP servers


def cmd_mcp(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from fleet import structured_logging
    from fleet.aws import Clients
    from fleet.principals import Principal
    from fleet.service_process import stop_when_orphaned
    from mcp_servers.app import build_app
    from mcp_servers.resolver import server as resolver
    from mcp_servers.supervisor import server as supervisor

    build_server, principal, port = {
        "supervisor": (
            supervisor.build_server,
            Principal.MCP_SUPERVISOR,
            settings.mcp_supervisor_port,
        ),
        "resolver": (resolver.build_server, Principal.MCP_RESOLVER, settings.mcp_resolver_port),
    }[args.server]
    structured_logging.configure(f"mcp-{args.server}")
    if settings.launcher_pid:  # a child of `fleet up`: stop with it (uvicorn handles SIGTERM)
        stop_when_orphaned(settings.launcher_pid)
    server = build_server(settings, Clients(principal, settings))
    app = build_app(server, settings.resolved_mcp_api_key())
    uvicorn.run(
        app,
        host=settings.mcp_host,
        port=port,
        log_level="warning",
        timeout_keep_alive=5,
        timeout_graceful_shutdown=5,
    )
    return 0


# ---------------------------------------------------------------- demo


def cmd_bench(args: argparse.Namespace, settings: Settings) -> int:
    from bench.run import run

    return run(messages=args.messages, rounds=args.rounds, alerts=args.alerts)


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from fleet.demo import run_demo

    return run_demo(settings)


# ---------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fleet", description="Autonomous incident response for AWS Lambda."
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = sub.add_parser(
        "up", help="start the embedded world (emulator, workload, alarms) until Ctrl-C"
    )
    up.add_argument("--targets", type=int, help="copies of data-processor to run (default 1)")
    up.add_argument("--port", type=int, help="emulator port (default FLEET_EMULATOR_PORT or 5000)")
    up.set_defaults(func=cmd_up)

    sub.add_parser("down", help="stop the running world").set_defaults(func=cmd_down)

    prov = sub.add_parser(
        "provision", help="apply the topology and workload spec again (idempotent)"
    )
    prov.add_argument("--json", action="store_true")
    prov.set_defaults(func=cmd_provision)

    chaos = sub.add_parser("chaos", help="break the workload, or restore it")
    faults_sub = chaos.add_subparsers(dest="fault", required=True, metavar="FAULT")
    target_choices = ["s3", "logs", "metrics", "sns", "all"]

    def fault(name: str, help_text: str) -> argparse.ArgumentParser:
        f = faults_sub.add_parser(name, help=help_text)
        f.add_argument("--function", help="protected function (default data-processor)")
        return f

    fault("revoke", "remove permissions from the role").add_argument(
        "--target", choices=target_choices, default="s3"
    )
    fault("deny", "add an explicit Deny for permissions").add_argument(
        "--target", choices=target_choices, default="s3"
    )
    fault("throttle", "set reserved concurrency").add_argument("--concurrency", type=int, default=0)
    fault("network-block", "remove the security group's egress rules")
    drift = fault("env-drift", "change an environment variable")
    drift.add_argument("--var", required=True)
    drift.add_argument("--value", required=True)
    fault("timeout", "lower the function timeout").add_argument("--seconds", type=int, default=1)
    faults_sub.add_parser(
        "restore", help="put the baseline back (every function by default)"
    ).add_argument("--function")
    status = faults_sub.add_parser(
        "status", help="each function against its baseline, and its last runs"
    )
    status.add_argument("--function")
    status.add_argument("--window", type=int, help="seconds of runs to summarise")
    status.add_argument("--json", action="store_true")
    chaos.set_defaults(func=cmd_chaos)

    baseline = sub.add_parser("baseline", help="record or show the known-good baselines")
    baseline.add_argument("action", choices=["capture", "show"])
    baseline.add_argument("--function", help="one protected function (default: all)")
    baseline.add_argument("--json", action="store_true")
    baseline.set_defaults(func=cmd_baseline)

    tail = sub.add_parser("tail", help="live table of queue depths and incidents")
    tail.add_argument("--once", action="store_true", help="print one snapshot and exit")
    tail.add_argument("--json", action="store_true")
    tail.set_defaults(func=cmd_tail)

    bench = sub.add_parser("bench", help="measure the runtime and an alert storm (own world)")
    bench.add_argument("--messages", type=int, default=300)
    bench.add_argument("--rounds", type=int, default=3)
    bench.add_argument("--alerts", type=int, default=500)
    bench.set_defaults(func=cmd_bench)

    worker = sub.add_parser("worker", help="run a stage worker on its queue until SIGTERM")
    worker.add_argument("stage", choices=["supervisor", "resolver", "critic", "watchdog"])
    worker.add_argument("--handler", help="module:function to run instead of the stage's own")
    worker.add_argument("--concurrency", type=int, help="messages in flight at once")
    worker.set_defaults(func=cmd_worker)

    mcp = sub.add_parser("mcp", help="serve an MCP tool server (SSE /sse, streamable HTTP /mcp)")
    mcp.add_argument("server", choices=["supervisor", "resolver"])
    mcp.set_defaults(func=cmd_mcp)

    failures = sub.add_parser("failures", help="why messages failed, newest first")
    failures.add_argument("--queue", help="only this source queue")
    failures.add_argument("--json", action="store_true")
    failures.set_defaults(func=cmd_failures)

    sub.add_parser(
        "demo", help="start the world, break the workload, restore it, stop"
    ).set_defaults(func=cmd_demo)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from botocore.exceptions import ClientError, EndpointConnectionError

    args = build_parser().parse_args(argv)
    settings = get_settings()
    try:
        return int(args.func(args, settings))
    except UsageError as exc:
        print(f"fleet: {exc}", file=sys.stderr)
        return 2
    except FleetError as exc:
        print(f"fleet: {exc}", file=sys.stderr)
        return 1
    except EndpointConnectionError as exc:
        print(
            f"fleet: cannot reach AWS at {exc.kwargs.get('endpoint_url')}: is the world up "
            "(`fleet up`)?",
            file=sys.stderr,
        )
        return 1
    except ClientError as exc:
        from fleet.aws_errors import error_code, error_message

        print(
            f"fleet: {exc.operation_name} refused: {error_code(exc)}: {error_message(exc)}",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
