"""The Pulumi program (under mocks) and the running embedded world hold the same queues,
DLQs, redrive settings, queue policies, subscriptions and filter policies: both come from
the one topology spec, and this compares what each actually has."""

from __future__ import annotations

import json
from typing import Any

from tests.infra.program import deploy, stack
from tests.integration.conftest import RunningWorld

# The queue settings the test world runs with, given to the stack so the two can match.
QUEUE_SETTINGS = (
    "queue_visibility_timeout_s",
    "queue_max_receive_count",
    "queue_retention_s",
    "dlq_retention_s",
    "agent_deadline_s",
    "verify_timeout_s",
)


def _emulator_queues(admin: Any) -> dict[str, dict[str, Any]]:
    sqs = admin("sqs")
    out = {}
    for url in sqs.list_queues()["QueueUrls"]:
        attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        out[url.rsplit("/", 1)[1]] = attrs
    return out


def _emulator_subscriptions(admin: Any) -> set[tuple[str, str, str | None]]:
    sns = admin("sns")
    found = set()
    for sub in sns.list_subscriptions()["Subscriptions"]:
        if sub["Protocol"] != "sqs":
            continue
        attrs = sns.get_subscription_attributes(SubscriptionArn=sub["SubscriptionArn"])
        policy = attrs["Attributes"].get("FilterPolicy")
        found.add(
            (
                sub["TopicArn"].rsplit(":", 1)[1],
                sub["Endpoint"].rsplit(":", 1)[1],
                json.dumps(json.loads(policy), sort_keys=True) if policy else None,
            )
        )
    return found


def test_the_stack_and_the_embedded_world_hold_the_same_messaging(
    world: RunningWorld, admin: Any
) -> None:
    settings = world.settings
    program = deploy(
        stack(settings={k: getattr(settings, k) for k in QUEUE_SETTINGS}).model_copy(
            update={"account_id": settings.account_id, "region": settings.region}
        )
    )
    live = _emulator_queues(admin)
    deployed = {q.inputs["name"]: q.inputs for q in program.of_type("aws:sqs/queue:Queue")}
    assert set(deployed) <= set(live)
    fleet_queues = {n for n in live if n in deployed}
    assert fleet_queues == set(deployed)

    allow = {
        r.inputs["queueUrl"].rsplit("/", 1)[1]: json.loads(r.inputs["redriveAllowPolicy"])
        for r in program.of_type("aws:sqs/redriveAllowPolicy:RedriveAllowPolicy")
    }
    policies = {
        r.inputs["queueUrl"].rsplit("/", 1)[1]: json.loads(r.inputs["policy"])
        for r in program.of_type("aws:sqs/queuePolicy:QueuePolicy")
    }
    for name, wanted in deployed.items():
        have = live[name]
        assert int(have["MessageRetentionPeriod"]) == wanted["messageRetentionSeconds"], name
        if "redrivePolicy" in wanted:
            assert int(have["VisibilityTimeout"]) == wanted["visibilityTimeoutSeconds"], name
            assert json.loads(have["RedrivePolicy"]) == json.loads(wanted["redrivePolicy"])
        else:
            assert "RedrivePolicy" not in have, name
        if name in allow:
            assert json.loads(have["RedriveAllowPolicy"]) == allow[name]
        if name in policies:
            assert json.loads(have["Policy"]) == policies[name]
        else:
            assert "Policy" not in have, name

    program_subscriptions = {
        (
            s.inputs["topic"].rsplit(":", 1)[1],
            s.inputs["endpoint"].rsplit(":", 1)[1],
            json.dumps(json.loads(s.inputs["filterPolicy"]), sort_keys=True)
            if s.inputs.get("filterPolicy")
            else None,
        )
        for s in program.of_type("aws:sns/topicSubscription:TopicSubscription")
    }
    assert _emulator_subscriptions(admin) == program_subscriptions
