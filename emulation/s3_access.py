"""S3 authorization as AWS makes it: the caller's policies and the bucket's policy in one
evaluation, and a missing key answered as AWS answers it.

moto checks a bucket policy on its own, outside the caller's: a partial reading (no
conditions, no principals) whose Deny answers a bare 403 without the AccessDenied code, and
whose Allow grants nothing. That check is turned off here; the bucket policy is read with
the caller's in one evaluation (emulation/resource_policies.py).

And a key that does not exist: "If you don't have the s3:ListBucket permission, Amazon S3
returns an HTTP status code 403 (access denied) error" rather than 404 NoSuchKey.
https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetObject.html#API_GetObject_RequestSyntax
https://docs.aws.amazon.com/AmazonS3/latest/userguide/example-bucket-policies.html
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

from moto.iam.access_control import PermissionResult
from moto.s3.exceptions import MissingKey, S3AccessDeniedError
from moto.s3.models import FakeBucket
from moto.s3.responses import S3Response

from emulation import resource_policies
from emulation.iam_policy import AccessRequest, CallerPolicies, Decision

# The caller of the S3 request being served, and its request context, kept by the thread
# that authorized it: answering a missing key asks what else that caller may do.
_served = threading.local()


def authorize(caller: CallerPolicies, request: AccessRequest) -> Decision:
    """The decision for one S3 request, with its bucket's policy; the caller is kept for
    answering a missing key."""
    _served.caller, _served.context = caller, request.context
    return resource_policies.authorize(caller, request)


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
