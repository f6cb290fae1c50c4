"""The `fleet` command groups: each module registers its subcommands and their handlers.

A handler takes the parsed arguments and the settings and returns the exit code; it raises
UsageError (exit 2) or another FleetError (exit 1) with a one-line message.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TypeAlias

from core.settings import Settings

Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
Handler: TypeAlias = Callable[[argparse.Namespace, Settings], int]
