"""Five narrow fixes to moto 5.2.5's IAM enforcement, applied only in the emulator process.

1. SignatureDoesNotMatch on bodiless requests. For a request with neither query string
   nor body (every Lambda GET: get_function_configuration, get_function_concurrency,
   list_functions), moto's ``BaseResponse`` fills ``self.data`` with the request *headers*,
   and ``IAMRequestBase._create_aws_request`` signs ``self._body or self._data`` - the
   headers as a form body - so no signature ever matches, even an admin's. A GET, HEAD or
   DELETE carries its parameters in the URL, which is already signed as the path, so we
   sign its real (empty) body. Enforcement stays: a bad key or secret still fails.

2. Resource-scoped statements on services where moto checks only the action. moto derives
   the request's resource for S3, SQS, IAM and STS; for every other service (Lambda, Logs,
   CloudWatch, SNS, DynamoDB, EC2) it evaluates against the resource ``"*"``, which no
   statement naming a real ARN matches, so a least-privilege policy would refuse
   everything. When moto passes the unknown resource ``"*"``, a statement's Resource is
   not compared: enforcement is per action there (an explicit Deny still wins), and per
   action and resource where moto knows the resource.

3. IAM action names. moto names the action after the SigV4 credential scope's service,
   which for CloudWatch is ``monitoring``; IAM policies (and AWS) say
   ``cloudwatch:GetMetricStatistics``. And it checks SQS batch operations as actions of
   their own name, which IAM does not have: AWS authorizes DeleteMessageBatch as
   ``sqs:DeleteMessage``, and so on. Both are mapped to what IAM names.

4. SQS SetQueueAttributes semantics. moto drops a queue's Policy whenever another
   attribute is set without it, and stores RedriveAllowPolicy without ever returning it.
   On AWS, SetQueueAttributes changes only what it names, and GetQueueAttributes returns
   RedriveAllowPolicy; provisioning relies on both to be idempotent.

5. DynamoDB transactions under concurrency. moto's TransactWriteItems backs up every table
   it touches and, when cancelled, restores those whole tables: any other request's write
   made meanwhile is lost (an alert storm lost counts). The emulator serializes DynamoDB
   writes, so a cancelled transaction rolls back only itself, as on AWS.

All patches check the moto version, so an upgrade fails loudly instead of silently.
"""

from __future__ import annotations

import functools
import threading
from typing import Any

import moto
from botocore.awsrequest import AWSRequest
from moto.dynamodb.models import DynamoDBBackend
from moto.iam import access_control
from moto.sqs.models import Queue

PATCHED_MOTO_VERSION = "5.2.5"
BODILESS_METHODS = frozenset({"GET", "HEAD", "DELETE"})

# SigV4 signing name -> IAM action prefix, where the two differ.
IAM_PREFIX_BY_SIGNING_NAME = {"monitoring": "cloudwatch"}
# API operations that IAM authorizes as another action (there is no IAM action of their name).
IAM_ACTION_BY_OPERATION = {
    "sqs:DeleteMessageBatch": "sqs:DeleteMessage",
    "sqs:SendMessageBatch": "sqs:SendMessage",
    "sqs:ChangeMessageVisibilityBatch": "sqs:ChangeMessageVisibility",
}

_applied = False


def _create_aws_request(self: Any) -> AWSRequest:
    signed_headers = self._get_string_between(
        "SignedHeaders=", ",", self._headers["Authorization"]
    ).split(";")
    headers = self._create_headers_for_aws_request(signed_headers, self._headers)
    if self._method.upper() in BODILESS_METHODS:
        data: Any = self._body or b""
    else:
        data = self._body or self._data
    request = AWSRequest(method=self._method, url=self._path, data=data, headers=headers)
    request.context["timestamp"] = headers["X-Amz-Date"]
    return request


_original_statement_check = access_control.IAMPolicyStatement.is_action_permitted


def _is_action_permitted(
    self: Any,
    action: str,
    resource: str = "*",
    principal: str | None = None,
    incoming_condition_values: dict[str, str] | None = None,
) -> Any:
    if resource == "*" and self._statement.get("Resource") not in (None, "*"):
        unscoped = access_control.IAMPolicyStatement({**self._statement, "Resource": "*"})
        return _original_statement_check(
            unscoped, action, resource, principal, incoming_condition_values
        )
    return _original_statement_check(self, action, resource, principal, incoming_condition_values)


_original_request_init = access_control.IAMRequestBase.__init__


def _request_init(self: Any, *args: Any, **kwargs: Any) -> None:
    _original_request_init(self, *args, **kwargs)
    prefix, _, name = self._action.partition(":")
    if prefix in IAM_PREFIX_BY_SIGNING_NAME:
        self._action = f"{IAM_PREFIX_BY_SIGNING_NAME[prefix]}:{name}"
    self._action = IAM_ACTION_BY_OPERATION.get(self._action, self._action)


_original_set_attributes = Queue._set_attributes
_original_attributes = Queue.attributes


def _set_attributes(self: Any, attributes: dict[str, Any], now: float | None = None) -> None:
    kept_policy = getattr(self, "policy", None)
    _original_set_attributes(self, attributes, now)
    if "Policy" not in attributes:
        self.policy = kept_policy


def _attributes(self: Any) -> dict[str, Any]:
    result: dict[str, Any] = _original_attributes.fget(self)  # type: ignore[attr-defined]
    if getattr(self, "redrive_allow_policy", None):
        result["RedriveAllowPolicy"] = self.redrive_allow_policy
    return result


# Re-entrant: a transaction's own puts and updates take it again.
_dynamodb_writes = threading.RLock()
DYNAMODB_WRITES = ("put_item", "update_item", "delete_item", "transact_write_items")


def _serialized(method: Any) -> Any:
    @functools.wraps(method)
    def write(*args: Any, **kwargs: Any) -> Any:
        with _dynamodb_writes:
            return method(*args, **kwargs)

    return write


def apply() -> None:
    global _applied
    if _applied:
        return
    if moto.__version__ != PATCHED_MOTO_VERSION:
        raise RuntimeError(
            f"emulation.moto_patches was written for moto {PATCHED_MOTO_VERSION}, "
            f"found {moto.__version__}: re-check both patches before upgrading"
        )
    access_control.IAMRequestBase._create_aws_request = _create_aws_request  # type: ignore[method-assign]
    access_control.IAMPolicyStatement.is_action_permitted = _is_action_permitted  # type: ignore[method-assign]
    access_control.IAMRequestBase.__init__ = _request_init  # type: ignore[method-assign]
    Queue._set_attributes = _set_attributes  # type: ignore[method-assign]
    Queue.attributes = property(_attributes)  # type: ignore[assignment,method-assign]
    for name in DYNAMODB_WRITES:
        setattr(DynamoDBBackend, name, _serialized(getattr(DynamoDBBackend, name)))
    _applied = True
