"""Contract test for Bedrock: the real ChatBedrockConverse path, tool use included, drives
the supervisor's graph to a Diagnosis, with botocore's Stubber in place of the network.

The Stubber checks every Converse request against the bedrock-runtime API model, so a
request Bedrock would refuse fails here; the responses are shaped as Bedrock sends them.
"""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber

from core.settings import Settings
from core.shared_bucket import SharedTokenBucket
from incidents.incident import Incident
from incidents.lifecycle import IncidentStatus
from tests.shared_buckets import MemoryBucketStore, model_quota_in_memory
from tests.unit.test_offline_agents import (
    ACCESS_DENIED,
    FN,
    S3_STATEMENT,
    compared,
    logs,
    metrics,
    tools,
)
from workers.agents.diagnose import diagnose_with
from workers.agents.model_quota import (
    MODEL_CALLS,
    REQUESTS,
    TOKENS,
    ModelQuotaExhausted,
    model_quotas,
)
from workers.agents.models import chat_model

MODEL_ID = "us.amazon.nova-2-lite-v1:0"


def _tool_use(tool_id: str, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {
        "output": {
            "message": {
                "role": "assistant",
                "content": [
                    {"text": f"Calling {name}."},
                    {"toolUse": {"toolUseId": tool_id, "name": name, "input": arguments}},
                ],
            }
        },
        "stopReason": "tool_use",
        "usage": {"inputTokens": 900, "outputTokens": 40, "totalTokens": 940},
        "metrics": {"latencyMs": 420},
    }


CONVERSATION = [
    _tool_use("tooluse_1", "lambda_metrics", {"function_name": FN, "minutes": 5}),
    _tool_use(
        "tooluse_2",
        "recent_log_events",
        {"function_name": FN, "minutes": 5, "pattern": "error", "limit": 20},
    ),
    _tool_use("tooluse_3", "compare_with_baseline", {"function_name": FN}),
    _tool_use(
        "tooluse_4",
        "DiagnosisDraft",
        {
            "function_name": FN,
            "root_cause": "The execution role lost s3:GetObject.",
            "fault_types": ["iam_permission_missing"],
            "severity": "high",
            "confidence": 0.9,
            "evidence": [
                {
                    "claim": "runs fail reading the input from S3",
                    "tool_call_id": "tooluse_2",
                    "quote": "when calling the GetObject operation: Access Denied",
                },
                {
                    "claim": "the baseline's S3 statement is missing from the role",
                    "tool_call_id": "tooluse_3",
                    "quote": '"ReadInputWriteOutput"',
                },
                {
                    "claim": "a hunch the model could not back",
                    "tool_call_id": "tooluse_9",
                    "quote": "AdministratorAccess",
                },
            ],
        },
    ),
]


def _conversation() -> list[dict[str, Any]]:
    """The responses afresh: parsing a Converse response takes it apart."""
    return copy.deepcopy(CONVERSATION)


def _bedrock(settings: Settings) -> tuple[Any, Stubber]:
    client = boto3.client(
        "bedrock-runtime",
        region_name=settings.bedrock_region,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    return client, Stubber(client)


def _run(settings: Settings, client: Any, quota: SharedTokenBucket | None = None) -> Any:
    toolset = tools(
        lambda_metrics=metrics(errors=5),
        recent_log_events=logs(ACCESS_DENIED),
        compare_with_baseline=compared(missing=(S3_STATEMENT,)),
    )
    opened = "2026-11-25T20:00:00+00:00"
    incident = Incident(
        incident_id="inc-1",
        fingerprint=f"{FN}|0",
        resource=FN,
        signature="errors",
        status=IncidentStatus.INVESTIGATING,
        version=2,
        alert_count=1,
        opened_at=opened,
        updated_at=opened,
    )
    model = chat_model(settings, bedrock_client=client)
    quota = quota or model_quota_in_memory(settings)
    return asyncio.run(
        diagnose_with(settings, model, toolset, incident, {"payload": {}}, quota=quota)
    )


def test_converse_with_tool_use_drives_the_supervisor_to_a_diagnosis() -> None:
    settings = Settings(model="bedrock", model_fallback_offline=False)
    client, stubber = _bedrock(settings)
    expected = {
        "modelId": MODEL_ID,
        "messages": ANY,
        "system": ANY,
        "toolConfig": ANY,
        "inferenceConfig": ANY,
    }
    for response in _conversation():
        stubber.add_response("converse", response, expected)
    with stubber:
        diagnosis, run = _run(settings, client)
        stubber.assert_no_pending_responses()
    assert [c.name for c in run.calls] == [
        "lambda_metrics",
        "recent_log_events",
        "compare_with_baseline",
    ]
    assert [f.value for f in diagnosis.fault_types] == ["iam_permission_missing"]
    assert [e.claim for e in diagnosis.evidence] == [
        "runs fail reading the input from S3",
        "the baseline's S3 statement is missing from the role",
    ]
    assert [e.claim for e in diagnosis.dropped_evidence] == ["a hunch the model could not back"]
    assert (diagnosis.prompt_tokens, diagnosis.completion_tokens) == (3600, 160)
    assert not diagnosis.escalate


# A throttled call is tried again at once here (no backoff), twice.
RETRYING: dict[str, Any] = {"model_retry_base_s": 0, "model_throttle_retries": 2}


def _throttled(stubber: Stubber, times: int) -> None:
    for _ in range(times):
        stubber.add_client_error(
            "converse", service_error_code="ThrottlingException", http_status_code=429
        )


def test_a_throttled_call_is_tried_again_before_anything_falls_back() -> None:
    settings = Settings(model="bedrock", **RETRYING)
    client, stubber = _bedrock(settings)
    _throttled(stubber, 2)
    for response in _conversation():
        stubber.add_response("converse", response)
    with stubber:
        diagnosis, run = _run(settings, client)
        stubber.assert_no_pending_responses()
    # Bedrock's own answer (its token counts), not the offline runbooks'.
    assert (diagnosis.prompt_tokens, diagnosis.completion_tokens) == (3600, 160)
    assert run.throttled == 2
    assert [e.claim for e in diagnosis.dropped_evidence] == ["a hunch the model could not back"]


def test_bedrock_throttling_every_try_falls_back_to_the_offline_runbooks() -> None:
    settings = Settings(model="bedrock", **RETRYING)
    client, stubber = _bedrock(settings)
    _throttled(stubber, 3)  # the first try and both retries
    with stubber:
        diagnosis, run = _run(settings, client)
        stubber.assert_no_pending_responses()
    assert [f.value for f in diagnosis.fault_types] == ["iam_permission_missing"]
    assert run.calls and diagnosis.evidence
    assert run.throttled == 2


def test_without_fallback_a_model_throttled_on_every_try_is_an_error_not_a_guess() -> None:
    settings = Settings(model="bedrock", model_fallback_offline=False, **RETRYING)
    client, stubber = _bedrock(settings)
    _throttled(stubber, 3)
    with stubber, pytest.raises(ModelQuotaExhausted, match="ThrottlingException"):
        _run(settings, client)
    stubber.assert_no_pending_responses()


def test_bedrock_calls_take_their_share_of_the_fleet_quota() -> None:
    """Each Converse call reserved its input and max_tokens, and the settlement left what
    Bedrock reported used: 4 requests and 3600 + 160 tokens out of the bucket."""
    settings = Settings(model="bedrock", model_fallback_offline=False)
    clock = FrozenClock()
    quota = SharedTokenBucket(MemoryBucketStore(), MODEL_CALLS, model_quotas(settings), clock)
    client, stubber = _bedrock(settings)
    for response in _conversation():
        stubber.add_response("converse", response)
    with stubber:
        _run(settings, client, quota)
    state = quota.store.load(MODEL_CALLS)
    assert state is not None and state.held == {}
    full = model_quotas(settings)
    assert state.levels[REQUESTS] == full[REQUESTS].capacity - 4
    assert state.levels[TOKENS] == full[TOKENS].capacity - (3600 + 160)


class FrozenClock:
    """Time that stands still, so the bucket does not refill while it is read."""

    def __call__(self) -> float:
        return 1_800_000_000.0
