"""The embedded world's IAM users: one per principal, each with its policy document and keys.

On AWS the same documents go on ECS task roles (infra/identity.py); here they go on users,
because the world's processes sign with access keys.
"""

from __future__ import annotations

import json
from typing import Any

from access.policies import POLICY_NAME, Arns, policy_document
from core.credentials import AccessKeys
from core.principals import Principal
from core.provisioning import ProvisionReport, outcome
from core.settings import Settings


def provision_identities(
    iam: Any, a: Arns, report: ProvisionReport, issued: dict[Principal, AccessKeys]
) -> dict[Principal, AccessKeys]:
    """Create a user per principal with its policy; issue keys to principals that have none.

    `issued` holds the keys already issued (from the launcher's store); the result adds any
    new ones. ADMIN exists from the emulator's bootstrap and is left alone.
    """
    keys = dict(issued)
    for principal in Principal:
        if principal == Principal.ADMIN:
            continue
        name = principal.user_name
        try:
            iam.get_user(UserName=name)
            created = False
        except iam.exceptions.NoSuchEntityException:
            iam.create_user(UserName=name, Tags=[{"Key": "fleet-principal", "Value": principal}])
            created = True
        wanted = policy_document(principal, a)
        try:
            current = iam.get_user_policy(UserName=name, PolicyName=POLICY_NAME)["PolicyDocument"]
            if isinstance(current, str):
                current = json.loads(current)
        except iam.exceptions.NoSuchEntityException:
            current = None
        if current != wanted:
            iam.put_user_policy(
                UserName=name, PolicyName=POLICY_NAME, PolicyDocument=json.dumps(wanted)
            )
        if principal not in keys:
            k = iam.create_access_key(UserName=name)["AccessKey"]
            keys[principal] = {
                "AccessKeyId": k["AccessKeyId"],
                "SecretAccessKey": k["SecretAccessKey"],
            }
        report.record("iam-user", name, outcome(created, current != wanted))
    return keys


def user_arn(principal: Principal, settings: Settings) -> str:
    return f"arn:aws:iam::{settings.account_id}:user/{principal.user_name}"
