"""The stack's configuration (`Pulumi.<stack>.yaml`), typed, and the fleet settings it gives
the tasks.

Every key is optional; the defaults make a small fleet guarding the demo workload. The
tasks get the same `Settings` the embedded world uses, with AWS values in place of the
emulator's (`AWS_SETTINGS`), then whatever the stack's `settings` map says.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from access.policies import PROTECTED_PREFIX, ProtectedResources
from core.settings import Settings
from workload.spec import FUNCTION_BASE_NAME

# The name every resource and output is known by, and the Pulumi config namespace.
PROJECT = "incident-fleet"

# How the fleet runs on AWS, where it differs from the embedded default.
AWS_SETTINGS: dict[str, Any] = {
    "target": "aws",
    "model": "bedrock",
    # Hosted model turns take seconds: a longer agent deadline, and a fallback to the
    # offline runbooks rather than an incident with no diagnosis.
    "agent_deadline_s": 90.0,
    "worker_wait_time_s": 20,
    # The workload runs once a minute and CloudWatch's periods are a minute long, so
    # verification (two clean runs and the alarms back to OK) takes minutes, not seconds.
    "target_interval_s": 60.0,
    "alarm_period_s": 60,
    "verify_timeout_s": 240.0,
    # Above every stage's handler deadline (the resolver's: verification + an execution).
    "queue_visibility_timeout_s": 300,
    "worker_grace_s": 60.0,
    "watchdog_tick_s": 60.0,
    "stale_after_s": 1800,
    # The MCP servers listen on every interface of their task; Service Connect names them.
    "mcp_host": "0.0.0.0",
    "mcp_supervisor_url": "http://mcp-supervisor:8080",
    "mcp_resolver_url": "http://mcp-resolver:8081",
    "mcp_allowed_hosts": ["mcp-supervisor:8080", "mcp-resolver:8081"],
}


class StackSettings(Settings):
    """Settings from the stack alone: the deploying shell's FLEET_ variables must not leak
    into what the tasks run with."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


class StackConfig(BaseModel, frozen=True):
    model_config = {"extra": "forbid"}

    stack: str
    region: str
    account_id: str = Field(pattern=r"^\d{12}$")
    # Production stacks keep their tables (deletion protection) and their secret's
    # recovery window; others tear down cleanly.
    production: bool = False
    # The container image; unset, the stack's own ECR repository at :latest.
    image: str | None = None
    vpc_cidr: str = "10.42.0.0/16"
    availability_zones: int = Field(default=2, ge=2, le=3)
    task_cpu: int = 512
    task_memory_mb: int = 1024
    # Worker services scale between these on backlog per task (visible messages ÷ tasks).
    worker_min_tasks: int = Field(default=1, ge=1)
    worker_max_tasks: int = Field(default=4, ge=1)
    backlog_per_task: float = Field(default=10.0, gt=0)
    mcp_tasks: int = Field(default=1, ge=1)
    watchdog_every_minutes: int = Field(default=1, ge=1)
    # The demo workload (data-processor); off, the fleet guards `protected_functions`.
    demo_workload: bool = True
    protected_functions: list[str] = []
    # Their execution roles (names); the program looks them up when this is empty.
    protected_roles: list[str] = []
    # Where people are paged (incident-approvals): an e-mail subscription, if given.
    pager_email: str | None = None
    log_retention_days: int = 30
    # The age of a stage's oldest message (seconds) that alarms.
    oldest_message_alarm_s: int = Field(default=900, ge=60)
    # Fleet settings (their names in core/settings.py) for every task.
    settings: dict[str, Any] = {}

    @model_validator(mode="after")
    def _guards_something(self) -> StackConfig:
        if not self.demo_workload and not self.protected_functions:
            raise ValueError(
                "demo_workload is off and protected_functions is empty: the fleet would "
                "guard nothing; name your functions in protected_functions"
            )
        if self.worker_max_tasks < self.worker_min_tasks:
            raise ValueError("worker_max_tasks must be at least worker_min_tasks")
        unknown = sorted(set(self.settings) - set(Settings.model_fields))
        if unknown:  # Settings ignores what it does not know; a stack must not
            raise ValueError(f"unknown fleet settings {unknown}: see core/settings.py")
        return self

    def fleet_settings(self) -> Settings:
        # A setting read from a variable of its own name (OTEL_EXPORTER_OTLP_ENDPOINT) is
        # given by that name.
        named = {
            str(Settings.model_fields[k].validation_alias or k): v for k, v in self.settings.items()
        }
        values = {
            **AWS_SETTINGS,
            **named,
            "AWS_REGION": self.region,
            "account_id": self.account_id,
        }
        return StackSettings(**values)

    def otlp_port(self) -> int | None:
        """The port spans leave by, when the stack names an OTLP endpoint."""
        settings = self.fleet_settings()
        url = settings.otel_exporter_otlp_traces_endpoint or settings.otel_exporter_otlp_endpoint
        if not url or settings.otel_sdk_disabled:
            return None
        parsed = urlsplit(url)
        return parsed.port or (443 if parsed.scheme == "https" else 80)

    def function_names(self) -> list[str]:
        """The functions the fleet guards (and alarms on)."""
        demo = [FUNCTION_BASE_NAME] if self.demo_workload else []
        return [*demo, *self.protected_functions]

    def protected(self, roles: list[str]) -> ProtectedResources:
        """What the fleet may read and repair: the demo's copies and the named functions
        with their execution roles (`roles`, looked up or configured)."""
        functions, role_names = list(self.protected_functions), list(roles)
        if self.demo_workload:
            functions.insert(0, f"{PROTECTED_PREFIX}*")
            role_names.insert(0, f"{PROTECTED_PREFIX}*")
        return ProtectedResources(functions=tuple(functions), roles=tuple(role_names))


def stack_config(raw: dict[str, Any], stack: str, region: str, account_id: str) -> StackConfig:
    """The `incident-fleet:*` keys of a stack (snake_case or camelCase) as a StackConfig."""
    values = {_snake(k): v for k, v in raw.items()}
    return StackConfig(stack=stack, region=region, account_id=account_id, **values)


def _snake(key: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in key).lstrip("_")


def camel(field: str) -> str:
    """A StackConfig field's key in Pulumi.<stack>.yaml (incident-fleet:<camelCase>)."""
    head, *rest = field.split("_")
    return head + "".join(w.capitalize() for w in rest)
