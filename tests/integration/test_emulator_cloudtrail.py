"""CloudTrail's event history in the embedded world, read over HTTP with LookupEvents as a
user reads AWS's: who called what, on which resource, when, and whether it was refused.

Events appear only after the trail's delivery delay; the tests move the world's clock past
it (emulation/world_clock.py) rather than wait. Roles and functions made here are the
module's own and deleted after.
"""

from __future__ import annotations

import io
import json
import time
import uuid
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from core.aws import Clients, client, session_from_keys
from core.aws_errors import error_code
from core.principals import Principal
from emulation import world_clock
from emulation.identities import user_arn
from tests.integration.conftest import RunningWorld
from workload.spec import spec_for

FUNCTION = "data-processor"


def _document(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def _deliver(world: RunningWorld) -> None:
    """Moves the world's clock past the trail's delivery delay."""
    clock = world_clock.of_state_dir(world.settings.state_dir)
    clock.advance(world.settings.trail_delivery_delay_s + 1)


# LookupEvents answers 2 requests a second: a reader pages with backoff on throttling.
PATIENT = Config(retries={"mode": "standard", "max_attempts": 10})


def _lookup(admin: Clients, key: str, value: str) -> list[dict[str, Any]]:
    """Every event the attribute matches, newest first, page by page."""
    trail = admin.session.client(
        "cloudtrail", endpoint_url=admin.settings.endpoint_url, config=PATIENT
    )
    events: list[dict[str, Any]] = []
    token: dict[str, str] = {}
    while True:
        page = trail.lookup_events(
            LookupAttributes=[{"AttributeKey": key, "AttributeValue": value}], **token
        )
        events += page["Events"]
        if "NextToken" not in page:
            return events
        token = {"NextToken": page["NextToken"]}


def _record(event: dict[str, Any]) -> dict[str, Any]:
    return dict(json.loads(event["CloudTrailEvent"]))


@pytest.fixture
def role(admin: Clients) -> Iterator[str]:
    """A role of the test's own, trusting the administrator and Lambda; its name."""
    iam = admin("iam")
    name = f"trail-probe-{uuid.uuid4().hex[:8]}"
    trust = {
        "Effect": "Allow",
        "Principal": {"Service": "lambda.amazonaws.com"},
        "Action": "sts:AssumeRole",
    }
    iam.create_role(RoleName=name, AssumeRolePolicyDocument=_document(trust))
    yield name
    for policy in iam.list_role_policies(RoleName=name)["PolicyNames"]:
        iam.delete_role_policy(RoleName=name, PolicyName=policy)
    iam.delete_role(RoleName=name)


def test_a_change_is_in_the_history_after_the_delay_with_who_made_it(
    world: RunningWorld, admin: Clients, role: str
) -> None:
    """A change appears in the event history only after the delivery delay, never at once;
    then LookupEvents finds it by the resource it named, with who made it (userIdentity,
    Username), its source, its parameters, and that it was a write.
    https://docs.aws.amazon.com/awscloudtrail/latest/userguide/how-cloudtrail-works.html
    https://docs.aws.amazon.com/awscloudtrail/latest/APIReference/API_LookupEvents.html
    https://docs.aws.amazon.com/awscloudtrail/latest/userguide/cloudtrail-event-reference-record-contents.html
    """
    statement = {"Effect": "Allow", "Action": "sqs:ListQueues", "Resource": "*"}
    admin("iam").put_role_policy(
        RoleName=role, PolicyName="added-by-hand", PolicyDocument=_document(statement)
    )
    assert _lookup(admin, "ResourceName", role) == []
    _deliver(world)
    events = _lookup(admin, "ResourceName", role)
    names = [e["EventName"] for e in events]
    assert names[:2] == ["PutRolePolicy", "CreateRole"], names  # newest first
    put = events[0]
    admin_name = Principal.ADMIN.user_name
    assert put["Username"] == admin_name
    assert put["EventSource"] == "iam.amazonaws.com" and put["ReadOnly"] == "false"
    assert {"ResourceType": "AWS::IAM::Role", "ResourceName": role} in put["Resources"]
    record = _record(put)
    assert record["userIdentity"]["type"] == "IAMUser"
    assert record["userIdentity"]["arn"] == user_arn(Principal.ADMIN, world.settings)
    assert record["requestParameters"]["roleName"] == role
    assert record["requestParameters"]["policyName"] == "added-by-hand"
    assert "errorCode" not in record
    by_name = _lookup(admin, "EventName", "PutRolePolicy")
    assert put["EventId"] in {e["EventId"] for e in by_name}


def test_a_sessions_call_names_its_role_and_a_refusal_is_recorded(
    world: RunningWorld, admin: Clients, role: str
) -> None:
    """A role session's call names the session and, as its issuer, the role; a call IAM
    refused is recorded with its errorCode; Lambda's event names carry their API version.
    https://docs.aws.amazon.com/awscloudtrail/latest/userguide/cloudtrail-event-reference-user-identity.html
    https://docs.aws.amazon.com/lambda/latest/dg/logging-using-cloudtrail.html
    """
    iam, sts = admin("iam"), admin("sts")
    trusts_admin = {
        "Effect": "Allow",
        "Principal": {"AWS": user_arn(Principal.ADMIN, world.settings)},
        "Action": "sts:AssumeRole",
    }
    iam.update_assume_role_policy(RoleName=role, PolicyDocument=_document(trusts_admin))
    statement = {"Effect": "Allow", "Action": "iam:GetRole", "Resource": "*"}
    iam.put_role_policy(RoleName=role, PolicyName="reads", PolicyDocument=_document(statement))
    role_arn = iam.get_role(RoleName=role)["Role"]["Arn"]
    keys = sts.assume_role(RoleArn=role_arn, RoleSessionName="ops-alice")["Credentials"]
    signed = {k: str(keys[k]) for k in ("AccessKeyId", "SecretAccessKey", "SessionToken")}
    client(session_from_keys(signed, world.settings), "iam", world.settings).get_role(RoleName=role)
    critic = world.clients(Principal.CRITIC)("lambda")
    with pytest.raises(ClientError):
        critic.update_function_configuration(FunctionName=FUNCTION, Timeout=10)
    _deliver(world)

    read = next(e for e in _lookup(admin, "Username", "ops-alice") if e["EventName"] == "GetRole")
    assert read["ReadOnly"] == "true"
    identity = _record(read)["userIdentity"]
    assert identity["type"] == "AssumedRole"
    assert identity["arn"].endswith(f":assumed-role/{role}/ops-alice")
    assert identity["sessionContext"]["sessionIssuer"]["arn"] == role_arn
    assert identity["accessKeyId"] == signed["AccessKeyId"]
    assume = next(e for e in _lookup(admin, "ResourceName", role) if e["EventName"] == "AssumeRole")
    assert _record(assume)["userIdentity"]["userName"] == Principal.ADMIN.user_name
    assert signed["SecretAccessKey"] not in assume["CloudTrailEvent"]
    assert signed["SessionToken"] not in assume["CloudTrailEvent"]

    refused = [
        e
        for e in _lookup(admin, "Username", Principal.CRITIC.user_name)
        if e["EventName"] == "UpdateFunctionConfiguration20150331v2"
    ]
    assert refused, "the critic's refused call is not in the history"
    record = _record(refused[0])
    assert record["errorCode"] == "AccessDenied"
    assert record["eventSource"] == "lambda.amazonaws.com"
    assert {"ResourceType": "AWS::Lambda::Function", "ResourceName": FUNCTION} in refused[0][
        "Resources"
    ]


def _zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("index.py", "def handler(event, context):\n    return 'ok'\n")
    return buf.getvalue()


def test_data_events_and_secrets_stay_out_and_the_world_s_own_services_leave_no_trace(
    world: RunningWorld, admin: Clients, role: str
) -> None:
    """The event history holds management events only (no SQS message calls, no SNS
    Publish, no item writes); a function's environment values and code are never recorded;
    the Lambda service's own work is not the account's API activity, except its assuming a
    function's role, recorded as the lambda.amazonaws.com service.
    https://docs.aws.amazon.com/awscloudtrail/latest/userguide/logging-data-events-with-cloudtrail.html
    https://docs.aws.amazon.com/lambda/latest/dg/logging-using-cloudtrail.html
    """
    lam, sqs = admin("lambda"), admin("sqs")
    role_arn = admin("iam").get_role(RoleName=role)["Role"]["Arn"]
    name = f"trail-fn-{uuid.uuid4().hex[:8]}"
    secret = f"s3cr3t-{uuid.uuid4().hex}"
    lam.create_function(
        FunctionName=name,
        Runtime="python3.12",
        Role=role_arn,
        Handler="index.handler",
        Code={"ZipFile": _zip()},
        Environment={"Variables": {"API_TOKEN": secret}},
    )
    url = sqs.create_queue(QueueName=f"trail-probe-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    try:
        sqs.send_message(QueueUrl=url, MessageBody="probe")
        _deliver(world)
        created = _lookup(admin, "ResourceName", name)
        assert [e["EventName"] for e in created] == ["CreateFunction20150331"]
        text = created[0]["CloudTrailEvent"]
        assert secret not in text and "HIDDEN_DUE_TO_SECURITY_REASONS" in text
        sent = [e for e in _lookup(admin, "EventSource", "sqs.amazonaws.com")]
        assert {e["EventName"] for e in sent} >= {"CreateQueue"}
        assert "SendMessage" not in {e["EventName"] for e in sent}
        runtime = Principal.LAMBDA_RUNTIME.user_name
        assert _lookup(admin, "Username", runtime) == []
        workload_role = spec_for(FUNCTION, world.settings).role_name
        by_lambda = [
            _record(e)["userIdentity"]
            for e in _lookup(admin, "ResourceName", workload_role)
            if e["EventName"] == "AssumeRole"
        ]
        assert by_lambda, "Lambda's assuming the function's role is not in the history"
        assert all(
            i == {"type": "AWSService", "invokedBy": "lambda.amazonaws.com"} for i in by_lambda
        )
    finally:
        lam.delete_function(FunctionName=name)
        sqs.delete_queue(QueueUrl=url)


def test_lookup_events_refuses_what_aws_refuses_and_is_rate_limited(
    world: RunningWorld, admin: Clients
) -> None:
    """One lookup attribute at most, MaxResults up to 50, a time range in order; 2 lookups
    a second per account and Region (ThrottlingException past it); and
    cloudtrail:LookupEvents must be allowed.
    https://docs.aws.amazon.com/awscloudtrail/latest/APIReference/API_LookupEvents.html
    """
    patient = admin.session.client(
        "cloudtrail", endpoint_url=world.settings.endpoint_url, config=PATIENT
    )

    def refused(**params: Any) -> str:
        with pytest.raises(ClientError) as caught:
            patient.lookup_events(**params)
        return error_code(caught.value)

    two = [
        {"AttributeKey": "EventName", "AttributeValue": "PutRolePolicy"},
        {"AttributeKey": "Username", "AttributeValue": "fleet-admin"},
    ]
    assert refused(LookupAttributes=two) == "InvalidLookupAttributesException"
    assert refused(MaxResults=51) == "InvalidMaxResultsException"
    assert refused(StartTime=2_000_000_000, EndTime=1_000_000_000) == "InvalidTimeRangeException"

    # A burst, all at once, from clients that do not retry: the limiter lets through at most
    # its 2 and 2 more for each second the burst took, however busy the machine.
    once = Config(retries={"mode": "standard", "total_max_attempts": 1})
    burst = [
        admin.session.client("cloudtrail", endpoint_url=world.settings.endpoint_url, config=once)
        for _ in range(12)
    ]

    def one(trail: Any) -> str:
        try:
            trail.lookup_events(MaxResults=1)
        except ClientError as exc:
            return error_code(exc)
        return "ok"

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=len(burst)) as pool:
        answers = list(pool.map(one, burst))
    took = time.monotonic() - started
    assert set(answers) <= {"ok", "ThrottlingException"}, answers
    assert answers.count("ok") <= 2 + 2 * took + 1, (answers, took)
    critic = world.clients(Principal.CRITIC)("cloudtrail")
    with pytest.raises(ClientError) as caught:
        critic.lookup_events(MaxResults=1)
    assert "AccessDenied" in error_code(caught.value)
