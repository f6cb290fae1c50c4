"""S3 authorization as AWS makes it: the caller's policies and the bucket's policy in one
evaluation, and a missing key answered as AWS answers it.

moto checks a bucket policy on its own, outside the caller's: a partial reading (no
conditions, no principals) whose Deny answers a bare 403 without the AccessDenied code, and
whose Allow grants nothing. Here the bucket policy is the resource-based policy of
:func:`emulation.iam_policy.decide`, beside the caller's identity policies, boundary and
session policies: an explicit Deny in any refuses; in the bucket's own account an Allow in
either grants.

And a key that does not exist: "If you don't have the s3:ListBucket permission, Amazon S3
returns an HTTP status code 403 (access denied) error" rather than 404 NoSuchKey.
https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetObject.html#API_GetObject_RequestSyntax
https://docs.aws.amazon.com/AmazonS3/latest/userguide/example-bucket-policies.html
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from moto.iam.access_control import PermissionResult
from moto.s3.exceptions import MissingKey, S3AccessDeniedError
from moto.s3.models import FakeBucket, s3_backends
from moto.s3.responses import S3Response

from emulation.iam_policy import AccessRequest, CallerPolicies, Decision, decide

# The caller of the S3 request being served, and its request context, kept by the thread
# that authorized it: answering a missing key asks what else that caller may do.
_served = threading.local()


def bucket_name(resource: str) -> str | None:
    """`arn:aws:s3:::BUCKET` or `arn:aws:s3:::BUCKET/KEY` -> BUCKET."""
    if not resource.startswith("arn:aws:s3:::"):
        return None
    return resource.removeprefix("arn:aws:s3:::").split("/", 1)[0] or None


def bucket_policy(name: str | None) -> tuple[Mapping[str, Any] | None, str | None]:
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


def authorize(caller: CallerPolicies, request: AccessRequest) -> Decision:
    """The decision for one S3 request, with its bucket's policy."""
    _served.caller, _served.context = caller, request.context
    policy, account = bucket_policy(bucket_name(request.resource))
    return decide(caller, request, policy, account)


def may_list(name: str) -> bool:
    """Whether the caller of the request being served may s3:ListBucket on `name`."""
    caller: CallerPolicies | None = getattr(_served, "caller", None)
    context: Mapping[str, Sequence[str]] = getattr(_served, "context", {})
    if caller is None:
        return False
    request = AccessRequest("s3:ListBucket", f"arn:aws:s3:::{name}", context)
    return authorize(caller, request) == Decision.ALLOW


_original_get_object = S3Response.get_object
_original_head_object = S3Response.head_object
_applied = False


def _get_object(self: Any) -> Any:
    try:
        return _original_get_object(self)
    except MissingKey:
        if not may_list(self.bucket_name):
            raise S3AccessDeniedError() from None
        raise


def _head_object(self: Any, bucket: str, *args: Any, **kwargs: Any) -> Any:
    status, headers, body = _original_head_object(self, bucket, *args, **kwargs)
    if status == 404 and not may_list(bucket):
        return 403, headers, body
    return status, headers, body


def _no_separate_check(self: Any, action: str, resource: str) -> PermissionResult:
    """moto's own bucket-policy check: the policy is read in :func:`authorize` instead."""
    return PermissionResult.NEUTRAL


def apply() -> None:
    global _applied
    if _applied:
        return
    S3Response.get_object = _get_object  # type: ignore[method-assign]
    S3Response.head_object = _head_object  # type: ignore[method-assign,assignment]
    FakeBucket.get_permission = _no_separate_check  # type: ignore[method-assign]
    _applied = True
