"""The IAM principals of the fleet: one per process kind, so least privilege is enforced."""

from __future__ import annotations

from enum import StrEnum


class Principal(StrEnum):
    # The emulator's bootstrap administrator: provisions the world, nothing else uses it.
    ADMIN = "admin"
    SUPERVISOR = "supervisor"
    RESOLVER = "resolver"
    CRITIC = "critic"
    WATCHDOG = "watchdog"
    MCP_SUPERVISOR = "mcp-supervisor"
    MCP_RESOLVER = "mcp-resolver"
    CONSOLE = "console"
    # A person at the keyboard: `fleet chaos`, `fleet tail`, `fleet status`.
    OPERATOR = "operator"
    # Stand-ins for AWS services the emulator lacks (chaos/): they act as those services.
    LAMBDA_RUNTIME = "lambda-runtime"
    ALARM_EVALUATOR = "alarm-evaluator"
    # EventBridge Scheduler's stand-in: the watchdog's ticks.
    SCHEDULER = "scheduler"

    @property
    def user_name(self) -> str:
        return f"fleet-{self.value}"
