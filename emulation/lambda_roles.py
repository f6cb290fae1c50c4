"""A function's execution role as Lambda treats it.

On AWS the Lambda service assumes a function's role, as ``lambda.amazonaws.com``; no client
can sign as a service. Here the Lambda runtime is a process with keys of its own, so the
emulator keeps one door for it: its user, and no other, assumes a role *as the Lambda
service*, judged by the role's trust in ``lambda.amazonaws.com`` (emulation/role_trust.py).
Workload roles then trust only the service, as on AWS.

And as on AWS, CreateFunction and UpdateFunctionConfiguration refuse a role that Lambda
cannot assume (InvalidParameterValueException, "The role defined for the function cannot be
assumed by Lambda."); a role whose trust is changed later fails the function's invocations
(the runtime cannot start it: no log line, no metric).
https://docs.aws.amazon.com/lambda/latest/dg/lambda-intro-execution-role.html
https://docs.aws.amazon.com/lambda/latest/api/API_UpdateFunctionConfiguration.html
"""

from __future__ import annotations

import json
from typing import Any

from moto.awslambda.exceptions import InvalidParameterValueException
from moto.awslambda.models import LambdaBackend

from core.principals import Principal
from emulation.iam_callers import role_named
from emulation.iam_policy import Decision
from emulation.role_trust import LAMBDA_SERVICE, trusted_service

# The IAM user of the world's Lambda runtime: the one caller that assumes roles as Lambda.
RUNTIME_USER = Principal.LAMBDA_RUNTIME.user_name
UNASSUMABLE = "The role defined for the function cannot be assumed by Lambda."

_applied = False


def is_lambda_service(access_key: Any) -> bool:
    """Whether a request is signed by the runtime's own user (the door, see above)."""
    return getattr(access_key, "_owner_user_name", None) == RUNTIME_USER


def lambda_may_assume(role_arn: str) -> bool:
    role = role_named(role_arn)
    if role is None:
        return False
    trust = json.loads(role.assume_role_policy_document)
    return trusted_service(trust, LAMBDA_SERVICE, role_arn) == Decision.ALLOW


def _refuse_unassumable(role_arn: str | None) -> None:
    if role_arn and not lambda_may_assume(role_arn):
        raise InvalidParameterValueException(UNASSUMABLE)


def apply() -> None:
    """After emulation.lambda_packages (it wraps whatever UpdateFunctionConfiguration is)."""
    global _applied
    if _applied:
        return
    create, update = LambdaBackend.create_function, LambdaBackend.update_function_configuration

    def create_function(self: LambdaBackend, spec: dict[str, Any]) -> Any:
        _refuse_unassumable(spec.get("Role"))
        return create(self, spec)

    def update_function_configuration(
        self: LambdaBackend, function_name: str, qualifier: Any, body: dict[str, Any]
    ) -> Any:
        _refuse_unassumable(body.get("Role"))
        return update(self, function_name, qualifier, body)

    LambdaBackend.create_function = create_function  # type: ignore[method-assign]
    LambdaBackend.update_function_configuration = update_function_configuration  # type: ignore[method-assign]
    _applied = True
