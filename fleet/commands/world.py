"""The embedded world: `fleet up`, `down` and `provision`."""

from __future__ import annotations

import argparse

from core import structured_logging
from core.errors import FleetError
from core.provisioning import ProvisionReport
from core.settings import Settings
from emulation.world import provision, read_world, run_world, stop_world
from fleet.commands import Subparsers, add_command
from fleet.json_output import emit_json


def cmd_up(args: argparse.Namespace, settings: Settings) -> int:
    structured_logging.configure("world")
    if args.port:
        settings = settings.model_copy(update={"emulator_port": args.port})
    if args.no_workers:
        settings = settings.model_copy(update={"run_workers": False})
    return run_world(settings, args.targets or settings.target_count)


def cmd_down(args: argparse.Namespace, settings: Settings) -> int:
    pid = stop_world(settings)
    print(f"world (pid {pid}) stopped")
    return 0


def cmd_provision(args: argparse.Namespace, settings: Settings) -> int:
    world = read_world(settings)
    if world is None:
        raise FleetError("no world is running: start one with `fleet up`")
    report = ProvisionReport()
    provision(settings, int(world["targets"]), report)
    if args.json:
        emit_json({"summary": report.summary(), "changes": report.as_json()})
    else:
        for change in report.changed:
            print(f"{change.action:9} {change.kind:18} {change.name}")
        print(report.summary())
    return 0


def register(sub: Subparsers) -> None:
    up = add_command(sub, "up")
    up.add_argument("--targets", type=int, help="copies of data-processor to run (default 1)")
    up.add_argument("--port", type=int, help="emulator port (default FLEET_EMULATOR_PORT or 5000)")
    up.add_argument(
        "--no-workers",
        action="store_true",
        help="leave the stage workers and their scheduler out (the world alone)",
    )
    up.set_defaults(func=cmd_up, own_logging=True)

    add_command(sub, "down").set_defaults(func=cmd_down)

    prov = add_command(sub, "provision")
    prov.add_argument("--json", action="store_true", help="print the changes as JSON")
    prov.set_defaults(func=cmd_provision)
