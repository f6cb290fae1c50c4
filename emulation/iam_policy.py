"""Identity-based IAM policy evaluation, with AWS's semantics, for the embedded world.

moto's own evaluator compares actions and (for a few services) resources, but passes no
condition values, lets unknown condition operators through, and treats a condition that
fails on an Allow as an explicit Deny. AWS's rules, as the IAM policy evaluation logic
documents them, and as implemented here:

- A statement applies to a request when its Action (or NotAction) matches the action, its
  Resource (or NotResource) matches the resource, and every condition in it is true.
- Any applicable Deny refuses (explicit deny); otherwise any applicable Allow grants;
  otherwise the request is refused (implicit deny).
- A condition that is false makes its statement not apply - for an Allow that means "does
  not grant", not "deny". An operator this evaluator does not know evaluates to false, so
  it never grants.
- A key missing from the request: false for positive operators, true for negated ones
  (StringNotEquals, ArnNotLike, ...) and for ...IfExists, with a set operator or without;
  ``Null`` tests presence. ForAnyValue/ForAllValues compare sets; a key with several
  values compared without one matches nothing.
- Dates are epoch seconds or ISO 8601 (a date alone included), compared as instants;
  IpAddress/NotIpAddress take addresses and CIDR ranges, IPv4 and IPv6; BinaryEquals
  compares base-64 values byte for byte.

No published Python library evaluates IAM policies (the maintained evaluators are
TypeScript and Rust); this covers the policy grammar the fleet and its workload use, and
tests pin each rule (tests/unit/test_iam_policy.py).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from functools import lru_cache
from ipaddress import ip_address, ip_network
from typing import Any

Context = Mapping[str, Sequence[str]]


class Decision(StrEnum):
    ALLOW = "allow"
    EXPLICIT_DENY = "explicit deny"
    IMPLICIT_DENY = "implicit deny"


@dataclass(frozen=True)
class AccessRequest:
    """One authorization AWS makes: an IAM action on one resource, with the request's
    condition keys (a key's name is case-insensitive; its values are strings)."""

    action: str
    resource: str
    context: Context = field(default_factory=dict)
    # For a resource-based policy: who asks, as (kind, id), e.g. ("Service",
    # "sns.amazonaws.com"). Identity policies name no Principal and take None.
    principal: tuple[str, str] | None = None

    def value(self, key: str) -> Sequence[str] | None:
        lowered = key.lower()
        for name, values in self.context.items():
            if name.lower() == lowered:
                return values
        return None


@lru_cache(maxsize=512)
def _wildcard(pattern: str, case_sensitive: bool) -> re.Pattern[str]:
    # IAM's wildcards: * is any run of characters (slashes and colons included), ? is one.
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(f"^{regex}$", 0 if case_sensitive else re.IGNORECASE)


def _like(pattern: str, value: str, case_sensitive: bool = True) -> bool:
    return _wildcard(pattern, case_sensitive).match(value) is not None


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else [value]


def _number(s: str) -> float | None:
    try:
        return float(s)
    except ValueError:
        return None


def _date(s: str) -> datetime | None:
    """A date as IAM reads one: epoch seconds, or a W3C form of ISO 8601 (a date alone, or a
    date and time, "Z" or an offset; a time without a zone is UTC). Always zone-aware, so
    any two compare."""
    try:
        if s.replace(".", "", 1).isdigit():
            return datetime.fromtimestamp(float(s), UTC)
        parsed = datetime.fromisoformat(s.replace("Z", "+00:00"))
    except (ValueError, OverflowError, OSError):
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _ip_in(value: str, wanted: str) -> bool:
    """Whether an address is in a range (CIDR; a bare address is its own /32 or /128)."""
    try:
        return ip_address(value.strip()) in ip_network(wanted.strip(), strict=False)
    except ValueError:
        return False


def _binary_equals(value: str, wanted: str) -> bool:
    """Byte for byte, both sides base-64 (as IAM carries binary values)."""
    try:
        return base64.b64decode(value, validate=True) == base64.b64decode(wanted, validate=True)
    except ValueError:
        return False


def _compare(parse: Callable[[str], Any], test: Callable[[Any, Any], bool]) -> Match:
    def match(value: str, wanted: str) -> bool:
        a, b = parse(value), parse(wanted)
        return a is not None and b is not None and test(a, b)

    return match


def _arn_like(value: str, wanted: str) -> bool:
    # ARNs compare segment by segment (the first five are colon-separated; the rest, the
    # resource, may hold colons of its own).
    got, want = value.split(":", 5), wanted.split(":", 5)
    if len(got) != 6 or len(want) != 6:
        return False
    return all(_like(w, g) for w, g in zip(want, got, strict=True))


Match = Callable[[str, str], bool]
# Each base operator: how one request value matches one policy value, and whether it is a
# negation (true when no policy value matches, and when the key is missing).
OPERATORS: dict[str, tuple[Match, bool]] = {
    "StringEquals": (lambda v, w: v == w, False),
    "StringNotEquals": (lambda v, w: v == w, True),
    "StringEqualsIgnoreCase": (lambda v, w: v.lower() == w.lower(), False),
    "StringNotEqualsIgnoreCase": (lambda v, w: v.lower() == w.lower(), True),
    "StringLike": (lambda v, w: _like(w, v), False),
    "StringNotLike": (lambda v, w: _like(w, v), True),
    "NumericEquals": (_compare(_number, lambda a, b: a == b), False),
    "NumericNotEquals": (_compare(_number, lambda a, b: a == b), True),
    "NumericLessThan": (_compare(_number, lambda a, b: a < b), False),
    "NumericLessThanEquals": (_compare(_number, lambda a, b: a <= b), False),
    "NumericGreaterThan": (_compare(_number, lambda a, b: a > b), False),
    "NumericGreaterThanEquals": (_compare(_number, lambda a, b: a >= b), False),
    "DateEquals": (_compare(_date, lambda a, b: a == b), False),
    "DateNotEquals": (_compare(_date, lambda a, b: a == b), True),
    "DateLessThan": (_compare(_date, lambda a, b: a < b), False),
    "DateLessThanEquals": (_compare(_date, lambda a, b: a <= b), False),
    "DateGreaterThan": (_compare(_date, lambda a, b: a > b), False),
    "DateGreaterThanEquals": (_compare(_date, lambda a, b: a >= b), False),
    "Bool": (lambda v, w: v.lower() == w.lower(), False),
    "BinaryEquals": (_binary_equals, False),
    "IpAddress": (_ip_in, False),
    "NotIpAddress": (_ip_in, True),
    "ArnEquals": (_arn_like, False),
    "ArnLike": (_arn_like, False),
    "ArnNotEquals": (_arn_like, True),
    "ArnNotLike": (_arn_like, True),
}


def _condition_holds(operator: str, key: str, wanted: Any, request: AccessRequest) -> bool:
    qualifier, _, base = operator.rpartition(":")
    if_exists = base.endswith("IfExists") and base != "IfExists"
    if if_exists:
        base = base.removesuffix("IfExists")
    values = request.value(key)
    wanted_values = [str(w) for w in _as_list(wanted)]
    if base == "Null":  # "true": the key must be absent; "false": present
        absent = not values
        return any(absent == (w.lower() == "true") for w in wanted_values)
    if base not in OPERATORS or qualifier not in ("", "ForAnyValue", "ForAllValues"):
        return False  # unknown operator: never grants
    match, negated = OPERATORS[base]

    def one(value: str) -> bool:
        hit = any(match(value, w) for w in wanted_values)
        return not hit if negated else hit

    if not values and if_exists:
        return True  # "If the key is not present, evaluate the condition element as true"
    if qualifier == "ForAllValues":
        return all(one(v) for v in values or [])
    if qualifier == "ForAnyValue":
        return bool(values) and any(one(v) for v in values or [])
    if not values:
        return negated
    # A key with several values needs a set operator; AWS documents no answer without one,
    # and it is taken as no match either way (as the independent evaluator takes it).
    return len(values) == 1 and one(values[0])


def _conditions_hold(conditions: Mapping[str, Mapping[str, Any]], request: AccessRequest) -> bool:
    return all(
        _condition_holds(operator, key, wanted, request)
        for operator, block in conditions.items()
        for key, wanted in block.items()
    )


def _element_matches(
    statement: Mapping[str, Any], element: str, value: str, case_sensitive: bool
) -> bool | None:
    """Whether the element (e.g. Action) matches; None if the statement lacks it."""
    for name, negate in ((element, False), (f"Not{element}", True)):
        if name in statement:
            hit = any(_like(p, value, case_sensitive) for p in _as_list(statement[name]))
            return not hit if negate else hit
    return None


def _names(wanted: Any, principal: tuple[str, str]) -> bool:
    """Whether a Principal (or NotPrincipal) element names `principal`."""
    if wanted == "*":
        return True
    kind, ident = principal
    return any(_principal_name(kind, v) in ("*", ident) for v in _as_list(wanted.get(kind, [])))


def _principal_matches(statement: Mapping[str, Any], principal: tuple[str, str] | None) -> bool:
    """Principal: the caller is named. NotPrincipal: it is not. A caller answers to several
    names (a session, its role, its account) and each is evaluated on its own, so a Deny
    with NotPrincipal spares a session only if it names every one of them, as AWS documents.
    https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_notprincipal.html
    """
    if "NotPrincipal" in statement:
        return principal is not None and not _names(statement["NotPrincipal"], principal)
    wanted = statement.get("Principal")
    if wanted is None or principal is None:
        return wanted is None and principal is None
    return _names(wanted, principal)


def _principal_name(kind: str, value: str) -> str:
    """An account named by its bare id is its root ARN (the account as a principal)."""
    if kind == "AWS" and len(value) == 12 and value.isdigit():
        return f"arn:aws:iam::{value}:root"
    return value


def statement_applies(statement: Mapping[str, Any], request: AccessRequest) -> bool:
    if not _principal_matches(statement, request.principal):
        return False
    if not _element_matches(statement, "Action", request.action, case_sensitive=False):
        return False
    resource = _element_matches(statement, "Resource", request.resource, case_sensitive=True)
    if resource is False:
        return False
    return _conditions_hold(statement.get("Condition", {}), request)


def evaluate(policies: Iterable[Mapping[str, Any]], request: AccessRequest) -> Decision:
    """The decision for one request under these (parsed) policy documents."""
    allowed = False
    for policy in policies:
        for statement in _as_list(policy.get("Statement", [])):
            if not statement_applies(statement, request):
                continue
            if statement.get("Effect") == "Deny":
                return Decision.EXPLICIT_DENY
            if statement.get("Effect") == "Allow":
                allowed = True
    return Decision.ALLOW if allowed else Decision.IMPLICIT_DENY


@dataclass(frozen=True)
class CallerPolicies:
    """One caller as IAM sees it: the ARNs that name it directly (a user; or a role
    session's own STS ARN), the role a session is of, its account, and every policy that
    bounds it: its identity policies; the permissions boundary of its user or role, if
    any; and, for a role session made with session policies (AssumeRole's Policy and
    PolicyArns), those."""

    arns: tuple[str, ...]
    account: str
    identity: tuple[Mapping[str, Any], ...]
    boundary: Mapping[str, Any] | None = None
    session: tuple[Mapping[str, Any], ...] | None = None
    role_arn: str | None = None


def _denies_the_bounded(policy: Mapping[str, Any] | None, request: AccessRequest) -> bool:
    """A resource policy's Deny with NotPrincipal applies to every principal with a
    permissions boundary, whatever it names: "The NotPrincipal element with a Deny effect
    will always deny any IAM principal that has a permissions boundary policy attached,
    regardless of the values specified in the NotPrincipal element."
    https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_notprincipal.html
    """
    if policy is None:
        return False
    anyone = AccessRequest(request.action, request.resource, request.context, ("AWS", "*"))
    return any(
        statement.get("Effect") == "Deny"
        and "NotPrincipal" in statement
        and statement_applies(
            {**{k: v for k, v in statement.items() if k != "NotPrincipal"}, "Principal": "*"},
            anyone,
        )
        for statement in _as_list(policy.get("Statement", []))
    )


def decide(
    caller: CallerPolicies,
    request: AccessRequest,
    resource_policy: Mapping[str, Any] | None = None,
    resource_account: str | None = None,
) -> Decision:
    """AWS's decision for one request, from every policy type the embedded world has:

    - an explicit Deny in any of them refuses (a resource policy's Deny with NotPrincipal
      refuses any caller with a permissions boundary);
    - the identity policies must allow, and so must the permissions boundary and the
      session policies where there are any (their intersection);
    - within one account, the resource's policy also grants on its own when it names the
      caller directly (a user, a role session's ARN), and with the boundary and session
      policies when it names a session's role; naming the account (its root) delegates to
      the identity side. Across accounts both sides must allow.

    https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic_policy-eval-denyallow.html
    https://docs.aws.amazon.com/IAM/latest/UserGuide/access_policies_boundaries.html#access_policies_boundaries-eval-logic
    https://docs.aws.amazon.com/IAM/latest/UserGuide/access_policies.html#policies_session
    """
    as_identity = AccessRequest(request.action, request.resource, request.context)
    bounds = []
    if caller.boundary is not None:
        bounds.append(evaluate([caller.boundary], as_identity))
    if caller.session is not None:
        bounds.append(evaluate(caller.session, as_identity))
    identity = evaluate(caller.identity, as_identity)

    def named(arn: str) -> Decision:
        if resource_policy is None:
            return Decision.IMPLICIT_DENY
        return evaluate(
            [resource_policy],
            AccessRequest(request.action, request.resource, request.context, ("AWS", arn)),
        )

    if caller.boundary is not None and _denies_the_bounded(resource_policy, request):
        return Decision.EXPLICIT_DENY
    direct = [named(arn) for arn in caller.arns]
    via_role = named(caller.role_arn) if caller.role_arn else Decision.IMPLICIT_DENY
    via_account = named(f"arn:aws:iam::{caller.account}:root")
    resource = (*direct, via_role, via_account)
    if Decision.EXPLICIT_DENY in (identity, *bounds, *resource):
        return Decision.EXPLICIT_DENY
    bounded = all(d == Decision.ALLOW for d in bounds)
    identity_allows = identity == Decision.ALLOW and bounded
    resource_allows = Decision.ALLOW in resource
    if resource_account in (None, caller.account):
        if Decision.ALLOW in direct or (via_role == Decision.ALLOW and bounded):
            return Decision.ALLOW
        return Decision.ALLOW if identity_allows else Decision.IMPLICIT_DENY
    return Decision.ALLOW if identity_allows and resource_allows else Decision.IMPLICIT_DENY
