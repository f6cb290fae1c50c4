"""Retrying transient AWS errors (throttling, 5xx, lost connections) with bounded backoff."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)
from tenacity import retry, retry_if_exception, stop_after_attempt, wait_exponential_jitter

T = TypeVar("T")

THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestLimitExceeded",
        "ProvisionedThroughputExceededException",
        "TooManyRequestsException",
        "RequestThrottledException",
        "SlowDown",
        "ServiceUnavailable",
        "InternalError",
        "InternalFailure",
        "InternalServerError",
    }
)
CONNECTION_ERRORS = (
    EndpointConnectionError,
    ConnectionClosedError,
    ConnectTimeoutError,
    ReadTimeoutError,
)


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, CONNECTION_ERRORS):
        return True
    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return exc.response.get("Error", {}).get("Code") in THROTTLING_CODES or status >= 500
    return False


def is_connection_lost(exc: BaseException) -> bool:
    return isinstance(exc, CONNECTION_ERRORS)


# botocore already retries a few times; this adds a longer, bounded patience on top.
aws_retry: Callable[[Callable[..., T]], Callable[..., T]] = retry(
    retry=retry_if_exception(is_transient),
    wait=wait_exponential_jitter(multiplier=0.2, max=5.0),
    stop=stop_after_attempt(4),
    reraise=True,
)


def call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    return aws_retry(fn)(*args, **kwargs)
