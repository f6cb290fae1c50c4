"""The resource-based policy a request meets: an S3 bucket's policy or an SNS topic's, read
beside the caller's own policies in one evaluation (emulation/iam_policy.decide).

moto checks a bucket policy on its own, outside the caller's (emulation/s3_access.py), and
never reads a topic's policy at all: a topic policy's Deny did not apply, and its Allow of a
principal of the account granted nothing. As AWS evaluates them: an explicit Deny in either
refuses; in the resource's own account an Allow in either grants; across accounts both must.
https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic_policy-eval-denyallow.html
https://docs.aws.amazon.com/sns/latest/dg/sns-access-policy-use-cases.html

Every topic has a policy: AWS's default grants topic actions to ``"AWS": "*"`` on the
condition ``AWS:SourceOwner`` equals the topic's account. That key, like its documented
replacement aws:SourceAccount, is in a request's context only when a service calls another
on a resource's behalf, never when a principal calls with its own keys; so the default policy
grants a principal nothing, and its identity policies decide, as on AWS.
https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_condition-keys.html#condition-keys-sourceaccount
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from moto.s3.models import s3_backends
from moto.sns.models import sns_backends

from emulation.iam_policy import AccessRequest, CallerPolicies, Decision, decide

Found = tuple[Mapping[str, Any] | None, str | None]


def bucket_name(resource: str) -> str | None:
    """`arn:aws:s3:::BUCKET` or `arn:aws:s3:::BUCKET/KEY` -> BUCKET."""
    if not resource.startswith("arn:aws:s3:::"):
        return None
    return resource.removeprefix("arn:aws:s3:::").split("/", 1)[0] or None


def bucket_policy(name: str | None) -> Found:
    """The bucket's policy (None if it has none) and the account that owns it."""
    owner = s3_backends.bucket_accounts.get(name) if name else None
    if owner is None or name is None:
        return None, None
    partition, account = owner
    try:
        bucket = s3_backends[account][partition].get_bucket(name)
    except Exception:  # no such bucket: the call itself will say so
        return None, account
    policy = bucket.policy
    return (json.loads(policy) if policy else None), account


def topic_policy(arn: str) -> Found:
    """The topic's policy and the account that owns it (no such topic: none)."""
    parts = arn.split(":")
    if len(parts) != 6 or parts[2] != "sns":
        return None, None
    region, account = parts[3], parts[4]
    topic = sns_backends[account][region].topics.get(arn)
    return (dict(topic._policy_json) if topic is not None else None), account


def policy_of(resource: str) -> Found:
    """The resource-based policy of `resource` where the world keeps one, and its owner."""
    if resource.startswith("arn:aws:s3:::"):
        return bucket_policy(bucket_name(resource))
    if resource.startswith("arn:aws:sns:"):
        return topic_policy(resource)
    return None, None


def authorize(caller: CallerPolicies, request: AccessRequest) -> Decision:
    """The decision for one request, with its resource's policy if it has one."""
    policy, account = policy_of(request.resource)
    return decide(caller, request, policy, account)
