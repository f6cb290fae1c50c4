"""Reading a function's reserved concurrency: the one place that knows its quirks."""

from __future__ import annotations

from typing import Any


def reserved_concurrency(lam: Any, function_name: str) -> int | None:
    """The function's reserved concurrency, or None when it has none (unreserved).

    GetFunctionConcurrency omits ReservedConcurrentExecutions when none is reserved; moto
    5.2.5 also omits it (and GetFunction omits Concurrency) for a reservation of 0 on a
    function that never had another value, so an absent key is checked against
    GetFunction's configuration before it is taken as "unreserved".
    """
    answer = lam.get_function_concurrency(FunctionName=function_name)
    if "ReservedConcurrentExecutions" in answer:
        return int(answer["ReservedConcurrentExecutions"])
    function = lam.get_function(FunctionName=function_name)
    concurrency = function.get("Concurrency", {})
    if "ReservedConcurrentExecutions" in concurrency:
        return int(concurrency["ReservedConcurrentExecutions"])
    return None
