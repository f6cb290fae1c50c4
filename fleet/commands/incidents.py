"""Incidents for a person: `fleet incidents` (list, show, postmortem), `approve`, `reject`."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

from core.aws import Clients
from core.change_history import changes_to, resources_of, trail_client
from core.errors import UsageError
from core.principals import Principal
from core.settings import Settings
from fleet.commands import Subparsers, add_command
from fleet.json_output import emit_json
from fleet.trace_view import render_waterfall
from incidents.approvals import Decision, decide_and_announce, pending_request
from incidents.incident_report import IncidentReport, list_incidents, load_report
from incidents.incident_trace import load_incident_trace
from incidents.lifecycle import IncidentStatus
from incidents.postmortem import postmortem_markdown
from incidents.report_text import plain, render_text
from incidents.store import IncidentStore
from queues.publisher import Publisher


class IncidentsAction(StrEnum):
    LIST = "list"
    SHOW = "show"
    POSTMORTEM = "postmortem"


def _operator_store(settings: Settings) -> IncidentStore:
    return IncidentStore(Clients(Principal.OPERATOR, settings)("dynamodb"))


# How far before an incident opened a change may have caused it.
CHANGES_BEFORE = timedelta(hours=1)


def _report(settings: Settings, incident_id: str) -> IncidentReport:
    report = load_report(_operator_store(settings), incident_id)
    if report is None:
        raise UsageError(f"no incident {incident_id!r}: `fleet incidents list` shows them")
    if not report.handover.drifts:
        return report
    # Drift: someone changed the account. Who, and when, is in CloudTrail's event history.
    clients = Clients(Principal.OPERATOR, settings)
    opened = datetime.fromisoformat(report.opened_at)
    closed = datetime.fromisoformat(report.closed_at) if report.closed_at else None
    history = changes_to(
        trail_client(clients),
        resources_of(clients("lambda"), report.resource),
        opened - CHANGES_BEFORE,
        closed,
    )
    return report.model_copy(update={"change_history": history})


def cmd_trace(args: argparse.Namespace, settings: Settings) -> int:
    found = load_incident_trace(settings.trace_dir, args.incident_id)
    if found.trace_id is None:
        where = (
            "they went to the OTLP endpoint (OTEL_EXPORTER_OTLP_ENDPOINT): look there"
            if settings.otlp_configured
            else "is this the world's state directory (FLEET_STATE_DIR)? Traces are written "
            "there while the world runs, unless OTEL_SDK_DISABLED=true"
        )
        raise UsageError(f"no spans of {args.incident_id} in {settings.trace_dir}: {where}")
    if args.json:
        emit_json(found.as_json())
    else:
        print(render_waterfall(found, args.depth))
    return 0


def cmd_incidents(args: argparse.Namespace, settings: Settings) -> int:
    action = IncidentsAction(args.action)
    if action is IncidentsAction.LIST:
        rows = list_incidents(_operator_store(settings), args.status)
        if args.json:
            emit_json(rows)
            return 0
        if not rows:
            print("no incidents")
        for r in rows:
            # Every symptom the function showed (errors, throttles...): all one incident.
            symptoms = ",".join(plain(s) for s in r["symptoms"])
            of_round = f"  round {r['round']}" if r["round"] > 1 else ""
            print(
                f"{r['incident_id']}  {r['status']:<17} {plain(r['resource']):<20} "
                f"{symptoms:<17} alerts={r['alerts']:<4} opened {r['opened_at'][:19]}{of_round}"
            )
        return 0
    if args.incident_id is None:
        raise UsageError(f"`fleet incidents {action}` needs an incident id")
    report = _report(settings, args.incident_id)
    if action is IncidentsAction.SHOW:
        if args.json:
            emit_json(report.model_dump(mode="json"))
        else:
            print(render_text(report))
            if report.approval and report.approval.get("status") == "pending":
                print("\n" + _approval_text(report.approval))
        return 0
    markdown = postmortem_markdown(report)
    if args.output:
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


def _decide(args: argparse.Namespace, settings: Settings, approve: bool) -> int:
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
        Decision(
            approve=approve,
            decided_by=f"{who} (cli)",
            seen_digest=seen,
            reason=getattr(args, "reason", None),
            only_calls=only_calls,
        ),
    )
    print(f"{args.incident_id}: {decided.status} by {decided.decided_by}")
    return 0


def cmd_approve(args: argparse.Namespace, settings: Settings) -> int:
    return _decide(args, settings, approve=True)


def cmd_reject(args: argparse.Namespace, settings: Settings) -> int:
    return _decide(args, settings, approve=False)


def register(sub: Subparsers) -> None:
    incidents = add_command(sub, "incidents")
    incidents.add_argument("action", choices=[a.value for a in IncidentsAction])
    incidents.add_argument("incident_id", nargs="?")
    incidents.add_argument(
        "--status",
        choices=[s.value for s in IncidentStatus],
        metavar="STATUS",
        help="list only incidents in this status: %(choices)s",
    )
    incidents.add_argument("--output", "-o", help="postmortem: write the Markdown here")
    incidents.add_argument("--json", action="store_true", help="print JSON (list, show)")
    incidents.set_defaults(func=cmd_incidents)

    traced = add_command(sub, "trace")
    traced.add_argument("incident_id")
    traced.add_argument("--depth", type=int, help="show spans this deep at most (0: stages)")
    traced.add_argument("--json", action="store_true", help="print the spans as JSON")
    traced.set_defaults(func=cmd_trace)

    approve = add_command(sub, "approve")
    approve.add_argument("incident_id")
    approve.add_argument("--digest", help="the calls digest shown: binds the approval to them")
    approve.add_argument("--only", help="approve only these calls (1-based, comma-separated)")
    approve.add_argument("--as", dest="as_", help="who approves (default: $USER)")
    approve.add_argument("--yes", action="store_true", help="do not ask to confirm")
    approve.set_defaults(func=cmd_approve)

    reject = add_command(sub, "reject")
    reject.add_argument("incident_id")
    reject.add_argument("--reason", required=True)
    reject.add_argument("--as", dest="as_", help="who rejects (default: $USER)")
    reject.set_defaults(digest=None, yes=True, only=None, func=cmd_reject)
