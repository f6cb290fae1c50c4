"""The executor: the one place an AWS write happens, and only an allowlisted one.

It runs in the resolver, under the resolver's identity (allowed exactly the allowlisted
operations on the protected resources). It takes calls, never text: a call off the
allowlist is refused before any client is touched.
"""

from __future__ import annotations

import json
from typing import Any

import structlog
from botocore import xform_name
from botocore.exceptions import ClientError

from core.aws_errors import error_code
from incidents.remediation import ALLOWLIST, ApiCall

log = structlog.get_logger()

# Answers that mean "already so": a call repeated after a crash has nothing left to do.
ALREADY_DONE = {
    ("ec2", "AuthorizeSecurityGroupEgress"): {"InvalidPermission.Duplicate"},
    ("ec2", "RevokeSecurityGroupEgress"): {"InvalidPermission.NotFound"},
    ("iam", "DeleteRolePolicy"): {"NoSuchEntity"},
    ("iam", "DetachRolePolicy"): {"NoSuchEntity"},
}


class RefusedCall(Exception):
    """A call the executor will not make."""


class CallFailed(Exception):
    def __init__(self, call: ApiCall, code: str, message: str):
        super().__init__(f"{call.service}:{call.operation} failed: {code}: {message}")
        self.call, self.code = call, code


def shown(call: ApiCall) -> dict[str, Any]:
    """A call as the audit trail and the pages show it: environment values left out."""
    params = dict(call.parameters)
    env = (
        params.get("Environment", {}).get("Variables")
        if isinstance(params.get("Environment"), dict)
        else None
    )
    if isinstance(env, dict):
        params["Environment"] = {"Variables": {k: "[not shown]" for k in env}}
    return {"service": call.service, "operation": call.operation, "parameters": params}


def run_call(clients: Any, call: ApiCall) -> str:
    """Make one allowlisted call. Returns "done" or "already" (it was in effect)."""
    if (call.service, call.operation) not in ALLOWLIST:
        raise RefusedCall(f"{call.service}:{call.operation} is not on the remediation allowlist")
    params = dict(call.parameters)
    if isinstance(params.get("PolicyDocument"), dict):
        params["PolicyDocument"] = json.dumps(params["PolicyDocument"])
    method = getattr(clients(call.service), xform_name(call.operation))
    try:
        method(**params)
    except ClientError as exc:
        code = error_code(exc)
        if code in ALREADY_DONE.get((call.service, call.operation), set()):
            log.info("call already in effect", service=call.service, operation=call.operation)
            return "already"
        raise CallFailed(
            call, code, str(exc.response.get("Error", {}).get("Message", exc))
        ) from exc
    log.info("call made", service=call.service, operation=call.operation)
    return "done"
