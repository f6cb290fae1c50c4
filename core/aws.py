"""boto3 sessions and clients for a principal, against whatever endpoint the settings name.

In the embedded world each process kind has its own IAM user, issued by the world when it
comes up, and each process holds its own principal's keys only (core/credentials.py); on AWS
the standard credential chain applies (the ECS task role). This module is the only place
that knows the difference.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Literal, overload

import boto3
from botocore.config import Config

from core.aws_requests import count_requests
from core.credentials import load_held_credentials
from core.principals import Principal
from core.settings import Settings

if TYPE_CHECKING:
    # The stubs are a development dependency: types for the checker, nothing at run time.
    from mypy_boto3_cloudwatch import CloudWatchClient
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_ec2 import EC2Client
    from mypy_boto3_iam import IAMClient
    from mypy_boto3_lambda import LambdaClient
    from mypy_boto3_logs import CloudWatchLogsClient
    from mypy_boto3_sns import SNSClient
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sts import STSClient

# Short timeouts: the emulator is local, and a vanished endpoint must surface quickly as
# an error rather than hang a CLI or a worker for a minute.
CLIENT_CONFIG = Config(
    connect_timeout=3,
    read_timeout=30,
    retries={"mode": "standard", "max_attempts": 3},
)


# CloudWatch's statistic names, typed so a datapoint's value is read by a known key.
Statistic = Literal["SampleCount", "Average", "Sum", "Minimum", "Maximum"]


def session_for(principal: Principal, settings: Settings) -> boto3.Session:
    """A session signing as `principal`: in the embedded world from the keys this process
    holds (core/credentials.py), which must be that principal's; on AWS the standard chain."""
    if settings.target == "aws":
        return boto3.Session(region_name=settings.region)
    return session_from_keys(load_held_credentials(settings).keys_for(principal), settings)


def session_from_keys(keys: dict[str, str], settings: Settings) -> boto3.Session:
    return boto3.Session(
        aws_access_key_id=keys["AccessKeyId"],
        aws_secret_access_key=keys["SecretAccessKey"],
        aws_session_token=keys.get("SessionToken"),
        region_name=settings.region,
    )


def client(
    session: boto3.Session, service: str, settings: Settings, config: Config | None = None
) -> Any:
    """A client of `service`; `config` is merged over CLIENT_CONFIG (e.g. other retries)."""
    merged = CLIENT_CONFIG.merge(config) if config is not None else CLIENT_CONFIG
    # The service is named at run time, so the stubs' per-service overloads cannot apply.
    made = session.client(  # type: ignore[call-overload]
        service, endpoint_url=settings.endpoint_url, config=merged
    )
    return count_requests(made)


class Clients:
    """Lazily created clients of one principal, one per service."""

    def __init__(
        self, principal: Principal, settings: Settings, session: boto3.Session | None = None
    ):
        self.principal = principal
        self.settings = settings
        self._session = session
        self._clients: dict[str, Any] = {}
        # Handler threads share these; a boto3 session must not create clients concurrently.
        self._lock = threading.Lock()

    @property
    def session(self) -> boto3.Session:
        if self._session is None:
            self._session = session_for(self.principal, self.settings)
        return self._session

    @overload
    def __call__(self, service: Literal["sqs"]) -> SQSClient: ...
    @overload
    def __call__(self, service: Literal["sns"]) -> SNSClient: ...
    @overload
    def __call__(self, service: Literal["dynamodb"]) -> DynamoDBClient: ...
    @overload
    def __call__(self, service: Literal["cloudwatch"]) -> CloudWatchClient: ...
    @overload
    def __call__(self, service: Literal["logs"]) -> CloudWatchLogsClient: ...
    @overload
    def __call__(self, service: Literal["lambda"]) -> LambdaClient: ...
    @overload
    def __call__(self, service: Literal["iam"]) -> IAMClient: ...
    @overload
    def __call__(self, service: Literal["ec2"]) -> EC2Client: ...
    @overload
    def __call__(self, service: Literal["sts"]) -> STSClient: ...
    @overload
    def __call__(self, service: str) -> Any: ...
    def __call__(self, service: str) -> Any:
        with self._lock:
            if service not in self._clients:
                self._clients[service] = client(self.session, service, self.settings)
            return self._clients[service]
