"""`fleet baseline`: record or show each protected function's known-good state."""

from __future__ import annotations

import argparse
from enum import StrEnum

from core.aws import Clients
from core.principals import Principal
from core.settings import Settings
from fleet.commands import Subparsers, add_command
from fleet.json_output import emit_json
from fleet.protected_functions import chosen_specs
from incidents.baselines import BaselineStore, capture


class BaselineAction(StrEnum):
    CAPTURE = "capture"
    SHOW = "show"


def cmd_baseline(args: argparse.Namespace, settings: Settings) -> int:
    clients = Clients(Principal.OPERATOR, settings)
    names = [s.name for s in chosen_specs(settings, args.function, every=True)]
    if BaselineAction(args.action) is BaselineAction.CAPTURE:
        for captured in capture(clients, names, "fleet baseline capture"):
            print(f"{captured.function}: baseline v{captured.version} ({captured.captured_at})")
        return 0
    store = BaselineStore(clients("dynamodb"))
    baselines = {name: store.latest(name) for name in names}
    if args.json:
        emit_json({n: b.model_dump() if b else None for n, b in baselines.items()})
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
        print(
            f"  live -> {b.live_target or 'no alias'}, running code "
            f"{b.code_sha256 or 'not recorded'}"
        )
        for g in b.security_groups:
            print(
                f"  {g.group_name} ({g.group_id}): {len(g.egress)} egress, "
                f"{len(g.ingress)} ingress rule(s)"
            )
    return 0


def register(sub: Subparsers) -> None:
    baseline = add_command(sub, "baseline")
    baseline.add_argument("action", choices=[a.value for a in BaselineAction])
    baseline.add_argument("--function", help="one protected function (default: all)")
    baseline.add_argument("--json", action="store_true", help="show: print JSON")
    baseline.set_defaults(func=cmd_baseline)
