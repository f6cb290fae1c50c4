"""Policies people write, refused or applied by the emulator as AWS refuses or applies them.

Each test stages, over HTTP, what a user would write, and asserts what AWS documents (the
page is in the test's docstring). Roles made here are this module's own and deleted after.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.exceptions import ClientError

from core.aws import Clients, client, session_from_keys
from core.aws_errors import error_code
from core.principals import Principal
from emulation import world_clock
from emulation.identities import user_arn
from emulation.world import wait_for
from tests.integration.conftest import RunningWorld
from workload.spec import spec_for

FUNCTION = "data-processor"

Statement = dict[str, Any]
LIST_QUEUES: Statement = {"Effect": "Allow", "Action": "sqs:ListQueues", "Resource": "*"}


def _document(*statements: Statement) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


@pytest.fixture
def make_role(world: RunningWorld, admin: Clients) -> Iterator[Callable[..., str]]:
    """A role of the test's own, with this trust (default: the administrator) and these
    statements; its ARN. Every role made is deleted after the test."""
    iam = admin("iam")
    made: list[str] = []

    def make(*statements: Statement, trust: Statement | None = None) -> str:
        name = f"policy-probe-{uuid.uuid4().hex[:8]}"
        trust = trust or {
            "Effect": "Allow",
            "Principal": {"AWS": user_arn(Principal.ADMIN, world.settings)},
            "Action": "sts:AssumeRole",
        }
        role = iam.create_role(RoleName=name, AssumeRolePolicyDocument=_document(trust))["Role"]
        made.append(name)
        if statements:
            iam.put_role_policy(
                RoleName=name, PolicyName="probe", PolicyDocument=_document(*statements)
            )
        return str(role["Arn"])

    yield make
    for name in made:
        for policy in iam.list_role_policies(RoleName=name)["PolicyNames"]:
            iam.delete_role_policy(RoleName=name, PolicyName=policy)
        iam.delete_role(RoleName=name)


@pytest.fixture
def role_session(
    world: RunningWorld, admin: Clients, make_role: Callable[..., str]
) -> Callable[..., Any]:
    """A client (SQS unless `service` says) signed by a session of a new role with these
    statements."""

    def session(*statements: Statement, service: str = "sqs") -> Any:
        arn = make_role(*statements)
        keys = admin("sts").assume_role(RoleArn=arn, RoleSessionName="probe")["Credentials"]
        signed = {k: str(keys[k]) for k in ("AccessKeyId", "SecretAccessKey", "SessionToken")}
        return client(session_from_keys(signed, world.settings), service, world.settings)

    return session


def _refused(call: Callable[[], Any]) -> str:
    with pytest.raises(ClientError) as refused:
        call()
    return error_code(refused.value)


def test_a_role_sessions_principal_arn_is_its_roles(role_session: Callable[..., Any]) -> None:
    """aws:PrincipalArn of a role session is the role's ARN, not the session's STS ARN; a
    guardrail written on role ARNs applies to every session of them.
    https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_condition-keys.html#condition-keys-principalarn
    """
    guardrail = {
        "Effect": "Deny",
        "Action": "sqs:*",
        "Resource": "*",
        "Condition": {"StringLike": {"aws:PrincipalArn": "arn:aws:iam::*:role/policy-probe-*"}},
    }
    assert _refused(role_session(LIST_QUEUES, guardrail).list_queues) == "AccessDenied"
    on_the_session = {
        **guardrail,
        "Condition": {"StringLike": {"aws:PrincipalArn": "arn:aws:sts::*:assumed-role/*"}},
    }
    role_session(LIST_QUEUES, on_the_session).list_queues()  # never matches: allowed


def test_a_deny_on_the_callers_address_applies(role_session: Callable[..., Any]) -> None:
    """aws:SourceIp is the caller's address, compared by IpAddress / NotIpAddress: "deny
    unless from the office network" refuses a caller from elsewhere (here, 127.0.0.1).
    https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_examples_aws_deny-ip.html
    """

    def deny(operator: str, cidr: str) -> Statement:
        return {
            "Effect": "Deny",
            "Action": "*",
            "Resource": "*",
            "Condition": {operator: {"aws:SourceIp": cidr}},
        }

    assert _refused(role_session(LIST_QUEUES, deny("NotIpAddress", "203.0.113.0/24")).list_queues)
    assert _refused(role_session(LIST_QUEUES, deny("IpAddress", "127.0.0.0/8")).list_queues)
    role_session(LIST_QUEUES, deny("NotIpAddress", "127.0.0.0/8")).list_queues()


@pytest.mark.parametrize(
    ("statement", "message"),
    [
        (
            {**LIST_QUEUES, "Principal": {"AWS": "*"}},
            "Policy document should not specify a principal.",
        ),
        (
            {**LIST_QUEUES, "Condition": {"StringEqualz": {"aws:PrincipalTag/team": "sre"}}},
            "",
        ),
    ],
    ids=["a-principal", "an-unknown-operator"],
)
def test_a_malformed_identity_policy_is_refused_when_written(
    admin: Clients, statement: Statement, message: str
) -> None:
    """IAM refuses an identity-based policy with a Principal element ("You cannot use the
    Principal element in an identity-based policy") or an unknown condition operator, with
    MalformedPolicyDocument, and stores nothing.
    https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_principal.html
    https://docs.aws.amazon.com/IAM/latest/APIReference/API_PutUserPolicy.html
    """
    iam = admin("iam")
    user = Principal.OPERATOR.user_name
    with pytest.raises(ClientError) as refused:
        iam.put_user_policy(
            UserName=user, PolicyName="malformed", PolicyDocument=_document(statement)
        )
    assert error_code(refused.value) == "MalformedPolicyDocument"
    assert message in str(refused.value)
    assert "malformed" not in iam.list_user_policies(UserName=user)["PolicyNames"]
    with pytest.raises(ClientError) as refused:
        iam.create_policy(
            PolicyName=f"malformed-{uuid.uuid4().hex[:6]}", PolicyDocument=_document(statement)
        )
    assert error_code(refused.value) == "MalformedPolicyDocument"


def _trust(principal: Any, **more: Any) -> Statement:
    return {"Effect": "Allow", "Principal": principal, "Action": "sts:AssumeRole", **more}


def test_who_may_assume_a_role_is_decided_as_aws_decides_it(
    world: RunningWorld, admin: Clients, make_role: Callable[..., str]
) -> None:
    """A role trusting its account's root is assumed by a principal of the account whose own
    policies allow it (the administrator); a role trusting only the Lambda service, a role
    that does not exist, and a trust whose ExternalId condition is not met are refused.
    https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_principal.html#principal-accounts
    https://docs.aws.amazon.com/IAM/latest/UserGuide/id_roles_common-scenarios_third-party.html
    """
    sts = admin("sts")
    account = world.settings.account_id
    root = make_role(trust=_trust({"AWS": f"arn:aws:iam::{account}:root"}))
    assert sts.assume_role(RoleArn=root, RoleSessionName="probe")["Credentials"]["AccessKeyId"]
    lambda_only = make_role(trust=_trust({"Service": "lambda.amazonaws.com"}))
    assert _refused(lambda: sts.assume_role(RoleArn=lambda_only, RoleSessionName="probe")) == (
        "AccessDenied"
    )
    missing = f"arn:aws:iam::{account}:role/no-such-role"
    assert _refused(lambda: sts.assume_role(RoleArn=missing, RoleSessionName="probe")) == (
        "AccessDenied"
    )
    elsewhere = "arn:aws:iam::210987654321:role/no-such-role"
    assert _refused(lambda: sts.assume_role(RoleArn=elsewhere, RoleSessionName="probe")) == (
        "AccessDenied"
    )
    third_party = make_role(
        trust=_trust(
            {"AWS": user_arn(Principal.ADMIN, world.settings)},
            Condition={"StringEquals": {"sts:ExternalId": "k-42"}},
        )
    )
    assert _refused(lambda: sts.assume_role(RoleArn=third_party, RoleSessionName="probe")) == (
        "AccessDenied"
    )
    assert sts.assume_role(RoleArn=third_party, RoleSessionName="probe", ExternalId="k-42")
    # Nobody else of the account: the critic's own policy does not allow sts:AssumeRole.
    critic = world.clients(Principal.CRITIC)("sts")
    assert _refused(lambda: critic.assume_role(RoleArn=root, RoleSessionName="probe")) == (
        "AccessDenied"
    )


def test_a_session_and_a_boundary_narrow_what_a_role_may_do(
    world: RunningWorld, admin: Clients, make_role: Callable[..., str]
) -> None:
    """A session made with session policies (inline Policy, PolicyArns) may do only what
    both its role and they allow; a role with a permissions boundary only what both its
    policies and the boundary allow; oversized or malformed session policies are refused.
    https://docs.aws.amazon.com/IAM/latest/UserGuide/access_policies.html#policies_session
    https://docs.aws.amazon.com/IAM/latest/UserGuide/access_policies_boundaries.html
    https://docs.aws.amazon.com/STS/latest/APIReference/API_AssumeRole.html
    """
    iam, sts = admin("iam"), admin("sts")
    reads_queues = {
        "Effect": "Allow",
        "Action": ["sqs:ListQueues", "sqs:GetQueueUrl"],
        "Resource": "*",
    }
    arn = make_role(reads_queues)

    def sqs_of(**session: Any) -> Any:
        keys = sts.assume_role(RoleArn=arn, RoleSessionName="probe", **session)["Credentials"]
        signed = {k: str(keys[k]) for k in ("AccessKeyId", "SecretAccessKey", "SessionToken")}
        return client(session_from_keys(signed, world.settings), "sqs", world.settings)

    sqs_of().get_queue_url(QueueName="supervisor")
    only_listing = _document(LIST_QUEUES)
    narrowed = sqs_of(Policy=only_listing)
    narrowed.list_queues()
    assert _refused(lambda: narrowed.get_queue_url(QueueName="supervisor")) == "AccessDenied"
    managed = iam.create_policy(
        PolicyName=f"session-{uuid.uuid4().hex[:6]}", PolicyDocument=only_listing
    )["Policy"]["Arn"]
    try:
        by_arn = sqs_of(PolicyArns=[{"arn": managed}])
        by_arn.list_queues()
        assert _refused(lambda: by_arn.get_queue_url(QueueName="supervisor")) == "AccessDenied"
        assert _refused(lambda: sqs_of(Policy="x" * 2049)) == "ValidationError"
        with_principal = _document({**LIST_QUEUES, "Principal": "*"})
        assert _refused(lambda: sqs_of(Policy=with_principal)) == "MalformedPolicyDocument"
        role_name = arn.rsplit("/", 1)[1]
        iam.put_role_permissions_boundary(RoleName=role_name, PermissionsBoundary=managed)
        bounded = sqs_of()
        bounded.list_queues()
        assert _refused(lambda: bounded.get_queue_url(QueueName="supervisor")) == "AccessDenied"
        iam.delete_role_permissions_boundary(RoleName=role_name)
    finally:
        iam.delete_policy(PolicyArn=managed)


def test_only_lambda_assumes_a_functions_role_and_only_a_role_it_trusts_is_taken(
    world: RunningWorld, admin: Clients, make_role: Callable[..., str]
) -> None:
    """A workload role trusts only lambda.amazonaws.com: the administrator cannot assume
    it, the Lambda runtime (as the service) can; pointing a function at a role Lambda
    cannot assume is refused ("The role defined for the function cannot be assumed by
    Lambda."), and the function keeps its role.
    https://docs.aws.amazon.com/lambda/latest/dg/lambda-intro-execution-role.html
    """
    spec = spec_for(FUNCTION, world.settings)
    sts = admin("sts")
    assert _refused(lambda: sts.assume_role(RoleArn=spec.role_arn, RoleSessionName="probe")) == (
        "AccessDenied"
    )
    runtime = world.clients(Principal.LAMBDA_RUNTIME)("sts")
    assert runtime.assume_role(RoleArn=spec.role_arn, RoleSessionName=FUNCTION)["Credentials"]
    not_for_lambda = make_role(LIST_QUEUES)  # trusts the administrator only
    lam = admin("lambda")
    with pytest.raises(ClientError) as refused:
        lam.update_function_configuration(FunctionName=FUNCTION, Role=not_for_lambda)
    assert error_code(refused.value) == "InvalidParameterValueException"
    assert "cannot be assumed by Lambda" in str(refused.value)
    assert lam.get_function_configuration(FunctionName=FUNCTION)["Role"] == spec.role_arn


@pytest.fixture
def probe_topic(admin: Clients) -> Iterator[str]:
    """A topic of the test's own (AWS's default topic policy), deleted after."""
    sns = admin("sns")
    arn = str(sns.create_topic(Name=f"policy-probe-{uuid.uuid4().hex[:8]}")["TopicArn"])
    yield arn
    sns.delete_topic(TopicArn=arn)


def test_a_topics_policy_is_read_with_the_callers_own(
    world: RunningWorld,
    admin: Clients,
    make_role: Callable[..., str],
    role_session: Callable[..., Any],
    probe_topic: str,
) -> None:
    """A topic's policy is a resource-based policy: its explicit Deny refuses a Publish the
    caller's own policy allows, and in the topic's account its Allow of a role lets that
    role's sessions publish with no identity policy of their own. AWS's default topic policy
    grants on AWS:SourceOwner, a key a principal calling with its own keys never carries:
    it grants nobody anything.
    https://docs.aws.amazon.com/sns/latest/dg/sns-access-policy-use-cases.html
    https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic_policy-eval-denyallow.html
    https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_condition-keys.html#condition-keys-sourceaccount
    """
    sns = admin("sns")
    publishes = {"Effect": "Allow", "Action": "sns:Publish", "Resource": probe_topic}
    allowed = role_session(publishes, service="sns")
    allowed.publish(TopicArn=probe_topic, Message="{}")
    nothing_of_its_own = role_session(LIST_QUEUES, service="sns")
    refused = _refused(lambda: nothing_of_its_own.publish(TopicArn=probe_topic, Message="{}"))
    assert refused == "AuthorizationError"  # SNS's spelling of AccessDenied

    def topic_policy(*statements: Statement) -> None:
        sns.set_topic_attributes(
            TopicArn=probe_topic, AttributeName="Policy", AttributeValue=_document(*statements)
        )

    topic_policy(
        {
            "Effect": "Deny",
            "Principal": "*",
            "Action": "sns:Publish",
            "Resource": probe_topic,
            "Condition": {"StringLike": {"aws:PrincipalArn": "arn:aws:iam::*:role/policy-probe-*"}},
        }
    )
    assert _refused(lambda: allowed.publish(TopicArn=probe_topic, Message="{}"))
    granted = make_role(LIST_QUEUES)
    topic_policy(
        {"Effect": "Allow", "Principal": {"AWS": granted}, "Action": "sns:Publish", "Resource": "*"}
    )
    keys = admin("sts").assume_role(RoleArn=granted, RoleSessionName="probe")["Credentials"]
    signed = {k: str(keys[k]) for k in ("AccessKeyId", "SecretAccessKey", "SessionToken")}
    by_grant = client(session_from_keys(signed, world.settings), "sns", world.settings)
    by_grant.publish(TopicArn=probe_topic, Message="{}")
    assert _refused(lambda: nothing_of_its_own.publish(TopicArn=probe_topic, Message="{}"))


def test_a_session_ends_when_its_time_is_up_and_lambda_renews_its_own(
    world: RunningWorld, admin: Clients, make_role: Callable[..., str]
) -> None:
    """A role session lasts its DurationSeconds (900 s at least, the role's
    MaxSessionDuration at most, one hour when a session assumes another role); then its
    keys are refused with ExpiredToken. Lambda renews a function's role keys before they
    expire, so the function runs on across the expiry. The world's clock is moved on rather
    than waited for.
    https://docs.aws.amazon.com/STS/latest/APIReference/API_AssumeRole.html
    https://docs.aws.amazon.com/IAM/latest/UserGuide/id_roles_use.html#id_roles_use_view-role-max-session
    https://docs.aws.amazon.com/awsconsolehelpdocs/latest/gsg/common-errors.html
    """
    sts, account = admin("sts"), world.settings.account_id
    chains = {"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": "*"}
    arn = make_role(LIST_QUEUES, chains)
    long_role = make_role(trust=_trust({"AWS": f"arn:aws:iam::{account}:root"}))
    admin("iam").update_role(RoleName=long_role.rsplit("/", 1)[1], MaxSessionDuration=7200)

    def signed(keys: Mapping[str, Any], service: str) -> Any:
        creds = {k: str(keys[k]) for k in ("AccessKeyId", "SecretAccessKey", "SessionToken")}
        return client(session_from_keys(creds, world.settings), service, world.settings)

    def assume(role: str, seconds: int, by: Any = sts) -> Any:
        return by.assume_role(RoleArn=role, RoleSessionName="probe", DurationSeconds=seconds)

    # (Under 900 s botocore refuses before sending.)
    assert _refused(lambda: assume(arn, 3601)) == "ValidationError"  # MaxSessionDuration
    assert assume(long_role, 7200)["Credentials"]
    keys = assume(arn, 900)["Credentials"]
    sqs, own_sts = signed(keys, "sqs"), signed(keys, "sts")
    sqs.list_queues()
    refused = _refused(lambda: assume(long_role, 3601, by=own_sts))  # role chaining
    assert refused == "ValidationError"
    assert assume(long_role, 3600, by=own_sts)["Credentials"]

    logs = admin("logs")
    world.wait_healthy(FUNCTION)
    since = int(datetime.now(UTC).timestamp() * 1000)
    # Past this session's end, and past the Lambda runtime's own (an hour at most).
    world_clock.of_state_dir(world.settings.state_dir).advance(3601)
    assert _refused(sqs.list_queues) == "ExpiredTokenException"
    assert _refused(own_sts.get_caller_identity) == "ExpiredToken"
    fresh = signed(assume(arn, 900)["Credentials"], "sqs")  # from the moved clock
    fresh.list_queues()

    def a_new_environment_ran() -> bool:
        events = logs.filter_log_events(
            logGroupName=f"/aws/lambda/{FUNCTION}", startTime=since, filterPattern="REPORT"
        )["events"]
        return any("Init Duration" in e["message"] for e in events)

    wait_for(a_new_environment_ran, 60, "the function's environment started on renewed keys")
    events = logs.filter_log_events(logGroupName=f"/aws/lambda/{FUNCTION}", startTime=since)
    assert not [e for e in events["events"] if "ExpiredToken" in e["message"]]
    world.wait_healthy(FUNCTION)
