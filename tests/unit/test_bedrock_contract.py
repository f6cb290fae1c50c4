"""Contract test for Bedrock: the real ChatBedrockConverse path, tool use included, drives
the supervisor's graph to a Diagnosis, with botocore's Stubber in place of the network.

The Stubber checks every Converse request against the bedrock-runtime API model, so a
request Bedrock would refuse fails here; the responses are shaped as Bedrock sends them.
"""

from __future__ import annotations

import asyncio
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber

from core.settings import Settings
from incidents.incident import Incident
from incidents.lifecycle import IncidentStatus
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


def _bedrock(settings: Settings) -> tuple[Any, Stubber]:
    client = boto3.client(
        "bedrock-runtime",
        region_name=settings.bedrock_region,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    return client, Stubber(client)


def _run(settings: Settings, client: Any) -> Any:
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
    return asyncio.run(diagnose_with(settings, model, toolset, incident, {"payload": {}}))


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
    for response in CONVERSATION:
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


def test_bedrock_unavailable_falls_back_to_the_offline_runbooks() -> None:
    settings = Settings(model="bedrock")
    client, stubber = _bedrock(settings)
    stubber.add_client_error(
        "converse", service_error_code="ThrottlingException", http_status_code=429
    )
    with stubber:
        diagnosis, run = _run(settings, client)
    assert [f.value for f in diagnosis.fault_types] == ["iam_permission_missing"]
    assert run.calls and diagnosis.evidence


def test_without_fallback_an_unavailable_model_is_an_error_not_a_guess() -> None:
    settings = Settings(model="bedrock", model_fallback_offline=False)
    client, stubber = _bedrock(settings)
    stubber.add_client_error(
        "converse", service_error_code="ThrottlingException", http_status_code=429
    )
    with stubber, pytest.raises(Exception, match="ThrottlingException"):
        _run(settings, client)
