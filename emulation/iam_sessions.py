"""Role sessions as AWS makes them: the session policies they are made with are kept, and
limit them.

moto's AssumeRole keeps an inline ``Policy`` it never reads and drops ``PolicyArns``, so a
session had its whole role. AWS makes the session's permissions the intersection of the
role's and the session policies' (emulation/iam_policy.decide), and refuses what its API
reference refuses: an inline policy over 2,048 characters or malformed as an identity
policy, more than 10 policy ARNs.
https://docs.aws.amazon.com/STS/latest/APIReference/API_AssumeRole.html
https://docs.aws.amazon.com/IAM/latest/UserGuide/access_policies.html#policies_session
"""

from __future__ import annotations

from typing import Any

from moto.iam.policy_validation import IAMPolicyDocumentValidator
from moto.sts.exceptions import STSValidationError
from moto.sts.responses import TokenResponse

MAX_INLINE_CHARS = 2048
MAX_POLICY_ARNS = 10

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
    result = _original_assume_role(self)
    made: Any = result.result  # {"Credentials": the AssumedRole, ...}
    made["Credentials"].session_policy_arns = tuple(arns)
    return result


def apply() -> None:
    global _applied
    if _applied:
        return
    TokenResponse.assume_role = _assume_role  # type: ignore[method-assign]
    _applied = True
