"""A function's versions and the alias its scheduled invocations go through.

The workload is invoked through the alias `live` (the embedded world's schedule, and
EventBridge on AWS, name `function:NAME:live`). Deploying points it at `$LATEST`, so a
configuration change to `$LATEST` changes what runs; a deploy that pins a published
version moves the alias, and moving it back is a rollback.
"""

from __future__ import annotations

from typing import Any

LIVE_ALIAS = "live"
LATEST = "$LATEST"


def live_target(lam: Any, function_name: str) -> str | None:
    """The version `live` points to ("$LATEST" or a number), or None if there is no alias."""
    try:
        alias = lam.get_alias(FunctionName=function_name, Name=LIVE_ALIAS)
    except lam.exceptions.ResourceNotFoundException:
        return None
    return str(alias["FunctionVersion"])


def newest_published_version(lam: Any, function_name: str) -> str | None:
    """The highest published version number, or None if none was ever published."""
    numbers = [
        int(v["Version"])
        for page in lam.get_paginator("list_versions_by_function").paginate(
            FunctionName=function_name
        )
        for v in page["Versions"]
        if v["Version"] != LATEST
    ]
    return str(max(numbers)) if numbers else None
