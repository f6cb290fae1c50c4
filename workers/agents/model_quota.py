"""One model quota for the whole fleet: every model call of every worker process first takes
its share of one bucket in DynamoDB (requests and tokens per minute, sized in the settings
to the account's Bedrock quota), and a throttled call is tried again, backing off, before
the offline fallback answers.

Agent middleware, in `run_agent`'s order (outermost first): the budget, the fallback to the
offline model, `ThrottleRetry`, `ModelQuota`, then the model call's span. So a call that
waited has a span that starts when the model was called, the fallback runs only once the
retries are spent, and the fallback's own calls pass the quota by (the offline model is
local and free, and it answers because the quota or Bedrock would not). The agent's own
model is limited whichever it is, the offline runbooks included: the embedded world and
its tests exercise the quota exactly as Bedrock would be.

A call reserves what Bedrock counts against its quota when the call starts: one request,
and the input (estimated as the offline model counts, ~4 characters a token) plus the most
it may write (`model_max_output_tokens`, the max_tokens Bedrock is sent). When the call
ends, the reservation is settled with the tokens the model reported, and the rest comes
back to the bucket.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import structlog
from botocore.exceptions import ClientError
from langchain.agents.middleware import AgentMiddleware, ModelRequest, ModelResponse
from langchain_core.exceptions import ModelRateLimitError
from langchain_core.language_models import BaseChatModel
from langchain_core.utils.function_calling import convert_to_openai_tool
from opentelemetry import trace
from opentelemetry.instrumentation.utils import suppress_instrumentation
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from core.errors import FleetError, described
from core.settings import Settings
from core.shared_bucket import (
    DynamoBucketStore,
    NoRoom,
    Quota,
    Reservation,
    SharedTokenBucket,
)
from workers.agents.model_spans import reported_usage
from workers.agents.offline_model import estimate_tokens, text_of

log = structlog.get_logger()

# The fleet's bucket of model calls in the rate-limits table, and its two dimensions.
MODEL_CALLS = "model-calls"
REQUESTS = "requests"
TOKENS = "tokens"
# What Bedrock answers when a call is refused for load (a retry may succeed); any
# provider's rate-limit error (LangChain's ModelRateLimitError) counts too.
PROVIDER_THROTTLES = frozenset(
    {"ThrottlingException", "ServiceUnavailableException", "ModelNotReadyException"}
)
# The longest pause between two tries of a throttled call.
BACKOFF_MAX_S = 30.0
# A wait shorter than this is the bucket's own round trip, not worth an event on the span.
NOTABLE_WAIT_S = 0.05

Waited = Callable[[float], None]


class ModelRateLimited(FleetError):
    """The fleet's model quota had no room for a call within the wait (a throttle of our own)."""


class ModelQuotaTooSmall(FleetError):
    """A call's reservation is more than the bucket can ever hold: a setting to change."""


class ModelQuotaExhausted(FleetError):
    """Every try of a model call was throttled, and nothing fell back: the step waits and is
    tried again later, as when a dependency is away."""


def model_quotas(settings: Settings) -> dict[str, Quota]:
    return {
        REQUESTS: Quota(settings.model_requests_per_minute, settings.model_quota_burst),
        # Reserved from an estimate, settled with what the model reported using.
        TOKENS: Quota(settings.model_tokens_per_minute, settings.model_quota_burst, settled=True),
    }


def model_bucket(dynamodb: Any, settings: Settings) -> SharedTokenBucket:
    """The bucket every worker process takes its model calls from."""
    return SharedTokenBucket(DynamoBucketStore(dynamodb), MODEL_CALLS, model_quotas(settings))


def is_throttle(exc: BaseException) -> bool:
    """A refusal for load, worth another try after a pause."""
    if isinstance(exc, ModelRateLimited | ModelRateLimitError):
        return True
    if isinstance(exc, ClientError):
        return exc.response.get("Error", {}).get("Code") in PROVIDER_THROTTLES
    return False


def request_tokens(request: ModelRequest) -> int:
    """What a call sends, estimated as the offline model counts it: the system prompt, each
    message, and the tools' schemas (which the offline model does not count, and Bedrock
    does). Bedrock's own count may differ; the settlement uses what it reports."""
    system = [request.system_message] if request.system_message else []
    sent = sum(estimate_tokens(text_of(m)) for m in [*system, *request.messages])
    if request.tools:
        schemas = [t if isinstance(t, dict) else convert_to_openai_tool(t) for t in request.tools]
        sent += estimate_tokens(json.dumps(schemas, default=str))
    return sent


def _never_waited(_seconds: float) -> None:
    pass


class ModelQuota(AgentMiddleware):
    """Each call of the agent's own model waits for its share of the fleet's quota (at most
    `model_quota_wait_s`; then it is throttled: `ModelRateLimited`), and gives back what it
    did not use when it ends. `exempt`: the offline fallback, which passes by."""

    def __init__(
        self,
        bucket: SharedTokenBucket,
        settings: Settings,
        exempt: BaseChatModel | None = None,
    ):
        super().__init__()
        self.bucket = bucket
        self.exempt = exempt
        self.max_output = settings.model_max_output_tokens
        self.wait_s = settings.model_quota_wait_s
        # A reservation outlives any call: a run is abandoned by then.
        self.hold_s = settings.agent_hard_timeout_s
        self.waited_s = 0.0  # this run's time waiting for room
        self.on_wait: Waited = _never_waited
        self.settling: list[asyncio.Future[None]] = []

    def _amounts(self, request: ModelRequest) -> tuple[dict[str, float], int]:
        sent = request_tokens(request)
        amounts: dict[str, float] = {REQUESTS: 1, TOKENS: sent + self.max_output}
        try:
            self.bucket.fits(amounts)
        except ValueError as exc:
            raise ModelQuotaTooSmall(
                f"{exc}: a model call reserves its input (~{sent} tokens) and "
                f"FLEET_MODEL_MAX_OUTPUT_TOKENS ({self.max_output}); raise "
                "FLEET_MODEL_TOKENS_PER_MINUTE or FLEET_MODEL_QUOTA_BURST, or lower "
                "FLEET_MODEL_MAX_OUTPUT_TOKENS"
            ) from None
        return amounts, sent

    @contextmanager
    def _waiting(self) -> Iterator[None]:
        """Around a take: the wait is counted (and told to the run), and a take that found
        no room in time is a throttle."""
        started = time.monotonic()
        try:
            with suppress_instrumentation():  # the quota's bookkeeping is no span of the trace
                yield
        except NoRoom as exc:
            self._waited(time.monotonic() - started, granted=False)
            raise ModelRateLimited(str(exc)) from None
        self._waited(time.monotonic() - started, granted=True)

    def _waited(self, seconds: float, granted: bool) -> None:
        self.waited_s += seconds
        self.on_wait(seconds)
        if seconds >= NOTABLE_WAIT_S or not granted:
            trace.get_current_span().add_event(
                "model.quota.wait", {"wait_s": round(seconds, 3), "granted": granted}
            )

    @staticmethod
    def _used(sent: int, response: Any = None) -> dict[str, float]:
        """What a call used: the tokens the model reported; a call that failed (or reported
        nothing) is taken to have used what it sent."""
        reported = reported_usage(response) if response is not None else None
        return {REQUESTS: 1, TOKENS: sum(reported) if reported else sent}

    def wrap_model_call(
        self, request: ModelRequest, handler: Callable[[ModelRequest], ModelResponse]
    ) -> Any:
        if request.model is self.exempt:
            return handler(request)
        amounts, sent = self._amounts(request)
        with self._waiting():
            reservation = self.bucket.take(amounts, _call_id(), self.hold_s, self.wait_s)
        used = self._used(sent)
        try:
            response = handler(request)
            used = self._used(sent, response)
            return response
        finally:
            with suppress_instrumentation():
                self._settle(reservation, used)

    async def awrap_model_call(
        self, request: ModelRequest, handler: Callable[[ModelRequest], Awaitable[ModelResponse]]
    ) -> Any:
        if request.model is self.exempt:
            return await handler(request)
        amounts, sent = self._amounts(request)
        with self._waiting():
            reservation = await self.bucket.atake(amounts, _call_id(), self.hold_s, self.wait_s)
        used = self._used(sent)
        try:
            response = await handler(request)
            used = self._used(sent, response)
            return response
        finally:
            # Settled beside the agent's next step, not before it; `settled` awaits it.
            with suppress_instrumentation():
                settling = asyncio.to_thread(self._settle, reservation, used)
                self.settling.append(asyncio.ensure_future(settling))

    def _settle(self, reservation: Reservation, used: dict[str, float]) -> None:
        try:
            self.bucket.settle(reservation, used)
        except Exception as exc:  # the reservation lapses, counted as used: never too much
            log.warning("model call not settled", reservation=reservation.id, error=described(exc))

    async def settled(self) -> None:
        """Until every call of the run is settled with the bucket."""
        await asyncio.gather(*self.settling)
        self.settling.clear()


def _call_id() -> str:
    return f"call-{uuid.uuid4().hex}"


class ThrottleRetry(AgentMiddleware):
    """A throttled call (the quota's refusal, Bedrock's ThrottlingException) is tried again
    up to `model_throttle_retries` times, backing off exponentially with jitter from
    `model_retry_base_s`; then the throttle goes on to the fallback, if there is one."""

    def __init__(self, settings: Settings):
        super().__init__()
        self.tries = settings.model_throttle_retries + 1
        self.base_s = settings.model_retry_base_s
        self.retried = 0  # this run's throttled tries
        self.on_wait: Waited = _never_waited

    def _before_sleep(self, state: RetryCallState) -> None:
        pause = state.next_action.sleep if state.next_action else 0.0
        error = state.outcome.exception() if state.outcome else None
        self.retried += 1
        self.on_wait(pause)
        log.warning(
            "model call throttled; trying again",
            attempt=state.attempt_number,
            retry_in_s=round(pause, 2),
            error=type(error).__name__,
        )
        trace.get_current_span().add_event(
            "model.throttled", {"attempt": state.attempt_number, "retry_in_s": round(pause, 3)}
        )

    def _policy(self) -> dict[str, Any]:
        return {
            "retry": retry_if_exception(is_throttle),
            "wait": wait_exponential_jitter(
                multiplier=self.base_s, max=BACKOFF_MAX_S, jitter=self.base_s
            ),
            "stop": stop_after_attempt(self.tries),
            "before_sleep": self._before_sleep,
            "reraise": True,
        }

    def wrap_model_call(
        self, request: ModelRequest, handler: Callable[[ModelRequest], ModelResponse]
    ) -> Any:
        for attempt in Retrying(**self._policy()):
            with attempt:
                return handler(request)
        raise AssertionError("unreachable: the last throttle is re-raised")

    async def awrap_model_call(
        self, request: ModelRequest, handler: Callable[[ModelRequest], Awaitable[ModelResponse]]
    ) -> Any:
        async for attempt in AsyncRetrying(**self._policy()):
            with attempt:
                return await handler(request)
        raise AssertionError("unreachable: the last throttle is re-raised")
