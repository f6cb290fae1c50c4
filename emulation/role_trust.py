"""Who may assume a role: the role's trust policy and the caller's own policies, as AWS
decides it.

moto checks a role's trust only when the role is in the caller's own account (a role in
another account, or one that does not exist, was "assumed" with no check), matches the
caller's session ARN rather than its role, cannot read a trust that names the account
(``arn:aws:iam::ACCOUNT:root``), evaluates no condition, and fails with a server error on a
``Service`` principal. AWS's rules, as the IAM documentation states them:

- The trust policy is a resource-based policy: an explicit Deny in it, or in the caller's
  identity policies, refuses.
- A trust that names the caller itself (its user, its role for any of its sessions, or
  this very session), in the role's own account, is enough on its own.
- A trust that names the caller's account (its root ARN or bare id) lets in the principals
  of that account whose own identity policies allow ``sts:AssumeRole`` on the role; across
  accounts, the caller's policies must allow it whatever the trust names. ("Role trust
  policies and KMS key policies are exceptions": the account must be trusted explicitly.)
- Conditions see the caller's request context, with ``sts:ExternalId`` and
  ``sts:RoleSessionName`` from the call.
- No client is a service: a ``Service`` principal never matches a caller signing with keys.
  The one exception is the emulator's own: the Lambda runtime's user, and no other, assumes
  a function's role as ``lambda.amazonaws.com`` (emulation/lambda_roles.py), as Lambda does.

https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic-cross-account.html
https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_principal.html#principal-accounts
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from emulation.iam_policy import AccessRequest, Decision, evaluate

ASSUME_ROLE = "sts:AssumeRole"


LAMBDA_SERVICE = "lambda.amazonaws.com"


@dataclass(frozen=True)
class Caller:
    """Who is asking: the ARNs it answers to (its user; or its role and its session) and
    its account; or, for the one door the emulator keeps for it, a service."""

    arns: tuple[str, ...]
    account: str
    service: str | None = None

    @property
    def root(self) -> str:
        return f"arn:aws:iam::{self.account}:root"


def role_account(role_arn: str) -> str:
    return role_arn.split(":")[4] if role_arn.count(":") >= 5 else ""


def may_assume(
    trust: Mapping[str, Any],
    identity: Decision,
    caller: Caller,
    role_arn: str,
    context: Mapping[str, Sequence[str]],
) -> Decision:
    """Whether `caller` may assume the role `role_arn` whose trust policy is `trust`;
    `identity` is what the caller's own policies (with any boundary and session policies)
    decide for sts:AssumeRole on the role."""

    def trusted(arn: str) -> Decision:
        return evaluate([trust], AccessRequest(ASSUME_ROLE, role_arn, context, ("AWS", arn)))

    if caller.service is not None:  # the service itself: only a trust in it lets it in
        as_service = trusted_service(trust, caller.service, role_arn, context)
        if Decision.EXPLICIT_DENY in (identity, as_service):
            return Decision.EXPLICIT_DENY
        allowed = as_service == Decision.ALLOW and identity == Decision.ALLOW
        return Decision.ALLOW if allowed else Decision.IMPLICIT_DENY
    named = [trusted(arn) for arn in caller.arns]
    by_account = trusted(caller.root)
    if Decision.EXPLICIT_DENY in (identity, by_account, *named):
        return Decision.EXPLICIT_DENY
    same_account = role_account(role_arn) == caller.account
    if Decision.ALLOW in named and same_account:
        return Decision.ALLOW
    if Decision.ALLOW in (by_account, *named) and identity == Decision.ALLOW:
        return Decision.ALLOW
    return Decision.IMPLICIT_DENY


def trusted_service(
    trust: Mapping[str, Any],
    service: str,
    role_arn: str,
    context: Mapping[str, Sequence[str]] | None = None,
) -> Decision:
    """What a role's trust decides for a service principal (e.g. Lambda) assuming it."""
    request = AccessRequest(ASSUME_ROLE, role_arn, context or {}, ("Service", service))
    return evaluate([trust], request)
