"""Eight fixes to moto 5.2.5 (its IAM enforcement first), applied only in the emulator process.

1. SignatureDoesNotMatch on bodiless requests. For a request with neither query string
   nor body (every Lambda GET: get_function_configuration, get_function_concurrency,
   list_functions), moto's ``BaseResponse`` fills ``self.data`` with the request *headers*,
   and ``IAMRequestBase._create_aws_request`` signs ``self._body or self._data`` - the
   headers as a form body - so no signature ever matches, even an admin's. A GET, HEAD or
   DELETE carries its parameters in the URL, which is already signed as the path, so we
   sign its real (empty) body. Enforcement stays: a bad key or secret still fails.

2. Authorization as AWS does it. moto derives a request's resource for S3, SQS, IAM and
   STS only, evaluates every other service's request against ``*``, passes policies no
   condition values and reads a failed condition on an Allow as a Deny. Every request is
   instead authorized by :mod:`emulation.iam_requests` (the actions, resource ARNs and
   condition keys AWS would check; a transaction item by item) and
   :mod:`emulation.iam_policy` (AWS's evaluation logic). The refusal names the action and
   resource, as AWS's does. Role trust for AssumeRole stays moto's.

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

6. SNS delivers to an SQS queue only if the queue's policy lets the topic send. moto
   delivers to every subscribed queue; AWS evaluates the queue policy for the principal
   sns.amazonaws.com with aws:SourceArn (the topic) and aws:SourceAccount, and drops the
   message if it is not allowed.

7. DynamoDB transactions cost what AWS's do. To be able to roll back, moto deep-copies every
   table a TransactWriteItems touches, all its items, before it starts: a transaction on a
   table of 5,000 alert markers copies 5,000 items, and a storm's intake slows as it goes.
   The patch keeps, under the same lock, a copy of only the items the transaction names,
   and on cancellation puts back exactly those (absent ones removed). The outcome is the
   same: a cancelled transaction leaves every item as it was.

8. An identity policy names no principal. moto stores a user's, role's or managed policy
   with a ``Principal`` (or ``NotPrincipal``) and then ignores its statements; AWS refuses
   it when it is written (MalformedPolicyDocument, "Policy document should not specify a
   principal."). Trust and resource policies keep theirs.

All patches check the moto version, so an upgrade fails loudly instead of silently.
"""

from __future__ import annotations

import copy
import functools
import json
import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any, cast
from urllib.parse import urlparse

from botocore.awsrequest import AWSRequest
from moto.awslambda.models import lambda_backends
from moto.core.authorization import ActionAuthenticatorMixin
from moto.core.exceptions import AccessDeniedError, _RESTError
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.dynamo_type import DynamoType
from moto.dynamodb.models.table import Table
from moto.ec2.models import ec2_backends
from moto.iam import access_control
from moto.iam.access_control import AssumedRoleAccessKey
from moto.iam.exceptions import MalformedPolicyDocument
from moto.iam.policy_validation import IAMPolicyDocumentValidator
from moto.sns.models import Subscription
from moto.sqs.models import Queue, sqs_backends

from emulation import iam_sessions, resource_policies, s3_access
from emulation.iam_callers import caller_policies, principal_arn, role_named
from emulation.iam_policy import AccessRequest, Decision, evaluate
from emulation.iam_requests import (
    DERIVERS,
    RequestScope,
    access_requests,
    global_context,
    json_params,
)
from emulation.lambda_roles import is_lambda_service
from emulation.moto_version import require_patched_moto
from emulation.role_trust import ASSUME_ROLE, LAMBDA_SERVICE, Caller, may_assume

log = logging.getLogger("emulation")
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


# Services that spell an IAM refusal their own way. SNS: "AuthorizationError: Indicates that
# the user has been denied access to the requested resource" (HTTP 403).
# https://docs.aws.amazon.com/sns/latest/api/API_Publish.html#API_Publish_Errors
ERROR_CODE_BY_SERVICE = {"sns": "AuthorizationError"}


class ResourceAccessDenied(AccessDeniedError):
    def __init__(self, principal_arn: str, request: AccessRequest, decision: Decision):
        if request.action == ASSUME_ROLE:  # the trust and the caller's policies together
            why = ""
        elif decision == Decision.EXPLICIT_DENY:
            why = " with an explicit deny in an identity-based policy"
        else:
            why = f" because no identity-based policy allows the {request.action} action"
        _RESTError.__init__(
            self,
            ERROR_CODE_BY_SERVICE.get(request.action.partition(":")[0], "AccessDenied"),
            f"User: {principal_arn} is not authorized to perform: {request.action} on "
            f"resource: {request.resource}{why}",
        )


def _check_access(self: Any, requests: list[AccessRequest]) -> None:
    """Every authorization the request needs must be allowed, by every policy that bounds
    the caller (emulation/iam_callers.py), with the resource's own policy where it has one
    (emulation/resource_policies.py: a bucket's, a topic's); AssumeRole by the role's trust as well
    (emulation/role_trust.py)."""
    iam_sessions.refuse_expired(self._access_key, self._action)
    if self._action == "sts:GetCallerIdentity":  # always allowed, as on AWS
        return
    caller = caller_policies(self._access_key)
    for request in requests:
        if request.action.lower().startswith("s3:"):  # kept to answer a missing key
            decision = s3_access.authorize(caller, request)
        else:  # with the resource's own policy where it has one (an SNS topic's)
            decision = resource_policies.authorize(caller, request)
        if request.action == ASSUME_ROLE:
            decision = _assume_role_decision(self, decision, request)
        if decision != Decision.ALLOW:
            if isinstance(self, access_control.IAMRequest):
                raise ResourceAccessDenied(self._access_key.arn, request, decision)
            self._raise_access_denied()


def _assume_role_decision(self: Any, identity: Decision, request: AccessRequest) -> Decision:
    """The role, looked up in its own account (none: refused, as AWS refuses a role that
    does not exist), trusted as AWS decides it."""
    arn = request.resource
    role = role_named(arn)
    if role is None:
        return Decision.IMPLICIT_DENY
    trust = json.loads(role.assume_role_policy_document)
    key = self._access_key
    arns = (principal_arn(key), key.arn) if isinstance(key, AssumedRoleAccessKey) else (key.arn,)
    service = LAMBDA_SERVICE if is_lambda_service(key) else None
    data = self._data if isinstance(self._data, Mapping) else {}
    context = dict(request.context)
    for name, key_name in (
        ("ExternalId", "sts:ExternalId"),
        ("RoleSessionName", "sts:RoleSessionName"),
    ):
        value = data.get(name)
        if value:
            context[key_name] = [str(value[0] if isinstance(value, list) else value)]
    return may_assume(trust, identity, Caller(arns, key.account_id, service), arn, context)


def _check_action_permitted(self: Any, resource: str) -> None:
    """moto's single-resource entry point (S3 calls it): one request, global keys only."""
    context = global_context(principal_arn(self._access_key), self.account_id, self._region)
    _check_access(self, [AccessRequest(self._action, resource, context)])


def request_params(response: Any) -> Mapping[str, Any]:
    params = getattr(response, "params", None)
    if isinstance(params, Mapping) and params:
        return params
    try:
        response.parse_parameters(response.normalized_request)
    except Exception:  # a body botocore cannot parse: the call itself will fail on it
        return json_params(getattr(response, "raw_body", None))
    return response.params if isinstance(response.params, Mapping) else {}


def _tags_of(account: str, region: str) -> Callable[[str], Mapping[str, str]]:
    """A resource's tags as aws:ResourceTag/* sees them (security groups and functions:
    the only tagged resources the fleet's policies condition on)."""

    def tags(arn: str) -> Mapping[str, str]:
        try:
            if ":security-group/" in arn:
                return dict(ec2_backends[account][region].tags.get(arn.rsplit("/", 1)[1], {}))
            if arn.startswith("arn:aws:lambda:") and ":function:" in arn:
                base = ":".join(arn.split(":")[:7])
                return dict(lambda_backends[account][region].list_tags(base))
        except Exception:  # no such resource: no tags, as AWS would see none
            return {}
        return {}

    return tags


def _authenticate_and_authorize_normal_action(self: Any, resource: str = "*") -> None:
    # moto's grace of unauthenticated first requests is not kept: the emulator enforces IAM
    # from the first request (emulation/emulator.py sets INITIAL_NO_AUTH_ACTION_COUNT=0).
    if self.headers.get("X-Amz-Target") in ActionAuthenticatorMixin.PUBLIC_OPERATIONS:
        return
    path = self.raw_path
    if urlparse(self.uri).query:
        path += "?" + urlparse(self.uri).query
    iam_request = access_control.IAMRequest(
        account_id=self.current_account,
        method=self.method,
        path=path,
        data=self.data,
        body=self.raw_body,
        headers=self.headers,
        action=self._get_action(),
    )
    iam_request.check_signature()
    action = iam_request._action
    params = request_params(self) if action.partition(":")[0] in DERIVERS else {}
    account, region = self.current_account, self.region
    requests = access_requests(
        action,
        self._get_action(),
        params,
        RequestScope(account, region),
        global_context(principal_arn(iam_request._access_key), account, region),
        _tags_of(account, region),
        moto_resource=resource,
    )
    _check_access(iam_request, requests)


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


SNS_SERVICE = ("Service", "sns.amazonaws.com")
_original_sns_publish = Subscription.publish


def _queue_lets_topic_send(subscription: Any) -> bool:
    _, _, _, region, account, queue_name = subscription.endpoint.split(":", 5)
    try:
        queue = sqs_backends[account][region].get_queue(queue_name)
    except Exception:  # no such queue: nothing to deliver to
        return False
    if not getattr(queue, "policy", None):
        return False
    policy = queue.policy if isinstance(queue.policy, dict) else json.loads(queue.policy)
    request = AccessRequest(
        "sqs:SendMessage",
        queue.queue_arn,
        {"aws:SourceArn": [subscription.topic.arn], "aws:SourceAccount": [subscription.account_id]},
        principal=SNS_SERVICE,
    )
    return evaluate([policy], request) == Decision.ALLOW


def _sns_publish(self: Any, *args: Any, **kwargs: Any) -> None:
    if self.protocol == "sqs" and not _queue_lets_topic_send(self):
        log.warning(
            "SNS delivery to %s refused by its queue policy (topic %s)",
            self.endpoint,
            self.topic.arn,
        )
        return
    _original_sns_publish(self, *args, **kwargs)


# Re-entrant: a transaction's own puts and updates take it again.
_dynamodb_writes = threading.RLock()
DYNAMODB_WRITES = ("put_item", "update_item", "delete_item", "transact_write_items")


def _serialized(method: Any) -> Any:
    @functools.wraps(method)
    def write(*args: Any, **kwargs: Any) -> Any:
        with _dynamodb_writes:
            return method(*args, **kwargs)

    return write


# Set while a patched transaction runs on this thread: moto's whole-table backup is then
# the live table itself (the items the transaction names are kept apart, see below).
_item_rollback = threading.local()
_table_deepcopy = getattr(Table, "__deepcopy__", None)


def _table_copy(self: Table, memo: dict[int, Any]) -> Table:
    """A Table's deep copy, as `copy.deepcopy` makes it (backups need one), except inside a
    patched transaction, where the backup is not needed."""
    if getattr(_item_rollback, "active", False):
        return self
    # As copy.deepcopy's own reconstruction does: the class's __new__, then the state.
    duplicate = cast(Table, Table.__new__(Table))
    memo[id(self)] = duplicate
    for name, value in self.__dict__.items():
        setattr(duplicate, name, copy.deepcopy(value, memo))
    return duplicate


def _named_items(backend: Any, transact_items: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """(table, hash key, range key, a copy of the item or None) for each item the
    transaction names; one it cannot name (no such table, no key) changes nothing."""
    kept = []
    for entry in transact_items:
        _, op = next(iter(entry.items()))
        try:
            table = backend.get_table(op["TableName"])
            key = op["Item"] if "Item" in op else op["Key"]
            hash_key = DynamoType(key[table.hash_key_attr])
            range_key = DynamoType(key[table.range_key_attr]) if table.range_key_attr else None
        except Exception:
            continue
        before = table.get_item(hash_key, range_key)
        kept.append((table, hash_key, range_key, copy.deepcopy(before)))
    return kept


def _put_back(table: Any, hash_key: Any, range_key: Any, before: Any) -> None:
    if before is None:
        table.delete_item(hash_key, range_key)
    elif range_key is not None:
        table.items[hash_key][range_key] = before
    else:
        table.items[hash_key] = before


def _item_level_rollback(method: Any) -> Any:
    @functools.wraps(method)
    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
        with _dynamodb_writes:
            kept = _named_items(self, transact_items)
            _item_rollback.active = True
            try:
                method(self, transact_items)
            except Exception:
                # Cancelled, or refused part-way (moto checks some requests only as it
                # reaches them): as on AWS, none of it happened.
                for table, hash_key, range_key, before in reversed(kept):
                    _put_back(table, hash_key, range_key, before)
                raise
            finally:
                _item_rollback.active = False

    return transact_write_items


_original_identity_validate = IAMPolicyDocumentValidator.validate


def _identity_validate(self: Any) -> None:
    _original_identity_validate(self)
    for statement in self._statements:
        if isinstance(statement, dict) and ({"Principal", "NotPrincipal"} & statement.keys()):
            raise MalformedPolicyDocument("Policy document should not specify a principal.")


def apply() -> None:
    global _applied
    if _applied:
        return
    require_patched_moto(__name__, "re-check every patch")
    access_control.IAMRequestBase._create_aws_request = _create_aws_request  # type: ignore[method-assign]
    access_control.IAMRequestBase.check_action_permitted = _check_action_permitted  # type: ignore[method-assign]
    ActionAuthenticatorMixin._authenticate_and_authorize_normal_action = (  # type: ignore[method-assign]
        _authenticate_and_authorize_normal_action
    )
    access_control.IAMRequestBase.__init__ = _request_init  # type: ignore[method-assign]
    Queue._set_attributes = _set_attributes  # type: ignore[method-assign]
    Queue.attributes = property(_attributes)  # type: ignore[assignment,method-assign]
    Subscription.publish = _sns_publish  # type: ignore[method-assign]
    for name in DYNAMODB_WRITES:
        setattr(DynamoDBBackend, name, _serialized(getattr(DynamoDBBackend, name)))
    if _table_deepcopy is not None:
        raise RuntimeError("moto's Table copies itself now: re-check patch 7")
    Table.__deepcopy__ = _table_copy  # type: ignore[attr-defined]
    DynamoDBBackend.transact_write_items = _item_level_rollback(  # type: ignore[method-assign]
        DynamoDBBackend.transact_write_items
    )
    IAMPolicyDocumentValidator.validate = _identity_validate  # type: ignore[method-assign]
    _applied = True
