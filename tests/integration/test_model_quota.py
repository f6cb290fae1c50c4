"""The fleet's model quota, against the emulator over HTTP.

The shared bucket itself: takers holding two stages' own keys race on the rate-limits
table and never take more than it holds, nor lose a reservation (every write is
conditional on the version it read).

And the fleet under a burst: several worker processes per stage, several functions broken
at once, and a quota low enough that it binds. Judged from outside the fleet, from the
spans every process exports to a receiver in this test: no 60-second window of model calls
holds more requests or tokens than the quota, every incident is resolved and nothing is
dead-lettered, and each incident's recorded tokens and cost are exactly what its model
calls reported, at the configured prices.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

import chaos.gameday
from bench.incidents import quiet, revoked_at_once
from chaos.gameday import fresh_world
from core.principals import Principal
from core.shared_bucket import DynamoBucketStore, Quota, SharedTokenBucket
from emulation.world import read_world, wait_for
from incidents.incident_report import IncidentReport, load_report
from incidents.lifecycle import IncidentStatus as S
from queues.topology import build_topology
from tests.integration.conftest import RunningWorld
from tests.otlp_collector import OtlpCollector
from tests.ports import reserve_port
from tests.shared_buckets import race
from workload.spec import function_name

MINUTE_NS = 60 * 10**9


def test_stages_racing_on_the_table_never_take_more_than_it_holds(world: RunningWorld) -> None:
    quotas = {"requests": Quota(600, 0.05), "tokens": Quota(600_000, 0.05, settled=True)}
    name = f"race-{time.time_ns()}"  # a bucket of this test's own
    buckets = [
        SharedTokenBucket(DynamoBucketStore(world.clients(p)("dynamodb")), name, quotas)
        for p in (Principal.SUPERVISOR, Principal.CRITIC)
    ]
    granted, elapsed = race(buckets, {"requests": 1, "tokens": 100}, takers=6, seconds=3)
    # A bucket of 30 requests, refilling 9.5 a second: never more than that, however the
    # takers raced (how many they got in 3 s depends on the machine, so no floor is asserted).
    assert 0 < len(granted) <= 30 + 9.5 * elapsed + 1, (len(granted), elapsed)
    state = buckets[0].store.load(name)
    # Every take is there, once: none was written over by another taker's write.
    assert state is not None and set(state.held) == {g.id for g in granted}
    assert state.version == len(granted)


# Three functions broken at once, two processes of each stage, and a quota the burst must
# wait for: the incidents make some 27 model calls of about 1,500 tokens each, and a quarter
# of a minute's quota may go at once, the rest refilling over the minute.
TARGETS = 3
QUOTA = {"requests": 24, "tokens": 36_000}
SHARE_AT_ONCE = 0.25
BURST: dict[str, Any] = {
    "target_count": TARGETS,
    "workers_per_stage": 2,
    "watch_window_s": 5,
    "model_requests_per_minute": QUOTA["requests"],
    "model_tokens_per_minute": QUOTA["tokens"],
    "model_quota_burst": SHARE_AT_ONCE,
    "model_input_price_per_1k": 0.0003,
    "model_output_price_per_1k": 0.0025,
}


def _resolved_span(incident_id: str, spans: list[dict[str, Any]]) -> bool:
    return any(
        s["attributes"].get("incident.id") == incident_id
        and any(
            e["name"] == "incident.status" and e["attributes"].get("to") == S.RESOLVED.value
            for e in s["events"]
        )
        for s in spans
    )


@pytest.fixture(scope="module")
def burst() -> Iterator[dict[str, Any]]:
    """The burst, driven to its end, and what the test judges it by."""
    with pytest.MonkeyPatch.context() as patch, OtlpCollector() as collector:
        patch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.endpoint)
        patch.setenv("OTEL_BSP_SCHEDULE_DELAY", "200")
        patch.setattr(chaos.gameday, "free_port", reserve_port)
        with fresh_world(BURST, quiet) as settings:
            burst = revoked_at_once(settings, TARGETS, 300)
            ids = [i["incident_id"] for i in burst.incidents]
            # What the last stage exports reaches the receiver within its batch delay.
            wait_for(
                lambda: all(_resolved_span(i, collector.spans) for i in ids if i),
                30,
                "the spans that resolved them",
                0.2,
            )
            sqs = burst.game.admin("sqs")
            dead_letters = {
                q.dlq_name: int(
                    sqs.get_queue_attributes(
                        QueueUrl=sqs.get_queue_url(QueueName=q.dlq_name)["QueueUrl"],
                        AttributeNames=["ApproximateNumberOfMessages"],
                    )["Attributes"]["ApproximateNumberOfMessages"]
                )
                for q in build_topology(settings).queues
            }
            yield {
                "incidents": burst.incidents,
                "reports": [load_report(burst.game.store, i) for i in ids],
                "spans": collector.spans,
                "dead_letters": dead_letters,
                "processes": sorted((read_world(settings) or {}).get("processes", {})),
                "took_s": burst.seconds,
            }


def _model_calls(spans: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(
        (s for s in spans if s["attributes"].get("gen_ai.operation.name") == "chat"),
        key=lambda s: s["start_ns"],
    )


def _tokens(span: dict[str, Any]) -> int:
    a = span["attributes"]
    return int(a.get("gen_ai.usage.input_tokens", 0)) + int(a.get("gen_ai.usage.output_tokens", 0))


def test_no_minute_of_model_calls_exceeds_the_quota_and_the_quota_bound(
    burst: dict[str, Any],
) -> None:
    calls = _model_calls(burst["spans"])
    busiest_requests = busiest_tokens = 0
    for i, first in enumerate(calls):
        window = [c for c in calls[i:] if c["start_ns"] < first["start_ns"] + MINUTE_NS]
        busiest_requests = max(busiest_requests, len(window))
        busiest_tokens = max(busiest_tokens, sum(_tokens(c) for c in window))
    assert busiest_requests <= QUOTA["requests"], busiest_requests
    assert busiest_tokens <= QUOTA["tokens"], busiest_tokens
    # The burst wanted more than the quota allows in a minute, so it had to be spread out:
    # a share of a minute's quota at once, then no faster than the rest refills.
    wanted = {"requests": len(calls), "tokens": sum(_tokens(c) for c in calls)}
    assert any(wanted[d] > QUOTA[d] for d in QUOTA), wanted
    least_s = max(
        (wanted[d] - QUOTA[d] * SHARE_AT_ONCE) / (QUOTA[d] * (1 - SHARE_AT_ONCE) / 60)
        for d in QUOTA
    )
    spread_s = (calls[-1]["start_ns"] - calls[0]["start_ns"]) / 1e9
    assert spread_s >= 0.9 * least_s, (spread_s, least_s, wanted)
    # Several processes of each agent stage shared it.
    for stage in ("supervisor", "resolver", "critic"):
        assert {f"worker-{stage}", f"worker-{stage}-2"} <= set(burst["processes"]), burst
    # The waits are the fleet's own account of it, per incident.
    reports: list[IncidentReport] = burst["reports"]
    assert sum(r.quota_wait_s for r in reports) > 0


def test_no_incident_fails_for_the_quota(burst: dict[str, Any]) -> None:
    reports: list[IncidentReport] = burst["reports"]
    assert len(reports) == TARGETS, burst["incidents"]
    assert [r.status for r in reports] == [S.RESOLVED.value] * TARGETS, burst["incidents"]
    assert sorted(r.resource for r in reports) == [function_name(i) for i in range(1, TARGETS + 1)]
    assert all(r.round == 1 and r.diagnosis and r.proposal and r.review for r in reports)
    assert burst["dead_letters"] == dict.fromkeys(burst["dead_letters"], 0)


def test_each_incidents_tokens_and_cost_add_up_to_its_model_calls(burst: dict[str, Any]) -> None:
    calls = _model_calls(burst["spans"])
    reports: list[IncidentReport] = burst["reports"]
    total_cost = 0.0
    for report in reports:
        mine = [c for c in calls if c["attributes"].get("incident.id") == report.incident_id]
        sent = sum(int(c["attributes"]["gen_ai.usage.input_tokens"]) for c in mine)
        written = sum(int(c["attributes"]["gen_ai.usage.output_tokens"]) for c in mine)
        assert (report.prompt_tokens, report.completion_tokens) == (sent, written)
        price = (sent * BURST["model_input_price_per_1k"]) + (
            written * BURST["model_output_price_per_1k"]
        )
        assert report.cost_usd == pytest.approx(price / 1000, abs=1e-5)
        total_cost += report.cost_usd
    # Every model call of the burst belongs to one of its incidents.
    assert {c["attributes"].get("incident.id") for c in calls} == {r.incident_id for r in reports}
    everything = sum(
        int(c["attributes"]["gen_ai.usage.input_tokens"]) * BURST["model_input_price_per_1k"]
        + int(c["attributes"]["gen_ai.usage.output_tokens"]) * BURST["model_output_price_per_1k"]
        for c in calls
    )
    assert total_cost == pytest.approx(everything / 1000, abs=1e-5)
