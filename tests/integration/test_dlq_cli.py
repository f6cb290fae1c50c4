"""`fleet dlq`, the CLI twins of the console's dead-letter actions, against the emulator
(which has no message move tasks, so redrive takes the careful mover)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from core.principals import Principal
from emulation.world import PROJECT_ROOT, terminate, wait_for
from queues.events import new_event
from queues.topology import EventType
from tests.integration.conftest import RunningWorld, Workers
from tests.integration.handlers import FAILING_KINDS_FILE


def _sqs(world: RunningWorld) -> Any:
    return world.clients(Principal.ADMIN)("sqs")


def _url(world: RunningWorld, name: str) -> str:
    return str(_sqs(world).get_queue_url(QueueName=name)["QueueUrl"])


def _depth(world: RunningWorld, name: str) -> tuple[int, int]:
    attrs = _sqs(world).get_queue_attributes(
        QueueUrl=_url(world, name),
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]), int(
        attrs["ApproximateNumberOfMessagesNotVisible"]
    )


def _drain(world: RunningWorld, name: str) -> list[str]:
    sqs, url, bodies = _sqs(world), _url(world, name), []
    while True:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        if not got:
            return bodies
        for m in got:
            bodies.append(m["Body"])
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])


@pytest.fixture
def empty(world: RunningWorld) -> RunningWorld:
    for name in ("critic", "critic-dlq", "watchdog", "watchdog-dlq"):
        _drain(world, name)
    return world


def test_a_poison_message_is_seen_with_its_reason_and_peeking_takes_nothing(
    empty: RunningWorld, workers: Workers
) -> None:
    world = empty
    _sqs(world).send_message(QueueUrl=_url(world, "critic"), MessageBody="<script>{")
    workers.start("critic")
    wait_for(lambda: _depth(world, "critic-dlq")[0] == 1, 60, "the poison message in the DLQ")
    for worker in workers.procs:  # nothing may take the dead letter back now
        terminate([worker], 30)

    peeks = [json.loads(world.fleet("dlq", "peek", "critic", "--json").stdout) for _ in range(2)]
    assert [p["message_id"] for p in peeks[0]] == [p["message_id"] for p in peeks[1]]
    (letter,) = peeks[1]
    assert letter["error_class"] == "BadMessage"
    assert "not JSON" in letter["failure_reason"] and letter["failed_stage"] == "critic"
    assert letter["body"] == "<script>{"  # as text: escaping is the page's job
    assert _depth(world, "critic-dlq") == (1, 0)  # still there, and visible

    listed = json.loads(world.fleet("dlq", "list", "--json").stdout)
    assert next(q for q in listed if q["queue"] == "critic")["dlq_visible"] == 1

    refused = world.fleet("dlq", "purge", "critic")
    assert refused.returncode == 2 and "--yes" in refused.stderr
    assert world.fleet("dlq", "purge", "critic", "--yes").returncode == 0
    wait_for(lambda: _depth(world, "critic-dlq") == (0, 0), 30, "the DLQ purged")


def test_redrive_chosen_messages_then_all_back_to_the_source(empty: RunningWorld) -> None:
    world, sqs = empty, _sqs(empty)
    for i in range(3):
        sqs.send_message(QueueUrl=_url(world, "critic-dlq"), MessageBody=f'{{"n": {i}}}')
    letters = json.loads(world.fleet("dlq", "peek", "critic-dlq", "--json").stdout)
    chosen = letters[0]["message_id"]

    one = world.fleet("dlq", "redrive", "critic", "--ids", chosen, "--json")
    assert one.returncode == 0, one.stderr
    assert json.loads(one.stdout)["moved"] == 1 and "moved 1/1" in one.stderr
    assert _depth(world, "critic-dlq") == (2, 0) and _depth(world, "critic")[0] == 1

    missing = world.fleet("dlq", "redrive", "critic", "--ids", "no-such-id")
    assert missing.returncode == 1 and "not found: no-such-id" in missing.stdout

    rest = world.fleet("dlq", "redrive", "critic-dlq", "--to", "watchdog", "--rate", "20")
    assert rest.returncode == 0 and "2 message(s) moved" in rest.stdout
    assert sorted(_drain(world, "critic") + _drain(world, "watchdog")) == [
        '{"n": 0}',
        '{"n": 1}',
        '{"n": 2}',
    ]


def test_a_mover_killed_half_way_loses_nothing(empty: RunningWorld) -> None:
    world, sqs = empty, _sqs(empty)
    bodies = [f'{{"n": {i}}}' for i in range(6)]
    for body in bodies:
        sqs.send_message(QueueUrl=_url(world, "watchdog-dlq"), MessageBody=body)
    env = {**world.env, "FLEET_DLQ_MOVE_VISIBILITY_S": "3"}
    mover = subprocess.Popen(
        [sys.executable, "-m", "fleet.cli", "dlq", "redrive", "watchdog", "--rate", "1"],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: _depth(world, "watchdog")[0] >= 2, 60, "a few messages moved")
    finally:
        os.kill(mover.pid, signal.SIGKILL)
        mover.wait()
    # What the mover held comes back to the DLQ; every message is somewhere, none lost.
    wait_for(lambda: _depth(world, "watchdog-dlq")[1] == 0, 30, "held messages to come back")
    found = _drain(world, "watchdog-dlq") + _drain(world, "watchdog")
    assert set(found) == set(bodies)
    assert len(found) <= len(bodies) + 1  # at worst the one in hand is sent twice


def _mixed_failures(world: RunningWorld, workers: Workers, probe: str) -> dict[str, list[str]]:
    """A critic DLQ of mixed failures, dead-lettered by a real worker: 4 'quota' and 3
    'schema' refusals (NonRetryableError), 2 unreadable bodies (BadMessage). Their event
    ids by kind; the worker keeps running (what is redriven to it is handled)."""
    (world.settings.state_dir / FAILING_KINDS_FILE).write_text("quota schema")
    workers.start("critic", "fails_as_told")
    sqs, url, sent = _sqs(world), _url(world, "critic"), {"quota": [], "schema": []}
    for kind, n in (("quota", 4), ("schema", 3)):
        for i in range(n):
            event = new_event(
                EventType.PROPOSED, "test", {"kind": kind, "probe": probe, "why": f"{kind} {i}"}
            )
            sqs.send_message(QueueUrl=url, MessageBody=event.model_dump_json())
            sent[kind].append(event.event_id)
    for body in ("{not json", "[1, 2"):
        sqs.send_message(QueueUrl=url, MessageBody=body)
    wait_for(lambda: _depth(world, "critic-dlq")[0] == 9, 60, "nine dead letters")
    return sent


def _letters(world: RunningWorld, *args: str) -> list[dict[str, Any]]:
    shown = world.fleet("dlq", "letters", "critic", *args, "--json")
    assert shown.returncode == 0, shown.stderr
    return list(json.loads(shown.stdout)["letters"])


def test_a_filtered_redrive_moves_exactly_what_its_dry_run_showed_and_says_what_became_of_each(
    empty: RunningWorld, workers: Workers, tmp_path: Path
) -> None:
    world = empty
    probe = f"mixed-{tmp_path.name}"
    sent = _mixed_failures(world, workers, probe)
    listed = _letters(world)
    assert len(listed) == 9
    quota = _letters(world, "--reason", "quota")
    assert sorted(r["event_id"] for r in quota) == sorted(sent["quota"])
    assert {r["error_class"] for r in quota} == {"NonRetryableError"}
    assert len(_letters(world, "--error-class", "BadMessage")) == 2
    assert len(_letters(world, "--event-type", "incident.proposed", "--reason", "schema")) == 3
    assert [r["message_id"] for r in _letters(world, "--page-size", "5")] == [
        r["message_id"] for r in listed[:5]
    ]

    dry = world.fleet(
        "dlq", "redrive", "critic", "--reason", "quota", "--limit", "3", "--dry-run", "--json"
    )
    assert dry.returncode == 0, dry.stderr
    plan = json.loads(dry.stdout)
    assert len(plan["message_ids"]) == 3 and set(plan["message_ids"]) < {
        r["message_id"] for r in quota
    }
    assert _depth(world, "critic-dlq")[0] == 9  # a dry run moves nothing

    (world.settings.state_dir / FAILING_KINDS_FILE).write_text("schema")  # quota is fixed
    (tmp_path / "plan.json").write_text(dry.stdout)
    moved = world.fleet(
        "dlq",
        "redrive",
        "critic",
        "--ids-from",
        str(tmp_path / "plan.json"),
        "--as",
        "dana",
        "--json",
    )
    assert moved.returncode == 0, moved.stderr
    result = json.loads(moved.stdout)
    assert sorted(result["moved_ids"]) == sorted(plan["message_ids"])
    still = world.fleet(
        "dlq", "redrive", "critic", "--reason", "schema", "--limit", "1", "--as", "dana", "--json"
    )
    assert still.returncode == 0, still.stderr
    poison = json.loads(still.stdout)

    def outcomes(redrive: dict[str, Any]) -> list[str | None]:
        shown = world.fleet(
            "dlq", "history", "critic", "--redrive", redrive["redrive_id"], "--json"
        )
        assert shown.returncode == 0, shown.stderr
        return [m["outcome"] for m in json.loads(shown.stdout)["messages"]]

    wait_for(lambda: outcomes(result) == ["processed"] * 3, 60, "the fixed ones processed")
    wait_for(lambda: outcomes(poison) == ["dead-lettered again"], 60, "the poison one back")
    # The poison message is listed again, under its new id, saying where it came from.
    back = [r for r in _letters(world, "--reason", "schema") if r.get("redrive_of")]
    assert [r["redrive_of"] for r in back] == poison["moved_ids"]
    assert len(_letters(world)) == 9 - 3 - 1 + 1

    trail = json.loads(world.fleet("dlq", "history", "critic", "--json").stdout)
    mine = [e for e in trail if e["redrive_id"] == result["redrive_id"]]
    assert [e["action"] for e in mine] == ["redrive finished", "redrive started"]
    assert {(e["person"], e["principal"]) for e in mine} == {("dana", "operator")}
    assert sorted(mine[1]["message_ids"]) == sorted(plan["message_ids"])
    assert mine[1]["filters"] == {"reason": "quota"} and mine[1]["limit"] == 3


def test_export_writes_every_dead_letter_as_json_and_takes_none(
    empty: RunningWorld, tmp_path: Path
) -> None:
    world, sqs = empty, _sqs(empty)
    for i in range(12):
        sqs.send_message(QueueUrl=_url(world, "watchdog-dlq"), MessageBody=f'{{"n": {i}}}')
    out = tmp_path / "watchdog-dlq.json"
    assert world.fleet("dlq", "export", "watchdog", "-o", str(out)).returncode == 0
    exported = json.loads(out.read_text())
    assert sorted(m["body"] for m in exported) == sorted(f'{{"n": {i}}}' for i in range(12))
    assert _depth(world, "watchdog-dlq") == (12, 0)
