"""How fast the console's dead-letter pages answer as a DLQ fills: page loads at 50 dead
letters and at a thousand, timed from outside over HTTP, and whether any page load
received a message (a receive raises its count, which the bench reads after)."""

from __future__ import annotations

import re
import threading
import time
from typing import Any

import httpx

from core.aws import Clients
from core.principals import Principal
from core.settings import Settings
from queues.events import EventEnvelope
from queues.topology import Stage, build_topology
from workers.stage import StageContext, build_consumer

# A page shows 50: at 50 dead letters and at 1,000 a page load shows the same, so their
# ratio is what a deeper DLQ costs it (1.0: nothing).
SIZES = (50, 1000)
LOADS = 20  # page loads timed at each size
NEXT = re.compile(r'id="next-page" href="([^"]+)"')


def _dead_letter(settings: Settings, clients: Clients, n: int) -> None:
    """`n` unreadable messages through the watchdog's own runtime: each dead-lettered at
    once, with its failure record, as a real worker does it."""
    sqs = clients("sqs")
    queue = build_topology(settings).queue(Stage.WATCHDOG)
    url = sqs.get_queue_url(QueueName=queue.name)["QueueUrl"]
    dlq_url = sqs.get_queue_url(QueueName=queue.dlq_name)["QueueUrl"]
    before = _depth(sqs, dlq_url)
    for start in range(0, n, 10):
        sqs.send_message_batch(
            QueueUrl=url,
            Entries=[
                {"Id": str(i), "MessageBody": f"bench {start + i} {{"}
                for i in range(min(10, n - start))
            ],
        )

    def never(_event: EventEnvelope, _ctx: StageContext) -> None:
        raise AssertionError("an unreadable message reached the handler")

    consumer = build_consumer(queue, never, settings, clients)
    runner = threading.Thread(target=consumer.run, daemon=True)
    runner.start()
    deadline = time.monotonic() + 300
    while _depth(sqs, dlq_url) < before + n and time.monotonic() < deadline:
        time.sleep(0.2)
    consumer.stopping.set()
    runner.join(60)


def _depth(sqs: Any, url: str) -> int:
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
    return int(attrs["Attributes"]["ApproximateNumberOfMessages"])


def _time_pages(client: httpx.Client, path: str) -> tuple[list[float], list[float]]:
    """First pages and next pages, in ms."""
    first, following = [], []
    for _ in range(LOADS):
        started = time.perf_counter()
        page = client.get(path)
        first.append((time.perf_counter() - started) * 1000)
        page.raise_for_status()
        found = NEXT.search(page.text)
        if found:
            started = time.perf_counter()
            client.get(found.group(1).replace("&amp;", "&")).raise_for_status()
            following.append((time.perf_counter() - started) * 1000)
    return first, following


def _p(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)


def dead_letter_pages(settings: Settings) -> dict[str, Any]:
    """Page loads of the watchdog DLQ at each of SIZES dead letters (p50 / p95 ms), and the
    receives they made (0: every dead letter's receive count is still 1 at the end)."""
    clients = Clients(Principal.WATCHDOG, settings)
    admin = Clients(Principal.ADMIN, settings)
    base = f"http://{settings.console_host}:{settings.console_port}"
    token = settings.console_token_file.read_text().strip()
    out: dict[str, Any] = {"loads": LOADS, "sizes": {}}
    held = 0
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}) as client:
        for size in SIZES:
            _dead_letter(settings, clients, size - held)
            held = size
            first, following = _time_pages(client, "/dlq/watchdog-dlq")
            out["sizes"][str(size)] = {
                "first_page_ms_p50": _p(first, 0.5),
                "first_page_ms_p95": _p(first, 0.95),
                "next_page_ms_p50": _p(following, 0.5),
            }
    small, large = (out["sizes"][str(s)]["first_page_ms_p50"] for s in SIZES)
    out["first_page_1000_over_50"] = round(large / small, 2) if small and large else None
    # Every dead letter's first receive is this one: no page load received any.
    sqs = admin("sqs")
    dlq_url = sqs.get_queue_url(QueueName=build_topology(settings).queue(Stage.WATCHDOG).dlq_name)[
        "QueueUrl"
    ]
    counts: list[int] = []
    while got := sqs.receive_message(
        QueueUrl=dlq_url, MaxNumberOfMessages=10, AttributeNames=["ApproximateReceiveCount"]
    ).get("Messages", []):
        counts += [int(m["Attributes"]["ApproximateReceiveCount"]) for m in got]
        sqs.delete_message_batch(
            QueueUrl=dlq_url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)
            ],
        )
    out["dead_letters_read"] = len(counts)
    out["received_by_page_loads"] = sum(c - 1 for c in counts)
    return out
