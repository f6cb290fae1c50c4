"""A function's versions and the alias its scheduled invocations go through.

The workload is invoked through the alias `live` (the embedded world's schedule, and
EventBridge on AWS, name `function:NAME:live`). Deploying points it at `$LATEST`, so a
configuration change to `$LATEST` changes what runs; a deploy that pins a published
version moves the alias, and moving it back is a rollback.

A published version is immutable (its code and its configuration as they were at
publishing), so "version N runs package X" stays true; `$LATEST` runs whatever was last
uploaded.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel

LIVE_ALIAS = "live"
LATEST = "$LATEST"


class FunctionVersions(BaseModel):
    """Where `live` points and the package each version runs, as read now."""

    live_target: str | None  # None: the function has no alias `live`
    code_by_version: dict[str, str]  # CodeSha256 by version, "$LATEST" included


def live_target(lam: Any, function_name: str) -> str | None:
    """The version `live` points to ("$LATEST" or a number), or None if there is no alias."""
    try:
        alias = lam.get_alias(FunctionName=function_name, Name=LIVE_ALIAS)
    except lam.exceptions.ResourceNotFoundException:
        return None
    return str(alias["FunctionVersion"])


def code_by_version(lam: Any, function_name: str) -> dict[str, str]:
    """The CodeSha256 of the package each version runs: "$LATEST" and every published one."""
    return {
        str(v["Version"]): str(v["CodeSha256"])
        for page in lam.get_paginator("list_versions_by_function").paginate(
            FunctionName=function_name
        )
        for v in page["Versions"]
    }


def newest_published(versions: Iterable[str]) -> str | None:
    """The highest published version number among `versions`, or None if there is none."""
    numbers = [int(v) for v in versions if v != LATEST]
    return str(max(numbers)) if numbers else None


def read_versions(lam: Any, function_name: str) -> FunctionVersions:
    return FunctionVersions(
        live_target=live_target(lam, function_name),
        code_by_version=code_by_version(lam, function_name),
    )
