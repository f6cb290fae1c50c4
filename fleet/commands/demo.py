"""`fleet demo`: a world started, broken and fixed before your eyes (fleet/demo.py). Apart
from `fleet up`'s group so that a world's launcher does not import the game days' code."""

from __future__ import annotations

import argparse

from core.settings import Settings
from fleet.commands import Subparsers, add_command
from fleet.demo import run_demo


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    return run_demo()


def register(sub: Subparsers) -> None:
    add_command(sub, "demo").set_defaults(func=cmd_demo)
