"""How a function is marked protected, and which of its environment values may be shown.

Tags on the function itself, so the same marks work for the demo workload and for a
user's own functions on AWS.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from core.aws_errors import is_access_denied

if TYPE_CHECKING:
    from mypy_boto3_lambda import LambdaClient

PROTECTED_TAG = "fleet-protected"
# Space-separated names of environment variables whose values the diagnostic tools may
# show; every other value is redacted.
SAFE_ENV_TAG = "fleet-safe-env"


def protected_functions(lam: LambdaClient) -> list[str]:
    """The account's functions tagged as protected, as far as this principal may see: an
    account holds other functions too, and least privilege lets it read only its own."""
    names = []
    for page in lam.get_paginator("list_functions").paginate():
        for f in page["Functions"]:
            try:
                tags = lam.list_tags(Resource=f["FunctionArn"]).get("Tags", {})
            except ClientError as exc:
                if not is_access_denied(exc):
                    raise
                continue  # its tags are not this principal's to read: not one it guards
            if tags.get(PROTECTED_TAG) == "true":
                names.append(f["FunctionName"])
    return sorted(names)
