"""The bench's prices: counts of requests and units at the list prices it names."""

from __future__ import annotations

import pytest

from bench.cost import per_incident, per_million_messages


def test_a_million_messages_are_priced_beside_powertools_idempotency() -> None:
    per_msg = {"sqs_requests": 0.2, "dynamodb_requests": 0.14, "write_units": 3, "read_units": 0}
    cost = per_million_messages(per_msg, bare_sqs_per_msg=0.2)
    # 200,000 SQS requests at $0.40 a million, 3 million write units at $0.625 a million.
    assert cost["fleet_usd"] == pytest.approx(0.08 + 1.875, abs=0.01)
    # The same SQS requests and two write units a message.
    assert cost["powertools_idempotency_usd"] == pytest.approx(0.08 + 1.25, abs=0.01)
    assert cost["fleet_over_powertools"] == pytest.approx(1.955 / 1.33, abs=0.01)


def test_an_incident_shares_out_what_the_workers_sent() -> None:
    cost = per_incident({"sqs_requests": 2000, "dynamodb_write_units": 400}, 4, 0.002)
    assert cost["aws_per_incident"] == {"sqs_requests": 500, "dynamodb_write_units": 100}
    assert cost["aws_usd"] == pytest.approx(500 * 0.4e-6 + 100 * 0.625e-6, abs=1e-6)
    assert cost["total_usd"] == pytest.approx(cost["aws_usd"] + 0.002, abs=1e-6)
