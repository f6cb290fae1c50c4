"""Tools fail as tool errors the agent can read, never as a server crash."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from botocore.exceptions import BotoCoreError, ClientError
from mcp.server.fastmcp.exceptions import ToolError

from core.aws_errors import error_code, error_message

T = TypeVar("T")


def aws_tool(fn: Callable[..., T]) -> Callable[..., T]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        try:
            return fn(*args, **kwargs)
        except ClientError as exc:
            raise ToolError(
                f"{exc.operation_name} failed: {error_code(exc)}: {error_message(exc)[:300]}"
            ) from None
        except BotoCoreError as exc:
            raise ToolError(f"AWS unreachable or refused the request: {exc}"[:400]) from None

    return wrapper
