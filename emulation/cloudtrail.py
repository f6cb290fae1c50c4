"""CloudTrail's event history in the embedded world: every management call recorded as
CloudTrail records it, and answered by ``LookupEvents`` as AWS answers it.

moto has no event history (no LookupEvents), so a person's change to a function, its role or
its network left no trace of who made it. Here each management call through the emulator -
a write or a read, allowed or refused - becomes an event with CloudTrail's fields
(``eventTime``, ``eventName``, ``eventSource``, ``userIdentity`` with a session's issuer,
``requestParameters``, ``responseElements``, ``errorCode``/``errorMessage``) and the
resources it named. As on AWS:

- data events are not in the event history: item reads and writes (DynamoDB), message calls
  (SQS, SNS Publish), log events and metric data (CloudWatch Logs, CloudWatch), Invoke;
- an event appears only after a delivery delay (AWS: "an average of about 5 minutes", never
  at once; here ``Settings.trail_delivery_delay_s``, never zero), judged by the world's
  clock (emulation/world_clock.py), so a test moves the clock on instead of waiting; the
  event's own time is the call's, by real time, as every other record of the world;
- LookupEvents takes at most one lookup attribute, a time range, MaxResults up to 50 and a
  NextToken, returns the newest first, and is limited to 2 requests a second per account
  and Region (ThrottlingException);
- what AWS's own services do inside themselves is not the account's API activity: the
  world's Lambda runtime, alarm evaluator and scheduler leave no events, except Lambda
  assuming a function's role, which CloudTrail records as the ``lambda.amazonaws.com``
  service;
- secrets stay out: a function's environment values and code, and any secret key or session
  token in a response, are recorded as AWS's placeholder, never as themselves.

https://docs.aws.amazon.com/awscloudtrail/latest/APIReference/API_LookupEvents.html
https://docs.aws.amazon.com/awscloudtrail/latest/userguide/cloudtrail-event-reference-record-contents.html
https://docs.aws.amazon.com/awscloudtrail/latest/userguide/how-cloudtrail-works.html
https://docs.aws.amazon.com/awscloudtrail/latest/userguide/logging-data-events-with-cloudtrail.html
"""

from __future__ import annotations

import base64
import functools
import json
import logging
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import botocore.session
from moto.cloudtrail.responses import CloudTrailResponse
from moto.core.exceptions import JsonRESTError
from moto.core.responses import BaseResponse
from moto.iam.models import iam_backends
from moto.sts.models import sts_backends

from core.principals import Principal
from emulation import world_clock
from emulation.iam_requests import RequestScope, access_requests, source_ip
from emulation.moto_patches import IAM_PREFIX_BY_SIGNING_NAME, request_params

log = logging.getLogger("emulation")
# Data events, which the event history never holds (by IAM action prefix and operation).
DATA_EVENTS: dict[str, frozenset[str]] = {
    "dynamodb": frozenset(
        {
            "GetItem",
            "PutItem",
            "UpdateItem",
            "DeleteItem",
            "Query",
            "Scan",
            "BatchGetItem",
            "BatchWriteItem",
            "TransactGetItems",
            "TransactWriteItems",
        }
    ),
    "sqs": frozenset(
        {
            "SendMessage",
            "SendMessageBatch",
            "ReceiveMessage",
            "DeleteMessage",
            "DeleteMessageBatch",
            "ChangeMessageVisibility",
            "ChangeMessageVisibilityBatch",
        }
    ),
    "sns": frozenset({"Publish", "PublishBatch"}),
    "lambda": frozenset({"Invoke", "InvokeAsync", "InvokeWithResponseStream"}),
    "logs": frozenset({"PutLogEvents", "GetLogEvents", "FilterLogEvents"}),
    "cloudwatch": frozenset(
        {"PutMetricData", "GetMetricData", "GetMetricStatistics", "ListMetrics"}
    ),
}
# eventSource names a service by its endpoint: CloudWatch's is "monitoring".
EVENT_SOURCE_NAMES = {"cloudwatch": "monitoring"}
READ_ONLY_PREFIXES = ("Get", "List", "Describe", "Lookup", "Head", "BatchGet")
# The world's own services: what they do is the service's, not the account's API activity.
WORLD_SERVICES = frozenset(
    p.user_name for p in (Principal.LAMBDA_RUNTIME, Principal.ALARM_EVALUATOR, Principal.SCHEDULER)
)
HIDDEN = "HIDDEN_DUE_TO_SECURITY_REASONS"
SECRET_FIELDS = frozenset({"SecretAccessKey", "SessionToken", "ZipFile", "Variables"})
LOOKUP_KEYS = frozenset(
    {
        "EventId",
        "EventName",
        "ReadOnly",
        "Username",
        "ResourceType",
        "ResourceName",
        "EventSource",
        "AccessKeyId",
    }
)
MAX_RESULTS = 50
LOOKUPS_PER_SECOND = 2.0
# ARN service:type -> CloudTrail's resource type; the name is what follows the type.
RESOURCE_TYPES = {
    ("lambda", "function"): "AWS::Lambda::Function",
    ("iam", "role"): "AWS::IAM::Role",
    ("iam", "user"): "AWS::IAM::User",
    ("iam", "policy"): "AWS::IAM::Policy",
    ("ec2", "security-group"): "AWS::EC2::SecurityGroup",
    ("dynamodb", "table"): "AWS::DynamoDB::Table",
    ("logs", "log-group"): "AWS::Logs::LogGroup",
    ("cloudwatch", "alarm"): "AWS::CloudWatch::Alarm",
}


@dataclass(frozen=True)
class TrailEvent:
    index: int
    id: str
    name: str
    source: str
    time: datetime
    delivered: datetime
    read_only: bool
    access_key_id: str
    username: str | None
    resources: tuple[tuple[str, str], ...]
    record: Mapping[str, Any]

    def attribute(self, key: str) -> list[str]:
        """The values LookupEvents' attribute `key` matches on."""
        match key:
            case "EventId":
                return [self.id]
            case "EventName":
                return [self.name]
            case "ReadOnly":
                return ["true" if self.read_only else "false"]
            case "Username":
                return [self.username] if self.username else []
            case "ResourceType":
                return [t for t, _ in self.resources]
            case "ResourceName":
                return [n for _, n in self.resources]
            case "EventSource":
                return [self.source]
            case "AccessKeyId":
                return [self.access_key_id]
        return []

    def answer(self) -> dict[str, Any]:
        return {
            "EventId": self.id,
            "EventName": self.name,
            "ReadOnly": "true" if self.read_only else "false",
            "AccessKeyId": self.access_key_id,
            "EventTime": self.time.timestamp(),
            "EventSource": self.source,
            **({"Username": self.username} if self.username else {}),
            "Resources": [{"ResourceType": t, "ResourceName": n} for t, n in self.resources],
            "CloudTrailEvent": json.dumps(self.record),
        }


class EventHistory:
    """The account's events, in the order they happened (append-only)."""

    def __init__(self, delivery_delay_s: float):
        if delivery_delay_s <= 0:
            raise ValueError("CloudTrail never delivers at once: the delay must be positive")
        self.delivery_delay_s = delivery_delay_s
        self._events: list[TrailEvent] = []
        self._lock = threading.Lock()

    def record(self, **fields: Any) -> None:
        with self._lock:
            self._events.append(TrailEvent(index=len(self._events), **fields))

    def delivered(self, now: datetime) -> list[TrailEvent]:
        with self._lock:
            return [e for e in self._events if e.delivered <= now]


_history = EventHistory(delivery_delay_s=1.0)
_lookups = threading.Lock()
_lookup_tokens = [LOOKUPS_PER_SECOND, time.monotonic()]


def _hidden(value: Any) -> Any:
    """`value` with every secret field replaced by AWS's placeholder."""
    if isinstance(value, Mapping):
        return {k: HIDDEN if k in SECRET_FIELDS else _hidden(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_hidden(v) for v in value]
    return value


def _plain(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _camel(value: Any) -> Any:
    """Keys as CloudTrail writes them (``FunctionName`` -> ``functionName``)."""
    if isinstance(value, Mapping):
        return {(k[:1].lower() + k[1:]): _camel(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_camel(v) for v in value]
    return value


# Lambda's event names carry the version of the API they were made in (its URI's date), and
# some a "v2": UpdateFunctionConfiguration is "UpdateFunctionConfiguration20150331v2".
# https://docs.aws.amazon.com/lambda/latest/dg/logging-using-cloudtrail.html
LAMBDA_V2 = frozenset(
    {
        "UpdateFunctionConfiguration",
        "UpdateFunctionCode",
        "GetFunction",
        "GetFunctionConfiguration",
        "AddPermission",
        "RemovePermission",
        "GetPolicy",
        "TagResource",
        "UntagResource",
    }
)


@functools.cache
def event_name(service: str, operation: str) -> str:
    if service != "lambda":
        return operation
    try:
        model = botocore.session.get_session().get_service_model("lambda")
        uri = str(model.operation_model(operation).http["requestUri"])
    except Exception:  # not an operation botocore knows: named as called
        return operation
    version = uri.lstrip("/").split("/", 1)[0].replace("-", "")
    return f"{operation}{version}{'v2' if operation in LAMBDA_V2 else ''}"


def _identity(access_key_id: str, account: str) -> tuple[dict[str, Any], str | None] | None:
    """CloudTrail's userIdentity of the key's holder and its Username; None for the
    world's own services (and for keys nobody holds)."""
    key = iam_backends[account]["aws"].access_keys.get(access_key_id)
    if key is None or getattr(key, "role_arn", None):  # a role session's (moto keeps both)
        for session in sts_backends[account]["aws"].assumed_roles:
            if session.access_key_id == access_key_id:
                return _session_identity(session, account), session.session_name
        return None
    user = str(key.user_name)
    if user in WORLD_SERVICES:
        return None
    arn = f"arn:aws:iam::{account}:user/{user}"
    found = iam_backends[account]["aws"].users.get(user)
    principal_id = found.id if found is not None else user
    identity = {
        "type": "IAMUser",
        "principalId": principal_id,
        "arn": arn,
        "accountId": account,
        "accessKeyId": access_key_id,
        "userName": user,
    }
    return identity, user


def _session_identity(session: Any, account: str) -> dict[str, Any]:
    role_name = session.role_arn.rsplit("/", 1)[-1]
    role_id = session.user_id.split(":", 1)[0]
    return {
        "type": "AssumedRole",
        "principalId": session.user_id,
        "arn": session.arn,
        "accountId": account,
        "accessKeyId": session.access_key_id,
        "sessionContext": {
            "sessionIssuer": {
                "type": "Role",
                "principalId": role_id,
                "arn": session.role_arn,
                "accountId": account,
                "userName": role_name,
            },
            "attributes": {"mfaAuthenticated": "false"},
        },
    }


def _resources(arns: list[str]) -> tuple[tuple[str, str], ...]:
    found: list[tuple[str, str]] = []
    for arn in arns:
        parts = arn.split(":", 5)
        if len(parts) < 6:
            continue
        service, rest = parts[2], parts[5]
        kind, _, name = rest.replace(":", "/", 1).partition("/")
        resource_type = RESOURCE_TYPES.get((service, kind))
        if service == "sns":
            resource_type, name = "AWS::SNS::Topic", arn
        elif service == "sqs":
            resource_type, name = "AWS::SQS::Queue", arn
        if service in ("lambda", "logs"):  # a qualifier, or a log group's ":*"
            name = name.split(":")[0]
        if resource_type and name and (resource_type, name) not in found:
            found.append((resource_type, name))
    return tuple(found)


def _error(status: int, body: Any) -> tuple[str | None, str | None]:
    if status < 400:
        return None, None
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
    try:
        parsed = json.loads(text)
        code = str(parsed.get("__type") or parsed.get("code") or parsed.get("Code") or "")
        return code.split("#")[-1] or None, parsed.get("message") or parsed.get("Message")
    except (ValueError, AttributeError):
        pass
    tag = text.split("<Code>", 1)[1].split("</Code>", 1)[0] if "<Code>" in text else None
    message = (
        text.split("<Message>", 1)[1].split("</Message>", 1)[0] if "<Message>" in text else None
    )
    return tag, message


def _response_elements(status: int, body: Any) -> Any:
    if status >= 400:
        return None
    try:
        parsed = json.loads(body)
    except (ValueError, TypeError):
        return None  # an XML answer: not kept
    return _camel(_hidden(parsed)) if isinstance(parsed, Mapping) else None


def _no_tags(arn: str) -> Mapping[str, str]:
    return {}


def record_call(response: BaseResponse, status: int, body: Any) -> None:
    """Records one answered call, if CloudTrail's event history would hold it."""
    service = str(response.boto3_service_name or "")  # "lambda", not moto's "awslambda"
    prefix = IAM_PREFIX_BY_SIGNING_NAME.get(service, service)
    try:
        operation = response._get_action()
        access_key_id = response.get_access_key()
    except Exception:  # a request moto could not route: nothing was called
        return
    if not operation or operation in DATA_EVENTS.get(prefix, frozenset()):
        return
    account = response.current_account
    found = _identity(access_key_id, account)
    service_user = iam_backends[account]["aws"].access_keys.get(access_key_id)
    if found is None:
        as_lambda = (
            service_user is not None
            and service_user.user_name == Principal.LAMBDA_RUNTIME.user_name
            and operation == "AssumeRole"
        )
        if not as_lambda:
            return
        found = ({"type": "AWSService", "invokedBy": "lambda.amazonaws.com"}, None)
    identity, username = found
    params = _plain(dict(request_params(response)))
    scope = RequestScope(account, response.region)
    named = [
        r.resource
        for r in access_requests(f"{prefix}:{operation}", operation, params, scope, {}, _no_tags)
    ]
    if prefix == "sts" and params.get("RoleArn"):  # the role assumed
        named.append(str(params["RoleArn"]))
    # Stamped by real time, as the rest of the world's records are (alarms, logs, the
    # fleet's own); delivery is judged by the world's clock, which tests move on.
    now = datetime.now(UTC)
    code, message = _error(status, body)
    event_id = str(uuid.uuid4())
    source = f"{EVENT_SOURCE_NAMES.get(service, service)}.amazonaws.com"
    name = event_name(service, operation)
    record = {
        "eventVersion": "1.09",
        "userIdentity": identity,
        "eventTime": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "eventSource": source,
        "eventName": name,
        "awsRegion": response.region,
        "sourceIPAddress": source_ip() or "127.0.0.1",
        "userAgent": response.headers.get("User-Agent", ""),
        "requestParameters": _camel(_hidden(params)) or None,
        "responseElements": _response_elements(status, body),
        **({"errorCode": code, "errorMessage": message} if code else {}),
        "requestID": str(uuid.uuid4()),
        "eventID": event_id,
        "readOnly": operation.startswith(READ_ONLY_PREFIXES),
        "eventType": "AwsApiCall" if identity["type"] != "AWSService" else "AwsServiceEvent",
        "managementEvent": True,
        "recipientAccountId": account,
        "eventCategory": "Management",
    }
    _history.record(
        id=event_id,
        name=name,
        source=source,
        time=now,
        delivered=world_clock.now() + timedelta(seconds=_history.delivery_delay_s),
        read_only=bool(record["readOnly"]),
        access_key_id=access_key_id,
        username=username,
        resources=_resources([arn for arn in named if arn != "*"]),
        record=record,
    )


def _throttled() -> bool:
    """AWS's limit on LookupEvents: 2 a second per account and Region (a token bucket)."""
    with _lookups:
        tokens, at = _lookup_tokens
        now = time.monotonic()
        tokens = min(LOOKUPS_PER_SECOND, tokens + (now - at) * LOOKUPS_PER_SECOND)
        if tokens < 1:
            _lookup_tokens[:] = [tokens, now]
            return True
        _lookup_tokens[:] = [tokens - 1, now]
        return False


def _instant(value: Any, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.fromtimestamp(float(value), UTC)
    except (TypeError, ValueError):
        raise JsonRESTError("ValidationException", f"{name} is not a time") from None


def lookup_events(self: CloudTrailResponse) -> str:
    if _throttled():
        raise JsonRESTError("ThrottlingException", "Rate exceeded")
    params = json.loads(self.body or "{}")
    attributes = params.get("LookupAttributes") or []
    if len(attributes) > 1:
        raise JsonRESTError(
            "InvalidLookupAttributesException", "You can specify only one lookup attribute."
        )
    if attributes and attributes[0].get("AttributeKey") not in LOOKUP_KEYS:
        raise JsonRESTError(
            "InvalidLookupAttributesException",
            f"Unsupported lookup attribute key: {attributes[0].get('AttributeKey')}",
        )
    max_results = int(params.get("MaxResults") or MAX_RESULTS)
    if not 1 <= max_results <= MAX_RESULTS:
        raise JsonRESTError(
            "InvalidMaxResultsException", f"MaxResults must be from 1 to {MAX_RESULTS}."
        )
    start = _instant(params.get("StartTime"), "StartTime")
    end = _instant(params.get("EndTime"), "EndTime")
    if start and end and start > end:
        raise JsonRESTError("InvalidTimeRangeException", "StartTime is after EndTime.")
    before = None
    if params.get("NextToken"):
        try:
            before = int(base64.b64decode(params["NextToken"]).decode())
        except ValueError:
            raise JsonRESTError("InvalidNextTokenException", "Invalid NextToken.") from None
    wanted = (
        (attributes[0]["AttributeKey"], attributes[0].get("AttributeValue")) if attributes else None
    )
    matching = [
        e
        for e in reversed(_history.delivered(world_clock.now()))
        if (before is None or e.index < before)
        and (start is None or e.time >= start)
        and (end is None or e.time <= end)
        and (wanted is None or wanted[1] in e.attribute(wanted[0]))
    ]
    page = matching[:max_results]
    answer: dict[str, Any] = {"Events": [e.answer() for e in page]}
    if len(matching) > max_results:
        answer["NextToken"] = base64.b64encode(str(page[-1].index).encode()).decode()
    return json.dumps(answer)


_original_call_action = BaseResponse.call_action
_applied = False


def _call_action(self: BaseResponse) -> Any:
    status, headers, body = _original_call_action(self)
    try:
        record_call(self, int(status), body)
    except Exception:  # the trail must never fail the call it records; it says so
        log.exception("CloudTrail: could not record %s", getattr(self, "service_name", "?"))
    return status, headers, body


def apply(delivery_delay_s: float) -> None:
    global _applied, _history
    if _applied:
        return
    _history = EventHistory(delivery_delay_s)
    BaseResponse.call_action = _call_action  # type: ignore[method-assign]
    CloudTrailResponse.lookup_events = lookup_events  # type: ignore[attr-defined]
    _applied = True
