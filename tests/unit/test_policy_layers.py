"""Every policy type at once, as AWS combines them (emulation.iam_policy.decide)."""

from __future__ import annotations

from typing import Any

from emulation.iam_policy import AccessRequest, CallerPolicies, Decision, decide

ACCOUNT, OTHER = "123456789012", "210987654321"
BUCKET = "arn:aws:s3:::data"
OBJECT = f"{BUCKET}/input/batch.json"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/worker"
SESSION = f"arn:aws:sts::{ACCOUNT}:assumed-role/worker/fn"
GET = AccessRequest("s3:GetObject", OBJECT)


def doc(*statements: dict[str, Any]) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def allow(action: str = "s3:*", resource: str = "*", **more: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": action, "Resource": resource, **more}


def deny(action: str = "s3:*", resource: str = "*", **more: Any) -> dict[str, Any]:
    return {"Effect": "Deny", "Action": action, "Resource": resource, **more}


def session(**more: Any) -> CallerPolicies:
    fields: dict[str, Any] = {"arns": (SESSION,), "account": ACCOUNT, "role_arn": ROLE}
    fields.setdefault("identity", (doc(allow()),))
    return CallerPolicies(**{**fields, **more})


def test_a_permissions_boundary_is_an_intersection() -> None:
    """ "The effective permissions are the intersection of the identity-based policies and
    the permissions boundary"; a Deny in the boundary refuses.
    https://docs.aws.amazon.com/IAM/latest/UserGuide/access_policies_boundaries.html
    """
    assert decide(session(), GET) == Decision.ALLOW
    narrow = doc(allow("s3:PutObject"))
    assert decide(session(boundary=narrow), GET) == Decision.IMPLICIT_DENY
    assert decide(session(boundary=doc(allow("s3:Get*"))), GET) == Decision.ALLOW
    # A boundary grants nothing by itself.
    nothing = session(identity=(doc(allow("sqs:*")),), boundary=doc(allow()))
    assert decide(nothing, GET) == Decision.IMPLICIT_DENY
    assert decide(session(boundary=doc(allow(), deny())), GET) == Decision.EXPLICIT_DENY


def test_session_policies_narrow_a_session_to_what_both_allow() -> None:
    """ "The resulting session's permissions are the intersection of the role's
    identity-based policies and the session policies."
    https://docs.aws.amazon.com/IAM/latest/UserGuide/access_policies.html#policies_session
    """
    only_puts = (doc(allow("s3:PutObject")),)
    assert decide(session(session=only_puts), GET) == Decision.IMPLICIT_DENY
    both = (doc(allow("s3:PutObject")), doc(allow("s3:GetObject", OBJECT)))
    assert decide(session(session=both), GET) == Decision.ALLOW
    assert decide(session(session=(doc(deny()),)), GET) == Decision.EXPLICIT_DENY


def test_a_bucket_policy_grants_in_its_own_account_and_its_deny_always_applies() -> None:
    """Same account: an Allow in either the identity or the resource-based policy grants;
    a resource policy naming the session grants past its boundary, one naming its role
    does not; an explicit Deny anywhere refuses.
    https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic_policy-eval-basics.html
    """
    nothing = session(identity=())

    def bucket(principal: Any, effect: str = "Allow") -> dict[str, Any]:
        return doc({"Effect": effect, "Principal": principal, "Action": "s3:*", "Resource": "*"})

    assert decide(nothing, GET, bucket({"AWS": SESSION})) == Decision.ALLOW
    assert decide(nothing, GET, bucket({"AWS": ROLE})) == Decision.ALLOW
    assert decide(nothing, GET, bucket({"AWS": ACCOUNT})) == Decision.IMPLICIT_DENY
    bounded = session(identity=(), boundary=doc(allow("s3:PutObject")))
    assert decide(bounded, GET, bucket({"AWS": SESSION})) == Decision.ALLOW
    assert decide(bounded, GET, bucket({"AWS": ROLE})) == Decision.IMPLICIT_DENY
    assert decide(session(), GET, bucket("*", "Deny")) == Decision.EXPLICIT_DENY
    assert decide(session(), GET, bucket({"AWS": "*"}, "Deny")) == Decision.EXPLICIT_DENY


def test_across_accounts_both_sides_must_allow() -> None:
    """https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic-cross-account.html"""
    bucket = doc({"Effect": "Allow", "Principal": {"AWS": ROLE}, "Action": "s3:*", "Resource": "*"})
    assert decide(session(identity=()), GET, bucket, OTHER) == Decision.IMPLICIT_DENY
    assert decide(session(), GET, None, OTHER) == Decision.IMPLICIT_DENY
    assert decide(session(), GET, bucket, OTHER) == Decision.ALLOW


def test_a_deny_with_not_principal_spares_only_a_caller_named_by_every_name() -> None:
    """Deny with NotPrincipal refuses every principal it does not name. A role session
    answers to its session ARN, its role and its account, each evaluated: naming only the
    role does not spare the session; naming all three does, unless the role has a
    permissions boundary: then it never does.
    https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_notprincipal.html
    """

    def bucket_denying_all_but(*names: str) -> dict[str, Any]:
        return doc(deny(NotPrincipal={"AWS": list(names)}))

    root = f"arn:aws:iam::{ACCOUNT}:root"
    assert decide(session(), GET, bucket_denying_all_but(ROLE), ACCOUNT) == Decision.EXPLICIT_DENY
    spared = bucket_denying_all_but(SESSION, ROLE, root)
    assert decide(session(), GET, spared, ACCOUNT) == Decision.ALLOW
    other = CallerPolicies((f"arn:aws:iam::{ACCOUNT}:user/ops",), ACCOUNT, (doc(allow()),))
    assert decide(other, GET, spared, ACCOUNT) == Decision.EXPLICIT_DENY
    # "...will always deny any IAM principal that has a permissions boundary policy
    # attached, regardless of the values specified in the NotPrincipal element."
    bounded = session(boundary=doc(allow()))
    assert decide(bounded, GET, spared, ACCOUNT) == Decision.EXPLICIT_DENY
    not_this_action = doc(deny("s3:PutObject", NotPrincipal={"AWS": [SESSION]}))
    assert decide(bounded, GET, not_this_action, ACCOUNT) == Decision.ALLOW
