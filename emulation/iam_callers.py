"""Who signed a request, as IAM sees it: the ARNs that name the caller, and every policy that
bounds it (identity policies, permissions boundary, session policies).

moto collects a caller's identity policies only. AWS also limits a role by its permissions
boundary, and a role session by the session policies it was made with (kept by
emulation/iam_sessions.py), and names a session's principal by its role.
"""

from __future__ import annotations

import json
from typing import Any

from moto.iam import access_control
from moto.iam.access_control import AssumedRoleAccessKey
from moto.iam.models import iam_backends
from moto.sts.models import sts_backends

from emulation.iam_policy import CallerPolicies
from emulation.role_trust import role_account


def principal_arn(access_key: Any) -> str:
    """The caller's aws:PrincipalArn: a user's ARN, or for a role session the role's
    (`arn:aws:iam::ACCOUNT:role/PATH/NAME`), never the session's STS ARN, as AWS documents.
    https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_condition-keys.html#condition-keys-principalarn
    """
    if isinstance(access_key, AssumedRoleAccessKey):
        return role_arn(access_key)
    return str(access_key.arn)


def role_named(arn: str) -> Any | None:
    """The role `arn` names, looked up in its own account (moto looks in the caller's);
    None if there is no such role."""
    try:
        return iam_backends[role_account(arn)]["aws"].get_role_by_arn(arn)
    except Exception:
        return None


def role_arn(key: AssumedRoleAccessKey) -> str:
    try:
        return str(key.backend.get_role(key._owner_role_name).arn)
    except Exception:  # the role was deleted under its session: name it as it was
        return f"arn:aws:iam::{key.account_id}:role/{key._owner_role_name}"


def _document(policy: Any) -> dict[str, Any]:
    return dict(access_control.IAMPolicy(policy)._policy_json)


def _managed(backend: Any, arn: str) -> dict[str, Any]:
    """A managed policy's default version; one that no longer exists allows nothing."""
    try:
        return _document(backend.get_policy(arn))
    except Exception:
        return {"Version": "2012-10-17", "Statement": []}


def session_of(key: AssumedRoleAccessKey) -> Any:
    """The STS session a key belongs to (moto's AssumedRole)."""
    for session in sts_backends[key.account_id][key.partition].assumed_roles:
        if session.access_key_id == key._access_key_id:
            return session
    return None


def caller_policies(access_key: Any) -> CallerPolicies:
    identity = tuple(_document(p) for p in access_key.collect_policies())
    if not isinstance(access_key, AssumedRoleAccessKey):
        return CallerPolicies((str(access_key.arn),), access_key.account_id, identity)
    backend = access_key.backend
    try:
        bound_by = backend.get_role(access_key._owner_role_name).permissions_boundary_arn
    except Exception:  # the role was deleted under its session
        bound_by = None
    boundary = _managed(backend, bound_by) if bound_by else None
    session = session_of(access_key)
    documents: list[dict[str, Any]] = []
    if session is not None and session.policy:
        documents.append(json.loads(session.policy))
    for arn in getattr(session, "session_policy_arns", ()):
        documents.append(_managed(backend, arn))
    return CallerPolicies(
        arns=(str(access_key.arn),),
        account=access_key.account_id,
        identity=identity,
        boundary=boundary,
        session=tuple(documents) if documents else None,
        role_arn=role_arn(access_key),
    )
