"""The protected functions a command names (`--function`), checked against the deployed ones."""

from __future__ import annotations

from core.aws import Clients
from core.errors import UsageError
from core.principals import Principal
from core.protection import protected_functions
from core.settings import Settings
from workload.spec import FUNCTION_BASE_NAME, FunctionSpec, spec_for


def chosen_specs(settings: Settings, function: str | None, every: bool) -> list[FunctionSpec]:
    """`function`, or without one every protected function (`every`) or data-processor."""
    deployed = protected_functions(Clients(Principal.OPERATOR, settings)("lambda"))
    names = (deployed if every else [FUNCTION_BASE_NAME]) if function is None else [function]
    for name in names:
        if name not in deployed:
            raise UsageError(
                f"unknown function {name!r}; protected functions: {', '.join(deployed) or 'none'}"
            )
    return [spec_for(name, settings) for name in names]
