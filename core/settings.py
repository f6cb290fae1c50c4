"""Every setting of the fleet, read once from the environment.

Nothing else in the code base reads ``os.environ`` for configuration: it takes a
``Settings`` (usually from :func:`get_settings`).
"""

from __future__ import annotations

import json
import math
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

import pydantic_settings
from pydantic import Field, ValidationError, field_validator
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from core.errors import UsageError

Target = Literal["embedded", "aws"]
ENV_PREFIX = "FLEET_"
# The stage workers, by the names their queues have (queues.topology.Stage, a floor above).
WORKER_STAGES = ("supervisor", "resolver", "critic", "watchdog")
PositiveSeconds = Annotated[float, Field(gt=0)]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")

    # Where the fleet runs. "embedded" (the default) is moto on 127.0.0.1 with per-process
    # credentials issued by the world; "aws" uses the standard boto3 credential chain.
    target: Target = "embedded"
    region: str = Field(default="ca-central-1", validation_alias="AWS_REGION")
    # The account the fleet's ARNs name: moto's default account in the embedded world.
    account_id: str = Field(default="123456789012", pattern=r"^\d{12}$")
    # boto3 honours AWS_ENDPOINT_URL itself; we read it here only to pass it on explicitly.
    aws_endpoint_url: str | None = Field(default=None, validation_alias="AWS_ENDPOINT_URL")

    emulator_host: str = "127.0.0.1"
    emulator_port: int = 5000
    # `fleet up` waits for each process it starts while that process lives and makes
    # progress (CPU time, or a log line; emulation/readiness.py), however slow a busy machine
    # makes it: one alive without either for this long is stuck, and fails the start.
    child_stall_s: float = Field(default=60.0, gt=0)
    # `fleet up` forks the workers, MCP servers and console from one process that has
    # imported what they share (emulation/preloader.py), on Linux; false starts each anew.
    preload_services: bool = True
    # Where a running embedded world keeps its pid file, issued credentials and logs.
    state_dir: Path = Path(".fleet")
    # The file of the AWS keys this process holds in the embedded world (core/credentials.py):
    # `fleet up` hands each child one holding its own principal's keys only. Unset: the
    # operator's, as a command at a shell acts for the person at it.
    credentials_file: Path | None = None

    # The protected workload.
    target_count: int = Field(default=1, ge=1, le=50)
    target_interval_s: float = Field(default=1.0, gt=0)
    # How long one run of the workload works; `chaos timeout --seconds 1` must cut it short.
    workload_work_s: float = Field(default=1.2, ge=0)
    workload_timeout_s: int = Field(default=10, ge=1)

    # Alarms: the local evaluator's view of CloudWatch.
    alarm_period_s: int = Field(default=10, ge=10)
    alarm_poll_s: float = Field(default=1.0, gt=0)

    # CloudTrail's event history in the embedded world: how long after a call its event
    # appears (AWS: "an average of about 5 minutes", never at once). Shorter here so a
    # test's or a game day's changes are in the trail within its own minute; 300 is AWS's.
    trail_delivery_delay_s: float = Field(default=30.0, gt=0)

    # Queues.
    queue_max_receive_count: int = Field(default=5, ge=2)
    queue_visibility_timeout_s: int = Field(default=60, ge=1)
    queue_retention_s: int = Field(default=4 * 24 * 3600)
    dlq_retention_s: int = Field(default=14 * 24 * 3600)

    tail_refresh_s: float = Field(default=1.0, gt=0)
    # The DLQ mover holds a message this long while copying it (back in the DLQ after it,
    # if the mover dies).
    dlq_move_visibility_s: int = Field(default=60, ge=1, le=43200)

    # The worker runtime (queues/consumer.py).
    worker_wait_time_s: int = Field(default=20, ge=0, le=20)
    worker_batch_size: int = Field(default=10, ge=1, le=10)
    worker_concurrency: int = Field(default=4, ge=1, le=64)
    worker_grace_s: float = Field(default=25.0, ge=0)
    # How long one message may be in a worker's hands before it is handed back as failed
    # (queues/time_limit.py). 5 minutes: above the longest legitimate run (an agent's hard
    # timeout, 105 s, plus waits for the model quota, which its deadline does not count; a
    # resolver's lease wait, execution and verification, about 3 minutes), and half of
    # `stale_after_s`, so a hung step is retried well before the watchdog escalates its
    # incident as stuck. Checked at each heartbeat (visibility/3): it may overrun by that.
    worker_time_limit_s: float = Field(default=300.0, gt=0)
    # Per stage, over the default: a JSON object of stage to seconds, e.g. {"watchdog": 60}.
    worker_stage_time_limits_s: Annotated[dict[str, PositiveSeconds], NoDecode] = {}
    # A handler past its limit may be stuck where no exception reaches it (a socket read):
    # its slot is written off. With this many slots stuck the worker hands back what it
    # holds and exits non-zero, to be restarted with fresh connections. Unset: half the
    # concurrency, rounded up - half is where a worker does less than half its work, and
    # more threads stuck the same way point to the process (a wedged connection pool), not
    # to one message; with one slot, that slot.
    worker_stuck_slots_limit: int | None = Field(default=None, ge=1)
    # Backoff of a retried message, by its receive count: base * 2^(n-1), capped.
    retry_backoff_base_s: float = Field(default=2.0, ge=0)
    retry_backoff_max_s: int = Field(default=300, ge=0, le=43200)
    # A dependency that is away (an MCP server restarting): try again no sooner than this,
    # so an outage shorter than (maxReceiveCount - 1) x this costs nothing but time.
    dependency_retry_s: float = Field(default=15.0, ge=0, le=43200)
    runtime_metrics_flush_s: float = Field(default=10.0, gt=0)

    # The MCP tool servers.
    mcp_host: str = "127.0.0.1"
    mcp_supervisor_port: int = 8080
    mcp_resolver_port: int = 8081
    # The key every MCP request must carry; unset, the embedded world generates one and
    # keeps it in the state directory (see mcp_api_key_file).
    mcp_api_key: str | None = Field(default=None, validation_alias="MCP_API_KEY", repr=False)

    # Models (workers/agents/models.py): "offline" (the deterministic runbook model),
    # "bedrock", or any model string LangChain's init_chat_model accepts.
    model: str = "offline"
    bedrock_model_id: str = "us.amazon.nova-2-lite-v1:0"
    bedrock_region: str = "ca-central-1"
    model_max_output_tokens: int = Field(default=2048, ge=64)
    model_fallback_offline: bool = True
    # Seconds the offline model takes per turn: 0 answers at once; ~1 behaves like a hosted
    # model (the fault-survival tests use it to land a kill inside an investigation).
    offline_model_latency_s: float = Field(default=0.0, ge=0)
    # The fleet's share of the account's model quota (workers/agents/model_quota.py): every
    # model call of every worker process takes from one bucket in DynamoDB first, the
    # offline model's included. Bedrock's quotas are per account, Region and model, so set
    # these to the account's "On-demand InvokeModel tokens (requests) per minute for <model>"
    # less what else uses that model. The defaults are a modest on-demand quota.
    model_requests_per_minute: int = Field(default=250, ge=1)
    model_tokens_per_minute: int = Field(default=500_000, ge=1)
    # The share of a minute's quota that may go at once; the bucket refills at the rest over
    # a minute, so no 60-second window ever sees more than the quota.
    model_quota_burst: float = Field(default=0.5, gt=0, lt=1)
    # How long a call waits for room before it counts as throttled. A throttled call (this
    # quota's refusal, or Bedrock's ThrottlingException) is tried again this many times,
    # backing off exponentially from the base, before the offline fallback answers (or, with
    # none, the step is handed back to try later). Time waiting for the quota does not count
    # against an agent's deadline.
    model_quota_wait_s: float = Field(default=20.0, gt=0)
    model_throttle_retries: int = Field(default=3, ge=0, le=10)
    model_retry_base_s: float = Field(default=1.0, ge=0)
    # What a token costs, in USD per 1,000, input and output apart (Amazon Nova 2 Lite's
    # on-demand list price when this was written): the estimated cost of each incident, in
    # its report, its postmortem and `make bench`, is its tokens at these prices.
    model_input_price_per_1k: float = Field(default=0.0003, ge=0)
    model_output_price_per_1k: float = Field(default=0.0025, ge=0)
    # Each agent run's budget: tool calls, tokens (prompt + completion) and wall time.
    agent_max_tool_calls: int = Field(default=12, ge=1, le=50)
    agent_token_budget: int = Field(default=60_000, ge=1000)
    agent_deadline_s: float = Field(default=90.0, gt=0)
    # Where the workers reach the MCP servers; unset: http://{mcp_host}:{port}.
    mcp_supervisor_url: str | None = None
    mcp_resolver_url: str | None = None
    # How long a tool call waits for its answer. A call sent after the server went away
    # would otherwise wait for ever: the client fails only the calls pending at the loss.
    mcp_call_timeout_s: float = Field(default=60.0, gt=0)
    # More Host values the MCP servers accept ("name:port"), beside their own address: the
    # names the workers reach them by on AWS (ECS Service Connect).
    # NoDecode: a malformed value is a validation error of this field (named, one line), not
    # pydantic-settings' own parse error (see _json_list).
    mcp_allowed_hosts: Annotated[list[str], NoDecode] = []

    # The critic: true sends every proposal to a person, even one that restores the
    # baseline exactly. A proposal with more calls than this is never auto-approved.
    require_human_approval: bool = False
    critic_max_auto_calls: int = Field(default=4, ge=1)
    approval_ttl_s: int = Field(default=900, ge=10)

    # The resolver's verification after a fix: this many consecutive successful runs of
    # the workload, the alarms back to OK and the state at the baseline, within the timeout.
    verify_successful_runs: int = Field(default=2, ge=1)
    verify_timeout_s: float = Field(default=60.0, gt=0)
    # After verification (RECOVERED), the incident is watched this long (the alarms back to
    # OK, no run failing) before it is RESOLVED; a relapse, or a function still failing
    # after a fix, starts another round in the same incident, up to max_rounds.
    watch_window_s: float = Field(default=30.0, ge=0)
    # The watch looks this often, each look a delayed message to the resolver's own queue
    # (no worker waits in between); a relapse is seen within this. At most half the lease,
    # which each look renews (`watch_every_s`).
    watch_look_s: float = Field(default=5.0, ge=1, le=900)
    max_rounds: int = Field(default=3, ge=1, le=10)
    # One remediation per resource at a time: the resolver holds the resource's lease from
    # its first call to the end of verification and renews it as it goes; a holder that
    # dies (kill -9) frees the resource when this runs out.
    remediation_lease_s: float = Field(default=30.0, ge=5)

    # The watchdog: how often it ticks (the local scheduler; EventBridge Scheduler on AWS)
    # and how long an incident may sit in a working state before it is escalated.
    watchdog_tick_s: float = Field(default=5.0, gt=0)
    stale_after_s: int = Field(default=600, ge=10)

    # Whether `fleet up` starts the four stage workers (and the watchdog's scheduler), and
    # how many processes of each (like an ECS service's task count).
    run_workers: bool = True
    workers_per_stage: int = Field(default=1, ge=1, le=8)

    # The console (console/): where it listens, and the token every page and action needs
    # (CONSOLE_TOKEN; unset, one is generated and printed at start).
    console_host: str = "127.0.0.1"
    console_port: int = 8088
    console_token: str | None = Field(default=None, validation_alias="CONSOLE_TOKEN", repr=False)
    console_refresh_s: float = Field(default=2.0, gt=0)
    # How far back the queues page charts each queue's and DLQ's depth (sampled by the
    # console every console_refresh_s while it runs).
    console_chart_minutes: int = Field(default=10, ge=1, le=120)
    # The console is reached over HTTPS (a TLS proxy in front): its session cookie is Secure.
    console_https: bool = False

    # The incident store: alerts for one resource and fault signature within this window
    # belong to one incident.
    incident_window_s: int = Field(default=1800, ge=60)

    # Set by `fleet up` for its children: the process whose death means "stop too".
    launcher_pid: int | None = None

    # Traces (core/tracing.py), by OpenTelemetry's own variables: an OTLP endpoint sends
    # them there (the SDK reads the rest of OTEL_EXPORTER_OTLP_*), none writes them under
    # `trace_dir`; OTEL_SDK_DISABLED=true turns tracing off.
    otel_exporter_otlp_endpoint: str | None = Field(
        default=None, validation_alias="OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    otel_exporter_otlp_traces_endpoint: str | None = Field(
        default=None, validation_alias="OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
    )
    otel_sdk_disabled: bool = Field(default=False, validation_alias="OTEL_SDK_DISABLED")
    # How often spans are exported (ms); unset, every 1 s to the local file (the SDK's own
    # 5 s to an OTLP endpoint).
    otel_bsp_schedule_delay: int | None = Field(
        default=None, validation_alias="OTEL_BSP_SCHEDULE_DELAY"
    )

    @property
    def watch_every_s(self) -> float:
        """How often the watch looks: `watch_look_s`, at most half the lease each look
        renews, so the lease outlives the gap between two looks."""
        return min(self.watch_look_s, self.remediation_lease_s / 2)

    @field_validator("mcp_allowed_hosts", mode="before")
    @classmethod
    def _json_list(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        try:
            return json.loads(value)
        except ValueError:
            raise ValueError('expected a JSON list, e.g. ["mcp-supervisor:8080"]') from None

    @field_validator("worker_stage_time_limits_s", mode="before")
    @classmethod
    def _stage_mapping(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                raise ValueError('expected a JSON object, e.g. {"resolver": 600}') from None
        if isinstance(value, dict):
            unknown = sorted(set(value) - set(WORKER_STAGES))
            if unknown:
                raise ValueError(
                    f"no such stage: {', '.join(map(str, unknown))} "
                    f"(the stages: {', '.join(WORKER_STAGES)})"
                )
        return value

    def worker_time_limit_for(self, stage: str) -> float:
        """How long one message of this stage may be in a worker's hands."""
        return self.worker_stage_time_limits_s.get(stage, self.worker_time_limit_s)

    @property
    def stuck_slots_limit(self) -> int:
        """How many stuck slots make a worker give up: the setting, or half the concurrency
        rounded up; never more than the concurrency (all stuck, it can do nothing)."""
        configured = self.worker_stuck_slots_limit or math.ceil(self.worker_concurrency / 2)
        return min(configured, self.worker_concurrency)

    @property
    def agent_hard_timeout_s(self) -> float:
        """When an agent run is abandoned even if the budget's own deadline check missed."""
        return self.agent_deadline_s + 15

    def explicit_environment(self) -> dict[str, str]:
        """Every setting given explicitly (not defaulted) as its FLEET_ variable.

        Settings read through another name (AWS_REGION, MCP_API_KEY, CONSOLE_TOKEN) are left
        out: the caller decides how those travel (a secret is never a plain variable). So is
        the credentials file: which keys a process holds is handed to each, never inherited."""
        env = {}
        for name in sorted(self.model_fields_set - {"credentials_file"}):
            value = getattr(self, name)
            if value is None or Settings.model_fields[name].validation_alias is not None:
                continue
            text = json.dumps(value) if isinstance(value, list | dict) else str(value)
            env[environment_variable(name)] = text
        return env

    @property
    def endpoint_url(self) -> str | None:
        """The AWS endpoint every client uses: the emulator unless told otherwise."""
        if self.aws_endpoint_url:
            return self.aws_endpoint_url
        if self.target == "embedded":
            return f"http://{self.emulator_host}:{self.emulator_port}"
        return None

    def mcp_url(self, server: str) -> str:
        """The SSE endpoint of an MCP server ("supervisor" or "resolver")."""
        override = {"supervisor": self.mcp_supervisor_url, "resolver": self.mcp_resolver_url}
        port = {"supervisor": self.mcp_supervisor_port, "resolver": self.mcp_resolver_port}
        base = override[server] or f"http://{self.mcp_host}:{port[server]}"
        return base.rstrip("/") + "/sse"

    def issued_credentials_file(self, principal: str) -> Path:
        """The file of one principal's own keys, as `fleet up` hands it to that principal's
        processes."""
        return self.state_dir / "credentials" / f"{principal}.json"

    @property
    def launcher_credentials_file(self) -> Path:
        """Every principal's keys, the admin's among them: the launcher's and harnesses' alone
        (no child is told of it)."""
        return self.state_dir / "launcher-credentials.json"

    @property
    def world_file(self) -> Path:
        return self.state_dir / "world.json"

    @property
    def mcp_api_key_file(self) -> Path:
        return self.state_dir / "mcp-api-key"

    def resolved_mcp_api_key(self) -> str:
        """MCP_API_KEY, or the key the embedded world generated."""
        if self.mcp_api_key:
            return self.mcp_api_key
        try:
            return self.mcp_api_key_file.read_text().strip()
        except FileNotFoundError:
            raise FileNotFoundError(
                f"no MCP API key: set MCP_API_KEY or start the world (`fleet up`), which "
                f"writes one to {self.mcp_api_key_file}"
            ) from None

    @property
    def console_token_file(self) -> Path:
        return self.state_dir / "console-token"

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def trace_dir(self) -> Path:
        """Where each process writes its spans when no OTLP endpoint is set."""
        return self.state_dir / "traces"

    @property
    def otlp_configured(self) -> bool:
        return bool(self.otel_exporter_otlp_endpoint or self.otel_exporter_otlp_traces_endpoint)


def environment_variable(field: str) -> str:
    """The environment variable a setting is read from (FLEET_..., or its own name)."""
    info = Settings.model_fields.get(field)
    if info is not None and isinstance(info.validation_alias, str):
        return info.validation_alias
    return f"{ENV_PREFIX}{field.upper()}"


class InvalidSettings(UsageError):
    """Settings from the environment that do not validate: one line per bad variable."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems

    @classmethod
    def from_validation_error(cls, error: ValidationError) -> InvalidSettings:
        return cls([_describe(e) for e in error.errors()])


# What a value should have been, by pydantic error type (filled from the error's context),
# in words a person reads at a shell.
_EXPECTED = {
    "int_parsing": "an integer",
    "int_type": "an integer",
    "int_from_float": "an integer",
    "float_parsing": "a number",
    "float_type": "a number",
    "bool_parsing": "true or false (also 1/0, yes/no, on/off)",
    "bool_type": "true or false (also 1/0, yes/no, on/off)",
    "string_type": "a string",
    "list_type": "a JSON list",
    "dict_type": "a JSON object",
    "greater_than": "a value greater than {gt}",
    "greater_than_equal": "a value of at least {ge}",
    "less_than": "a value less than {lt}",
    "less_than_equal": "a value of at most {le}",
    "literal_error": "{expected}",
    "string_pattern_mismatch": "a value matching {pattern}",
}


def _expected(error: ErrorDetails) -> str:
    ctx = error.get("ctx") or {}
    if error["type"] in _EXPECTED:
        limits = {k: f"{v:g}" if isinstance(v, float) else v for k, v in ctx.items()}
        return "expected " + _EXPECTED[error["type"]].format(**limits)
    if error["type"] == "value_error" and "error" in ctx:  # a validator's own words
        return str(ctx["error"])
    return error["msg"].replace("Input should be ", "expected ", 1)


def _describe(error: ErrorDetails) -> str:
    """`FLEET_EMULATOR_PORT='abc' is not valid: expected an integer`."""
    if not error["loc"]:  # a check across settings: no one variable to name
        return f"the settings are not valid: {_expected(error)}"
    field, *inner = error["loc"]
    where = environment_variable(str(field)) + "".join(f"[{i}]" for i in inner)
    return f"{where}={error['input']!r} is not valid: {_expected(error)}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The settings from the environment; InvalidSettings names every bad variable."""
    try:
        return Settings()
    except ValidationError as exc:
        raise InvalidSettings.from_validation_error(exc) from None
    except pydantic_settings.SettingsError as exc:
        # A value pydantic-settings could not even decode (a complex field's JSON).
        cause = f": {exc.__cause__}" if exc.__cause__ else ""
        raise InvalidSettings([f"{exc}{cause}"]) from None
