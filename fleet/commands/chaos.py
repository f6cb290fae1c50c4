"""`fleet chaos`: break the workload one fault at a time, restore it, and see where it stands."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from chaos import faults
from chaos.status import function_status
from core.aws import Clients
from core.principals import Principal
from core.settings import Settings
from fleet.commands import Subparsers, add_command
from fleet.json_output import emit_json
from fleet.protected_functions import chosen_specs


def cmd_inject(args: argparse.Namespace, settings: Settings) -> int:
    clients = Clients(Principal.OPERATOR, settings)
    kind = faults.FaultKind(args.fault)
    if kind in (faults.FaultKind.REVOKE, faults.FaultKind.DENY):
        faults.parse_targets(args.target)  # a bad target fails before anything changes
    options = faults.FaultOptions(
        **{k: v for k, v in vars(args).items() if k in faults.FaultOptions.model_fields}
    )
    for spec in chosen_specs(settings, args.function, every=False):
        print(faults.inject(clients, spec, kind, options))
    return 0


def cmd_restore(args: argparse.Namespace, settings: Settings) -> int:
    clients = Clients(Principal.OPERATOR, settings)
    for spec in chosen_specs(settings, args.function, every=args.function is None):
        print(faults.restore(clients, spec))
    return 0


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    clients = Clients(Principal.OPERATOR, settings)
    window = args.window or max(5, int(3 * settings.target_interval_s + settings.workload_work_s))
    statuses = [
        function_status(clients, spec, window)
        for spec in chosen_specs(settings, args.function, every=True)
    ]
    if args.json:
        emit_json([s.as_json() for s in statuses])
        return 0
    for s in statuses:
        r = s.runs
        print(
            f"{s.function}: {s.health}, live -> {s.live_target} "
            f"(last {r.window_s}s: {r.invocations} runs, "
            f"{r.errors} errors, {r.throttles} throttles); "
            f"{'at baseline' if s.at_baseline else 'DRIFTED from baseline'}"
        )
        for d in s.drift:
            print(f"  - {d}")
        if r.last_version:
            print(f"  last run: version {r.last_version}")
        if r.last_error:
            print(f"  last error: {r.last_error}")
    return 0


def _target(f: argparse.ArgumentParser) -> None:
    f.add_argument("--target", choices=faults.TARGETS, default="s3")


def _concurrency(f: argparse.ArgumentParser) -> None:
    f.add_argument("--concurrency", type=int, default=0)


def _variable(f: argparse.ArgumentParser) -> None:
    f.add_argument("--var", required=True)
    f.add_argument("--value", required=True)


def _seconds(f: argparse.ArgumentParser) -> None:
    f.add_argument("--seconds", type=int, default=1)


def _no_options(f: argparse.ArgumentParser) -> None:
    pass


# Every fault kind is a subcommand: its help, and the options it takes (FaultOptions' fields).
FAULTS: dict[faults.FaultKind, tuple[str, Callable[[argparse.ArgumentParser], None]]] = {
    faults.FaultKind.REVOKE: ("remove permissions from the role", _target),
    faults.FaultKind.DENY: ("add an explicit Deny for permissions", _target),
    faults.FaultKind.THROTTLE: ("set reserved concurrency", _concurrency),
    faults.FaultKind.NETWORK_BLOCK: ("remove the security group's egress rules", _no_options),
    faults.FaultKind.ENV_DRIFT: ("change an environment variable", _variable),
    faults.FaultKind.TIMEOUT: ("lower the function timeout", _seconds),
    faults.FaultKind.BAD_DEPLOY: (
        "publish a version whose handler fails and point the alias live at it",
        _no_options,
    ),
}


def register(sub: Subparsers) -> None:
    chaos = add_command(sub, "chaos")
    faults_sub = chaos.add_subparsers(dest="fault", required=True, metavar="FAULT")
    for kind in faults.FaultKind:
        help_text, add_options = FAULTS[kind]
        f = faults_sub.add_parser(kind.value, help=help_text)
        f.add_argument("--function", help="protected function (default data-processor)")
        add_options(f)
        f.set_defaults(func=cmd_inject)

    restore = faults_sub.add_parser(
        "restore", help="put the baseline back (every function by default)"
    )
    restore.add_argument("--function")
    restore.set_defaults(func=cmd_restore)

    status = faults_sub.add_parser(
        "status", help="each function against its baseline, and its last runs"
    )
    status.add_argument("--function")
    status.add_argument("--window", type=int, help="seconds of runs to summarise")
    status.add_argument("--json", action="store_true", help="print the statuses as JSON")
    status.set_defaults(func=cmd_status)
