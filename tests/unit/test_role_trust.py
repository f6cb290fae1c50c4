"""Who may assume a role, as AWS decides it (emulation/role_trust.py)."""

from __future__ import annotations

from typing import Any

from emulation.iam_policy import AccessRequest, Decision, evaluate
from emulation.role_trust import Caller, may_assume

ACCOUNT, OTHER = "123456789012", "210987654321"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/ops/deploy"
USER = f"arn:aws:iam::{ACCOUNT}:user/alice"
ALICE = Caller((USER,), ACCOUNT)
MAY_ASSUME = {"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": ROLE}


def trusting(principal: Any, **more: Any) -> dict[str, Any]:
    statement = {"Effect": "Allow", "Principal": principal, "Action": "sts:AssumeRole", **more}
    return {"Version": "2012-10-17", "Statement": [statement]}


def identity(*statements: dict[str, Any]) -> Decision:
    """What the caller's own policies decide for sts:AssumeRole on the role."""
    policy = {"Version": "2012-10-17", "Statement": list(statements)}
    return evaluate([policy], AccessRequest("sts:AssumeRole", ROLE))


NONE = Decision.IMPLICIT_DENY


def test_a_trust_naming_the_caller_is_enough_in_the_roles_own_account() -> None:
    """A resource-based policy that names a principal of its own account grants it.
    https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic_policy-eval-basics.html
    """
    assert may_assume(trusting({"AWS": USER}), NONE, ALICE, ROLE, {}) == Decision.ALLOW
    deny = {"Effect": "Deny", "Action": "sts:*", "Resource": "*"}
    assert may_assume(trusting({"AWS": USER}), identity(deny), ALICE, ROLE, {}) == (
        Decision.EXPLICIT_DENY
    )


def test_a_trust_naming_the_account_needs_the_callers_own_allow() -> None:
    """`arn:aws:iam::ACCOUNT:root` (or the bare id) trusts the account: its principals
    whose identity policies allow sts:AssumeRole on the role, and no other.
    https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_principal.html#principal-accounts
    """
    for named in (f"arn:aws:iam::{ACCOUNT}:root", ACCOUNT):
        trust = trusting({"AWS": named})
        assert may_assume(trust, identity(MAY_ASSUME), ALICE, ROLE, {}) == Decision.ALLOW
        assert may_assume(trust, NONE, ALICE, ROLE, {}) == Decision.IMPLICIT_DENY
    other = trusting({"AWS": OTHER})
    assert may_assume(other, identity(MAY_ASSUME), ALICE, ROLE, {}) == Decision.IMPLICIT_DENY


def test_across_accounts_both_sides_must_allow() -> None:
    """https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic-cross-account.html"""
    bob = Caller((f"arn:aws:iam::{OTHER}:user/bob",), OTHER)
    trust = trusting({"AWS": f"arn:aws:iam::{OTHER}:user/bob"})
    assert may_assume(trust, NONE, bob, ROLE, {}) == Decision.IMPLICIT_DENY
    assert may_assume(trust, identity(MAY_ASSUME), bob, ROLE, {}) == Decision.ALLOW


def test_a_session_answers_for_its_role_and_itself_and_no_client_is_a_service() -> None:
    session = f"arn:aws:sts::{ACCOUNT}:assumed-role/deploy/ci"
    caller = Caller((f"arn:aws:iam::{ACCOUNT}:role/ops/deploy", session), ACCOUNT)
    for named in (f"arn:aws:iam::{ACCOUNT}:role/ops/deploy", session):
        assert may_assume(trusting({"AWS": named}), NONE, caller, ROLE, {}) == Decision.ALLOW
    lambda_only = trusting({"Service": "lambda.amazonaws.com"})
    assert may_assume(lambda_only, identity(MAY_ASSUME), caller, ROLE, {}) == (
        Decision.IMPLICIT_DENY
    )


def test_trust_conditions_see_the_external_id() -> None:
    """sts:ExternalId: a third party's role is assumed only with the agreed id.
    https://docs.aws.amazon.com/IAM/latest/UserGuide/id_roles_common-scenarios_third-party.html
    """
    trust = trusting({"AWS": USER}, Condition={"StringEquals": {"sts:ExternalId": "k-42"}})
    assert may_assume(trust, NONE, ALICE, ROLE, {"sts:ExternalId": ["k-42"]}) == Decision.ALLOW
    assert may_assume(trust, NONE, ALICE, ROLE, {"sts:ExternalId": ["k-41"]}) == (
        Decision.IMPLICIT_DENY
    )
    assert may_assume(trust, NONE, ALICE, ROLE, {}) == Decision.IMPLICIT_DENY
