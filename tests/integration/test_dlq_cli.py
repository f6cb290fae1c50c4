"""`fleet dlq`, the CLI twins of the console's dead-letter actions, against the emulator
(which has no message move tasks, so redrive takes the careful mover)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from typing import Any

import pytest

from core.principals import Principal
from emulation.world import PROJECT_ROOT, terminate, wait_for
from tests.integration.conftest import RunningWorld, Workers


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
