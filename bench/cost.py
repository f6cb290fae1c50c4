"""What the fleet would cost on AWS, from what `make bench` counted: AWS requests by service,
DynamoDB request units, and model tokens, at list prices. Beside it, the same messages
through AWS Lambda Powertools' idempotency, the usual way to make an SQS consumer safe to
retry: two DynamoDB writes a message (the in-progress record, then the completed one: two
requests and two write units), and the same SQS requests as the bare receive-and-delete loop.

List prices, US East (N. Virginia), standard SQS queues and DynamoDB on demand, as their
pricing pages gave them when this was written (free tiers left out):
https://aws.amazon.com/sqs/pricing/, https://aws.amazon.com/dynamodb/pricing/on-demand/,
https://aws.amazon.com/sns/pricing/. Model tokens are priced at the settings'
`model_input_price_per_1k` and `model_output_price_per_1k`.
"""

from __future__ import annotations

from typing import Any

PER_MILLION_USD = {
    "sqs_requests": 0.40,
    "sns_publishes": 0.50,
    "dynamodb_write_units": 0.625,
    "dynamodb_read_units": 0.125,
}
# AWS Lambda Powertools' idempotency: a conditional put of the in-progress record and a put
# of the completed one, each a request and a write unit for a record under 1 KB
# (https://docs.powertools.aws.dev/lambda/python/latest/utilities/idempotency/).
POWERTOOLS_WRITES_PER_MSG = 2


def usd(counts: dict[str, float]) -> float:
    """The list price of these counts (keys of PER_MILLION_USD)."""
    return sum(PER_MILLION_USD[k] * n / 1e6 for k, n in counts.items())


def per_million_messages(per_msg: dict[str, float], bare_sqs_per_msg: float) -> dict[str, Any]:
    """The runtime's AWS bill for a million messages (its SQS requests, DynamoDB write and
    read units), beside Powertools' idempotency on the bare loop's SQS requests."""
    fleet = {
        "sqs_requests": per_msg["sqs_requests"] * 1e6,
        "dynamodb_write_units": per_msg["write_units"] * 1e6,
        "dynamodb_read_units": per_msg["read_units"] * 1e6,
    }
    powertools = {
        "sqs_requests": bare_sqs_per_msg * 1e6,
        "dynamodb_write_units": POWERTOOLS_WRITES_PER_MSG * 1e6,
    }
    return {
        "fleet_usd": round(usd(fleet), 2),
        "powertools_idempotency_usd": round(usd(powertools), 2),
        "fleet_over_powertools": round(usd(fleet) / usd(powertools), 2),
        "fleet_dynamodb_requests_per_msg": per_msg["dynamodb_requests"],
        "powertools_dynamodb_requests_per_msg": POWERTOOLS_WRITES_PER_MSG,
    }


def per_incident(aws: dict[str, float], incidents: int, model_usd: float | None) -> dict[str, Any]:
    """An incident's AWS bill (what every worker sent while the incidents ran, idle polls
    included, shared out) and its model tokens at the settings' prices."""
    each = {k: v / incidents for k, v in aws.items()}
    aws_usd = usd(each)
    return {
        "incidents": incidents,
        "aws_per_incident": {k: round(v, 1) for k, v in each.items()},
        "aws_usd": round(aws_usd, 6),
        "model_usd": model_usd,
        "total_usd": round(aws_usd + (model_usd or 0.0), 6),
    }
