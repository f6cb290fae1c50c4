"""The fleet's model quota around an agent run (workers/agents/model_quota.py), on the offline
model with the tools stood in and the bucket in this process: a run waits for the quota and
still answers, the wait is not held against its deadline, a call the quota never makes room
for is tried again and then stops the step, and what the run cost is priced."""

from __future__ import annotations

import time
from typing import Any

import pytest

from core.settings import Settings
from core.shared_bucket import SharedTokenBucket
from tests.shared_buckets import MemoryBucketStore, model_quota_in_memory
from tests.unit.test_offline_agents import CASES, diagnose, tools
from workers.agents.model_quota import (
    MODEL_CALLS,
    REQUESTS,
    ModelQuotaExhausted,
    ModelQuotaTooSmall,
    model_quotas,
)
from workers.agents.runner import AgentRun, estimated_cost_usd

# A quota of 60 requests a minute that may spend 2 at once, then one every ~1.03 s.
TIGHT: dict[str, Any] = {"model_requests_per_minute": 60, "model_quota_burst": 2 / 60}
REVOKED = CASES[0][1]  # a revoked S3 permission, as the tools show it


def _diagnose(quota: SharedTokenBucket, **settings: Any) -> AgentRun[Any]:
    run, _diagnosis = diagnose(tools(**REVOKED()), quota, **settings)
    return run


def test_a_run_waits_for_the_quota_and_the_wait_is_not_held_against_its_deadline() -> None:
    # A deadline shorter than the waits: were they counted, the run would stop unanswered.
    settings = Settings(agent_deadline_s=1.0, **TIGHT)
    started = time.monotonic()
    run = _diagnose(model_quota_in_memory(settings), agent_deadline_s=1.0, **TIGHT)
    took = time.monotonic() - started
    assert run.answer is not None and run.stopped is None
    assert [f.value for f in run.answer.fault_types] == ["iam_permission_missing"]
    turns = len(run.calls) + 1  # a model turn before each tool call, and the answer
    # Two calls went at once, each later one waited about a second for its request.
    assert run.quota_wait_s >= (turns - 2) * 0.9, run.quota_wait_s
    assert took >= run.quota_wait_s > settings.agent_deadline_s


def test_a_call_the_quota_never_makes_room_for_is_retried_then_stops_the_step() -> None:
    impatient = {"model_quota_wait_s": 0.2, "model_throttle_retries": 2, "model_retry_base_s": 0}
    settings = Settings(**impatient, **TIGHT)
    quota = SharedTokenBucket(MemoryBucketStore(), MODEL_CALLS, model_quotas(settings))
    # Someone else has just spent the burst: the next request is a second away, more than
    # a wait of 0.2 s, on each of the three tries.
    for i in range(2):
        quota.try_take({REQUESTS: 1}, f"elsewhere-{i}", 30)
    with pytest.raises(ModelQuotaExhausted, match=r"throttled on all 3 tries.*no room"):
        _diagnose(quota, **impatient, **TIGHT)


def test_a_run_is_priced_at_the_configured_prices() -> None:
    prices = {"model_input_price_per_1k": 0.5, "model_output_price_per_1k": 2.0}
    settings = Settings(**prices)
    run = _diagnose(model_quota_in_memory(settings), **prices)
    assert run.prompt_tokens > 0 and run.completion_tokens > 0
    expected = (run.prompt_tokens * 0.5 + run.completion_tokens * 2.0) / 1000
    assert run.cost_usd == pytest.approx(expected, abs=1e-6)
    assert estimated_cost_usd(settings, 1000, 1000) == 2.5


def test_every_call_of_the_offline_model_took_its_share_and_gave_back_the_rest() -> None:
    settings = Settings()
    store = MemoryBucketStore()
    frozen = 1_800_000_000.0
    quota = SharedTokenBucket(store, MODEL_CALLS, model_quotas(settings), lambda: frozen)
    run = _diagnose(quota)
    state = store.load(MODEL_CALLS)
    assert state is not None and state.held == {}
    full = model_quotas(settings)
    turns = len(run.calls) + 1
    assert state.levels[REQUESTS] == full[REQUESTS].capacity - turns
    # Each call reserved its input and max_tokens; what is left out is what it reported.
    used = run.prompt_tokens + run.completion_tokens
    assert state.levels["tokens"] == pytest.approx(full["tokens"].capacity - used)


def test_a_quota_too_small_for_one_call_names_the_settings_to_change() -> None:
    small = {"model_tokens_per_minute": 2000}  # a bucket of 1000: less than max_tokens alone
    with pytest.raises(ModelQuotaTooSmall, match="raise FLEET_MODEL_TOKENS_PER_MINUTE"):
        _diagnose(model_quota_in_memory(Settings(**small)), **small)
