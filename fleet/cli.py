"""`fleet`: one command with subcommands; every Make target is a thin wrapper over it.

Exit codes: 0 success, 1 a failure the message explains, 2 bad usage (unknown target,
function or option; the message names the valid choices).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from typing import Any

from core.errors import FleetError, UsageError
from core.settings import Settings, get_settings


def _emit_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


# ---------------------------------------------------------------- world


def cmd_up(args: argparse.Namespace, settings: Settings) -> int:
    from core import structured_logging
    from emulation.world import run_world

    structured_logging.configure("world")
    if args.port:
        settings = settings.model_copy(update={"emulator_port": args.port})
    if args.no_workers:
        settings = settings.model_copy(update={"run_workers": False})
    return run_world(settings, args.targets or settings.target_count)


def cmd_down(args: argparse.Namespace, settings: Settings) -> int:
    from emulation.world import stop_world

    pid = stop_world(settings)
    print(f"world (pid {pid}) stopped")
    return 0


def cmd_provision(args: argparse.Namespace, settings: Settings) -> int:
    from core.provisioning import ProvisionReport
    from emulation.world import provision, read_world

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
    from core.aws import Clients
    from core.principals import Principal
    from emulation.lambda_runtime import protected_functions

    return protected_functions(Clients(Principal.OPERATOR, settings)("lambda"))


def _specs(settings: Settings, function: str | None, every: bool) -> list[Any]:
    from workload.spec import FUNCTION_BASE_NAME, spec_for

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
    from core.aws import Clients
    from core.principals import Principal

    clients = Clients(Principal.OPERATOR, settings)
    if args.fault == "status":
        return _chaos_status(args, settings, clients)
    every = args.fault == "restore" and args.function is None
    if args.fault in ("revoke", "deny"):
        faults.parse_targets(args.target)  # a bad target fails before anything changes
    for spec in _specs(settings, args.function, every):
        if args.fault == "restore":
            print(faults.restore(clients, spec))
            continue
        options = faults.FaultOptions(
            **{k: v for k, v in vars(args).items() if k in faults.FaultOptions.model_fields}
        )
        print(faults.inject(clients, spec, faults.FaultKind(args.fault), options))
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
    from core.aws import Clients
    from core.principals import Principal
    from incidents.baselines import BaselineStore, capture

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
    from console.snapshot import TailSnapshot, safe_snapshot
    from core.aws import Clients
    from core.principals import Principal
    from queues.topology import build_topology

    clients = Clients(Principal.OPERATOR, settings)
    topology = build_topology(settings)
    from rich.console import Console
    from rich.live import Live

    from fleet.tail_view import render

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


# ---------------------------------------------------------------- incidents


def _operator_store(settings: Settings) -> Any:
    from core.aws import Clients
    from core.principals import Principal
    from incidents.store import IncidentStore

    return IncidentStore(Clients(Principal.OPERATOR, settings)("dynamodb"))


def _report(settings: Settings, incident_id: str) -> Any:
    from incidents.incident_report import load_report

    report = load_report(_operator_store(settings), incident_id)
    if report is None:
        raise UsageError(f"no incident {incident_id!r}: `fleet incidents list` shows them")
    return report


def cmd_incidents(args: argparse.Namespace, settings: Settings) -> int:
    from incidents.incident_report import list_incidents, render_text
    from incidents.postmortem import postmortem_markdown

    if args.action == "list":
        rows = list_incidents(_operator_store(settings), args.status)
        if args.json:
            _emit_json(rows)
            return 0
        if not rows:
            print("no incidents")
        for r in rows:
            print(
                f"{r['incident_id']}  {r['status']:<17} {r['resource']:<20} {r['signature']:<9} "
                f"alerts={r['alerts']:<4} opened {r['opened_at'][:19]}"
            )
        return 0
    if args.incident_id is None:
        raise UsageError(f"`fleet incidents {args.action}` needs an incident id")
    report = _report(settings, args.incident_id)
    if args.action == "show":
        if args.json:
            _emit_json(report.model_dump(mode="json"))
        else:
            print(render_text(report))
            if report.approval and report.approval.get("status") == "pending":
                print("\n" + _approval_text(report.approval))
        return 0
    markdown = postmortem_markdown(report)
    if args.output:
        from pathlib import Path

        Path(args.output).write_text(markdown)
        print(f"postmortem of {report.incident_id} written to {args.output}")
    else:
        print(markdown, end="")
    return 0


def _approval_text(request: dict[str, Any]) -> str:
    lines = [
        f"awaiting approval until {request['expires_at']} (calls digest "
        f"{request['calls_digest'][:12]}):",
        *(f"  why a person: {r}" for r in request.get("reasons", [])),
    ]
    for i, c in enumerate(request["calls"], 1):
        call = c["call"]
        lines.append(
            f"  {i}. {call['service']}:{call['operation']} "
            f"{json.dumps(call['parameters'], sort_keys=True)}"
        )
    return "\n".join(lines)


def cmd_decide(args: argparse.Namespace, settings: Settings) -> int:
    import getpass
    import os

    from core.aws import Clients
    from core.principals import Principal
    from incidents.approvals import decide_and_announce, pending_request
    from queues.publisher import Publisher

    approve = args.command == "approve"
    store = _operator_store(settings)
    request = pending_request(store, args.incident_id)
    print(_approval_text(request.model_dump()))
    seen = args.digest or request.calls_digest
    if approve and not args.digest and not args.yes:
        if not sys.stdin.isatty():
            raise UsageError(
                "approving without a terminal needs --digest (the calls digest shown above, "
                "so the approval binds to exactly those calls) or --yes"
            )
        only = f" (calls {args.only})" if args.only else ""
        if input(f"approve these calls{only}? [y/N] ").strip().lower() not in ("y", "yes"):
            print("not approved")
            return 1
    who = args.as_ or os.environ.get("USER") or getpass.getuser() or "operator"
    only_calls = [int(i) for i in args.only.split(",")] if approve and args.only else None
    decided = decide_and_announce(
        store,
        Publisher.for_principal(Clients(Principal.OPERATOR, settings), settings),
        args.incident_id,
        approve,
        f"{who} (cli)",
        seen,
        reason=getattr(args, "reason", None),
        only_calls=only_calls,
    )
    print(f"{args.incident_id}: {decided.status} by {decided.decided_by}")
    return 0


def cmd_console(args: argparse.Namespace, settings: Settings) -> int:
    import secrets

    import uvicorn

    from console.app import build_app
    from core import structured_logging
    from core.aws import Clients
    from core.principals import Principal
    from core.service_process import stop_when_orphaned

    structured_logging.configure("console")
    if args.port:
        settings = settings.model_copy(update={"console_port": args.port})
    token, source = settings.console_token, "CONSOLE_TOKEN"
    if not token and settings.console_token_file.exists():
        token, source = (
            settings.console_token_file.read_text().strip(),
            str(settings.console_token_file),
        )
    url = f"http://{settings.console_host}:{settings.console_port}"
    if not token:
        token = secrets.token_urlsafe(24)
        print(f"console on {url}; token (generated, set CONSOLE_TOKEN to choose): {token}")
    else:
        print(f"console on {url}; token from {source}")
    sys.stdout.flush()
    if settings.launcher_pid:
        stop_when_orphaned(settings.launcher_pid)
    app = build_app(settings, Clients(Principal.CONSOLE, settings), token)
    uvicorn.run(app, host=settings.console_host, port=settings.console_port, log_level="warning")
    return 0


def cmd_dlq(args: argparse.Namespace, settings: Settings) -> int:
    from console.snapshot import snapshot
    from core.aws import Clients
    from core.principals import Principal
    from queues.dlq import DeadLetters
    from queues.topology import build_topology

    clients = Clients(Principal.CONSOLE, settings)
    topology = build_topology(settings)
    letters = DeadLetters(
        clients("sqs"), clients("dynamodb"), topology, settings.dlq_move_visibility_s
    )
    if args.action == "list":
        queues = snapshot(clients, topology).queues
        if args.json:
            _emit_json([q.model_dump() for q in queues])
            return 0
        header = ("queue", "visible", "in flight", "delayed", "dlq", "depth")
        print("{:<12} {:>7} {:>9} {:>7}   {:<16} {:>5}".format(*header))
        for q in queues:
            print(
                f"{q.queue:<12} {q.visible:>7} {q.in_flight:>9} {q.delayed:>7}   "
                f"{q.dlq:<16} {q.dlq_visible:>5}"
            )
        return 0
    if not args.queue:
        raise UsageError(
            f"`fleet dlq {args.action}` needs a queue: {', '.join(letters.dlq_names())}"
        )
    if args.action == "peek":
        found = letters.peek(args.queue, args.limit)
        if args.json:
            _emit_json([d.model_dump() for d in found])
            return 0
        if not found:
            print(f"{letters.resolve(args.queue)[0]} is empty")
        for d in found:
            print(
                f"{d.message_id}  {d.event_type or '-'}  incident {d.incident_id or '-'}  "
                f"received {d.receive_count}x  sent {d.sent_at}"
            )
            print(
                f"  failed in {d.failed_stage or d.source_queue}: {d.error_class or '?'}: "
                f"{d.failure_reason or 'no reason recorded (moved by the redrive policy)'}"
            )
            print("  " + d.body.replace("\n", "\n  "))
        return 0
    if args.action == "purge":
        if not args.yes:
            raise UsageError(
                f"purging deletes every message in {letters.resolve(args.queue)[0]} for good: "
                "add --yes to confirm"
            )
        print(
            f"purged {letters.purge(args.queue)} message(s) from {letters.resolve(args.queue)[0]}"
        )
        return 0

    def progress(moved: int, total: int | None) -> None:
        print(
            f"\r  moved {moved}/{total if total is not None else '?'}",
            end="",
            file=sys.stderr,
            flush=True,
        )

    ids = [i for part in args.ids or [] for i in part.split(",") if i]
    result = letters.redrive(args.queue, args.to, ids or None, args.rate, progress)
    print(file=sys.stderr)
    if args.json:
        _emit_json(result.model_dump())
    else:
        print(
            f"{result.moved} message(s) moved from {result.queue} to {result.destination} "
            f"({result.method}); {result.failed} failed"
            + (f"; not found: {', '.join(result.not_found)}" if result.not_found else "")
        )
    return 0 if not result.failed and not result.not_found else 1


def cmd_gameday(args: argparse.Namespace, settings: Settings) -> int:
    from pathlib import Path

    from chaos.gameday import Scenario, run_scenario

    paths = [Path(p) for p in args.scenario]
    for path in paths:  # every file is checked before the first world starts
        Scenario.load(path)

    def log(line: str) -> None:
        print(f"    {line}", file=sys.stderr if args.json else sys.stdout, flush=True)

    passed = 0
    for path in paths:
        if not args.json:
            print(f"==> {path.stem}", flush=True)
        result = run_scenario(path, log)
        passed += result.passed
        if args.json:
            print(json.dumps(result.model_dump(mode="json")), flush=True)
            continue
        print(
            f"    {'PASSED' if result.passed else 'FAILED'}: {result.final_status}, "
            f"faults {result.fault_types}, {len(result.actions)} action(s), "
            f"mttr {result.mttr_s}s, {result.tool_calls} tool calls"
        )
        for check in result.checks:
            print(f"      [{'ok' if check.ok else 'FAIL'}] {check.name}: {check.detail}")
    if not args.json:
        print(f"{passed} of {len(paths)} scenario(s) passed")
    return 0 if passed == len(paths) else 1


# ---------------------------------------------------------------- workers


DEFAULT_HANDLERS = {
    "supervisor": "workers.supervisor:handle",
    "resolver": "workers.resolver:handle",
    "critic": "workers.critic:handle",
    "watchdog": "workers.watchdog:handle",
}


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    import importlib
    import os

    from core import structured_logging
    from core.aws import Clients
    from core.principals import Principal
    from queues.topology import Stage, build_topology
    from workers.stage import build_consumer

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
    if settings.launcher_pid:  # a child of `fleet up`: leave with it
        from core.service_process import stop_when_orphaned

        stop_when_orphaned(settings.launcher_pid)
    consumer = build_consumer(
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
    from core.aws import Clients
    from core.principals import Principal
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

    from core import structured_logging
    from core.aws import Clients
    from core.principals import Principal
    from core.service_process import stop_when_orphaned
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
    from bench.run import PARTS, run

    parts = tuple(p.strip() for p in args.parts.split(",") if p.strip())
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        raise UsageError(f"unknown bench part(s) {unknown}; choose from {', '.join(PARTS)}")
    return run(
        messages=args.messages,
        rounds=args.rounds,
        alerts=args.alerts,
        mttr_runs=args.runs,
        targets=args.targets,
        parts=parts,
    )


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from fleet.demo import run_demo

    return run_demo()


# ---------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fleet", description="Autonomous incident response for AWS Lambda."
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = sub.add_parser(
        "up",
        help="start the embedded world (emulator, workload, alarms, MCP servers, the four "
        "workers) until Ctrl-C",
    )
    up.add_argument("--targets", type=int, help="copies of data-processor to run (default 1)")
    up.add_argument("--port", type=int, help="emulator port (default FLEET_EMULATOR_PORT or 5000)")
    up.add_argument(
        "--no-workers",
        action="store_true",
        help="leave the stage workers and their scheduler out (the world alone)",
    )
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

    bench = sub.add_parser(
        "bench", help="measure the fleet (own worlds): runtime, storm, MTTR, load, fault survival"
    )
    bench.add_argument("--messages", type=int, default=300)
    bench.add_argument("--rounds", type=int, default=3)
    bench.add_argument("--alerts", type=int, default=500)
    bench.add_argument("--runs", type=int, default=5, help="incidents per fault kind (MTTR)")
    bench.add_argument("--targets", type=int, default=10, help="workload copies broken at once")
    bench.add_argument(
        "--parts",
        default="runtime,storm,mttr,many,faults",
        help="what to measure (the rest keeps its latest figures in bench/results.json)",
    )
    bench.set_defaults(func=cmd_bench)

    worker = sub.add_parser("worker", help="run a stage worker on its queue until SIGTERM")
    worker.add_argument("stage", choices=["supervisor", "resolver", "critic", "watchdog"])
    worker.add_argument("--handler", help="module:function to run instead of the stage's own")
    worker.add_argument("--concurrency", type=int, help="messages in flight at once")
    worker.set_defaults(func=cmd_worker)

    mcp = sub.add_parser("mcp", help="serve an MCP tool server (SSE /sse, streamable HTTP /mcp)")
    mcp.add_argument("server", choices=["supervisor", "resolver"])
    mcp.set_defaults(func=cmd_mcp)

    incidents = sub.add_parser("incidents", help="incidents: list, show one, write a postmortem")
    incidents.add_argument("action", choices=["list", "show", "postmortem"])
    incidents.add_argument("incident_id", nargs="?")
    incidents.add_argument("--status", help="list only incidents in this status")
    incidents.add_argument("--output", "-o", help="postmortem: write the Markdown here")
    incidents.add_argument("--json", action="store_true")
    incidents.set_defaults(func=cmd_incidents)

    approve = sub.add_parser("approve", help="approve the pending fix of an incident")
    approve.add_argument("incident_id")
    approve.add_argument("--digest", help="the calls digest shown: binds the approval to them")
    approve.add_argument("--only", help="approve only these calls (1-based, comma-separated)")
    approve.add_argument("--as", dest="as_", help="who approves (default: $USER)")
    approve.add_argument("--yes", action="store_true", help="do not ask to confirm")
    approve.set_defaults(func=cmd_decide)

    reject = sub.add_parser("reject", help="reject the pending fix of an incident")
    reject.add_argument("incident_id")
    reject.add_argument("--reason", required=True)
    reject.add_argument("--as", dest="as_", help="who rejects (default: $USER)")
    reject.set_defaults(digest=None, yes=True, only=None, func=cmd_decide)

    console = sub.add_parser("console", help="serve the web console (queues, DLQs, incidents)")
    console.add_argument("--port", type=int, help="default FLEET_CONSOLE_PORT or 8088")
    console.set_defaults(func=cmd_console)

    dlq = sub.add_parser("dlq", help="dead letters: list the queues, peek, redrive, purge")
    dlq.add_argument("action", choices=["list", "peek", "redrive", "purge"])
    dlq.add_argument("queue", nargs="?", help="a stage, its queue or its DLQ")
    dlq.add_argument("--to", help="redrive: to this queue instead of the source")
    dlq.add_argument("--ids", nargs="+", help="redrive: only these message ids")
    dlq.add_argument("--rate", type=float, help="redrive: at most N messages per second")
    dlq.add_argument("--limit", type=int, default=100, help="peek: at most N messages")
    dlq.add_argument("--yes", action="store_true", help="purge: confirm")
    dlq.add_argument("--json", action="store_true")
    dlq.set_defaults(func=cmd_dlq)

    gameday = sub.add_parser(
        "gameday", help="run game-day scenarios, each on a fresh world with the whole fleet"
    )
    gameday.add_argument("--scenario", nargs="+", required=True, metavar="FILE")
    gameday.add_argument("--json", action="store_true", help="one JSON object per scenario")
    gameday.set_defaults(func=cmd_gameday)

    failures = sub.add_parser("failures", help="why messages failed, newest first")
    failures.add_argument("--queue", help="only this source queue")
    failures.add_argument("--json", action="store_true")
    failures.set_defaults(func=cmd_failures)

    sub.add_parser(
        "demo", help="start the world and the fleet, break the workload, watch it fixed, stop"
    ).set_defaults(func=cmd_demo)
    return p


# Long-running processes configure their own JSON logs.
SERVICES = frozenset({"up", "worker", "mcp", "console"})


def main(argv: Sequence[str] | None = None) -> int:
    from botocore.exceptions import ClientError, EndpointConnectionError

    args = build_parser().parse_args(argv)
    settings = get_settings()
    if args.command not in SERVICES:
        # A command for a person: only warnings from the libraries it uses, on stderr.
        import logging

        from core import structured_logging

        structured_logging.configure("cli", logging.WARNING)
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
        from core.aws_errors import error_code, error_message

        print(
            f"fleet: {exc.operation_name} refused: {error_code(exc)}: {error_message(exc)}",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
