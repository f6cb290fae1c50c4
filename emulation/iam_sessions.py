"""Role sessions as AWS makes them: the session policies they are made with are kept, and
limit them.

moto's AssumeRole keeps an inline ``Policy`` it never reads and drops ``PolicyArns``, so a
session had its whole role. AWS makes the session's permissions the intersection of the
role's and the session policies' (emulation/iam_policy.decide), and refuses what its API
reference refuses: an inline policy over 2,048 characters or malformed as an identity
policy, more than 10 policy ARNs.
https://docs.aws.amazon.com/STS/latest/APIReference/API_AssumeRole.html
https://docs.aws.amazon.com/IAM/latest/UserGuide/access_policies.html#policies_session

And sessions end. moto never refuses an expired session's keys; AWS answers them
``ExpiredToken``. A session lasts DurationSeconds (default 3,600), which AWS takes from 900 up
to the role's MaxSessionDuration, and to one hour at most when a role session assumes
another role (role chaining). Lifetimes are judged by the world's clock, which tests can move
forward (emulation/world_clock.py).
https://docs.aws.amazon.com/IAM/latest/UserGuide/id_roles_use.html#id_roles_use_view-role-max-session
https://docs.aws.amazon.com/STS/latest/APIReference/CommonErrors.html
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from moto.core.exceptions import _RESTError
from moto.iam.access_control import AssumedRoleAccessKey
from moto.iam.policy_validation import IAMPolicyDocumentValidator
from moto.sts.exceptions import STSValidationError
from moto.sts.models import sts_backends
from moto.sts.responses import TokenResponse

from emulation import world_clock
from emulation.iam_callers import role_named

MAX_INLINE_CHARS = 2048
MAX_POLICY_ARNS = 10
MIN_DURATION_S = 900
DEFAULT_DURATION_S = 3600
ROLE_CHAINING_MAX_S = 3600


# Services on AWS's JSON protocols spell it ExpiredTokenException; the XML ones ExpiredToken.
# Both are HTTP 403. https://docs.aws.amazon.com/awsconsolehelpdocs/latest/gsg/common-errors.html
JSON_PROTOCOL_SERVICES = frozenset({"dynamodb", "lambda", "logs", "sqs"})


class ExpiredToken(_RESTError):
    code = 403

    def __init__(self, service: str) -> None:
        super().__init__(
            "ExpiredTokenException" if service in JSON_PROTOCOL_SERVICES else "ExpiredToken",
            "The security token included in the request is expired",
        )


_original_assume_role = TokenResponse.assume_role
_applied = False


def session_policy_arns(response: Any) -> list[str]:
    """The managed policies named in an AssumeRole request (`PolicyArns.member.N.arn`)."""
    members = response._get_params().get("PolicyArns") or []
    return [str(m["arn"]) for m in members if isinstance(m, dict) and m.get("arn")]


def _assume_role(self: Any) -> Any:
    policy = self._get_param("Policy")
    arns = session_policy_arns(self)
    if policy is not None and len(policy) > MAX_INLINE_CHARS:
        raise STSValidationError(
            f"1 validation error detected: Value at 'policy' failed to satisfy constraint: "
            f"Member must have length less than or equal to {MAX_INLINE_CHARS}"
        )
    if len(arns) > MAX_POLICY_ARNS:
        raise STSValidationError(
            "1 validation error detected: Value at 'policyArns' failed to satisfy constraint: "
            f"Member must have length less than or equal to {MAX_POLICY_ARNS}"
        )
    if policy:
        IAMPolicyDocumentValidator(policy).validate()  # MalformedPolicyDocument, as AWS
    duration = _duration(self)
    result = _original_assume_role(self)
    made: Any = result.result  # {"Credentials": the AssumedRole, ...}
    session = made["Credentials"]
    session.session_policy_arns = tuple(arns)
    # moto's naive UTC, from the world's clock rather than the host's.
    started = world_clock.now().replace(tzinfo=None)
    session.expiration = started + timedelta(seconds=duration)
    return result


def _duration(response: Any) -> int:
    """DurationSeconds, refused where AWS refuses it."""
    duration = response._get_int_param("DurationSeconds", DEFAULT_DURATION_S)
    if duration < MIN_DURATION_S:
        raise STSValidationError(
            f"1 validation error detected: Value '{duration}' at 'durationSeconds' failed to "
            f"satisfy constraint: Member must have value greater than or equal to {MIN_DURATION_S}"
        )
    caller = response.get_access_key()
    chained = any(
        backend.get_assumed_role_from_access_key(caller) is not None
        for backend in _sts_backends_of(response)
    )
    if chained and duration > ROLE_CHAINING_MAX_S:
        raise STSValidationError(
            "The requested DurationSeconds exceeds the 1 hour session limit for roles assumed "
            "by role chaining."
        )
    role = role_named(str(response._get_param("RoleArn") or ""))
    if role is None:  # no such role: the trust check refuses it
        return int(duration)
    if duration > int(role.max_session_duration or DEFAULT_DURATION_S):
        raise STSValidationError(
            "The requested DurationSeconds exceeds the MaxSessionDuration set for this role."
        )
    return int(duration)


def _sts_backends_of(response: Any) -> list[Any]:
    account = response.get_current_account()
    return [backend for _, backend in sts_backends[account].items()]


def refuse_expired(access_key: Any, action: str) -> None:
    """ExpiredToken for a role session whose time is up by the world's clock."""
    if not isinstance(access_key, AssumedRoleAccessKey):
        return
    backend = sts_backends[access_key.account_id][access_key.partition]
    session = backend.get_assumed_role_from_access_key(access_key._access_key_id)
    if session is not None and session.expiration <= world_clock.now().replace(tzinfo=None):
        raise ExpiredToken(action.partition(":")[0])


def apply() -> None:
    global _applied
    if _applied:
        return
    TokenResponse.assume_role = _assume_role  # type: ignore[method-assign]
    _applied = True
