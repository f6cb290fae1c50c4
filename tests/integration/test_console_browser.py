"""The console in a real headless browser (Debian's Chromium, driven by Playwright), as an
operator uses it during an incident. Each test saves a screenshot of every page it visits
in its own output folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, expect

from core.principals import Principal
from emulation.world import terminate, wait_for
from incidents.store import IncidentStore
from queues.events import new_event
from queues.topology import EventType
from tests.incident_records import NEXT_STEP, ROUND_2_BECAUSE, record_two_rounds_then_escalated
from tests.integration.browser import console_url, log_in
from tests.integration.conftest import RunningWorld, Workers
from tests.integration.handlers import BUG_FILE, FAILING_KINDS_FILE


def _sqs(world: RunningWorld) -> Any:
    return world.clients(Principal.ADMIN)("sqs")


def _drain(world: RunningWorld, name: str) -> None:
    sqs = _sqs(world)
    url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
    while got := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
        for m in got:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])


def test_a_poison_message_is_redriven_from_the_page_once_the_bug_is_fixed(
    world: RunningWorld, workers: Workers, chromium: Browser, tmp_path: Path
) -> None:
    for name in ("critic", "critic-dlq"):
        _drain(world, name)
    bug = world.settings.state_dir / BUG_FILE
    bug.write_text("the handler cannot read this batch")
    store = IncidentStore(world.clients(Principal.ADMIN)("dynamodb"))
    probe = f"probe-{tmp_path.name}"
    event = new_event(EventType.PROPOSED, "test", {"probe": probe})
    workers.start("critic", "buggy_until_fixed")
    try:
        sqs = _sqs(world)
        sqs.send_message(
            QueueUrl=sqs.get_queue_url(QueueName="critic")["QueueUrl"],
            MessageBody=event.model_dump_json(),
        )
        page = log_in(chromium, world, tmp_path)
        expect(page.locator('tr[data-queue="critic"] [data-field="dlq_visible"]')).to_have_text(
            "1", timeout=30_000
        )  # the queues page refreshes itself
        page.click('a[href="/dlq/critic-dlq"]')
        row = page.locator("tr.letter")
        expect(row).to_have_count(1)
        expect(row.locator(".reason")).to_contain_text("KeyError: 'records'")
        expect(row.locator(".reason")).to_contain_text("NonRetryableError")
        expect(row).to_contain_text("incident.proposed")
        page.screenshot(path=str(tmp_path / "dead-letters.png"), full_page=True)

        bug.unlink()  # the fix is deployed
        row.locator("input.pick").check()
        page.click("#redrive")
        expect(page.locator("#status")).to_have_text("done", timeout=30_000)
        expect(page.locator("#result")).to_contain_text("1 moved")
        page.screenshot(path=str(tmp_path / "redrive.png"))
        wait_for(lambda: bool(store.context(probe, "run#")), 60, "the redriven message handled")
        page.goto(console_url(world) + "/dlq/critic-dlq")
        expect(page.locator("#empty")).to_be_visible()
        page.screenshot(path=str(tmp_path / "dead-letters-after.png"))
    finally:
        bug.unlink(missing_ok=True)


def test_a_script_in_a_payload_is_shown_as_text_and_never_runs(
    world: RunningWorld, chromium: Browser, tmp_path: Path
) -> None:
    _drain(world, "watchdog-dlq")
    payload = '<script>window.__owned = 1</script><img src=x onerror="window.__owned = 2">'
    sqs = _sqs(world)
    sqs.send_message(
        QueueUrl=sqs.get_queue_url(QueueName="watchdog-dlq")["QueueUrl"], MessageBody=payload
    )
    page = log_in(chromium, world, tmp_path)
    # Sent to the DLQ by hand, it has no failure record: Peek shows it as SQS holds it.
    page.goto(console_url(world) + "/dlq/watchdog-dlq/peek")
    expect(page.locator("pre.payload")).to_have_text(payload)
    assert page.evaluate("window.__owned") is None
    assert page.locator("pre.payload script, pre.payload img").count() == 0
    page.screenshot(path=str(tmp_path / "script-payload.png"), full_page=True)
    _drain(world, "watchdog-dlq")


def _depth(world: RunningWorld, name: str) -> tuple[int, int]:
    sqs = _sqs(world)
    attrs = sqs.get_queue_attributes(
        QueueUrl=sqs.get_queue_url(QueueName=name)["QueueUrl"],
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]), int(
        attrs["ApproximateNumberOfMessagesNotVisible"]
    )


def test_a_dlq_of_mixed_failures_is_filtered_dry_run_and_redriven_with_a_limit(
    world: RunningWorld, workers: Workers, chromium: Browser, tmp_path: Path
) -> None:
    for name in ("critic", "critic-dlq"):
        _drain(world, name)
    (world.settings.state_dir / FAILING_KINDS_FILE).write_text("quota schema")
    workers.start("critic", "fails_as_told")
    store = IncidentStore(world.clients(Principal.ADMIN)("dynamodb"))
    probe = f"mixed-{tmp_path.name}"
    sqs = _sqs(world)
    url = sqs.get_queue_url(QueueName="critic")["QueueUrl"]
    for kind, n in (("quota", 4), ("schema", 3)):
        for i in range(n):
            payload = {"kind": kind, "probe": probe, "why": f"{kind} exceeded {i}"}
            sqs.send_message(
                QueueUrl=url,
                MessageBody=new_event(EventType.PROPOSED, "test", payload).model_dump_json(),
            )
    sqs.send_message(QueueUrl=url, MessageBody="{not json")
    wait_for(lambda: _depth(world, "critic-dlq")[0] == 8, 60, "eight dead letters")

    page = log_in(chromium, world, tmp_path)
    page.goto(console_url(world) + "/dlq/critic-dlq")
    expect(page.locator("tr.letter")).to_have_count(8)
    page.fill('#filter input[name="reason"]', "quota")
    page.click("#apply-filter")
    expect(page.locator("tr.letter")).to_have_count(4)
    expect(page.locator("tr.letter .reason").first).to_contain_text("NonRetryableError")
    page.screenshot(path=str(tmp_path / "dlq-filtered.png"), full_page=True)

    page.fill("#limit", "2")
    page.click("#plan")
    expect(page.locator("#plan-count")).to_have_text("2")
    planned = page.locator("#plan-ids code").all_inner_texts()
    assert len(planned) == 2 and _depth(world, "critic-dlq")[0] == 8  # nothing moved
    page.screenshot(path=str(tmp_path / "dry-run.png"), full_page=True)

    (world.settings.state_dir / FAILING_KINDS_FILE).write_text("schema")  # quota fixed
    page.fill("#as", "dana")
    page.click("#redrive-plan")
    expect(page.locator("#status")).to_have_text("done", timeout=30_000)
    expect(page.locator("#result")).to_contain_text("2 moved")
    page.click("#report")
    outcomes = page.locator("tr.outcome")
    expect(outcomes).to_have_count(2)
    assert sorted(outcomes.evaluate_all("rows => rows.map(r => r.dataset.messageId)")) == sorted(
        planned
    )
    # Each redriven message's outcome, written by the worker that handled it.
    expect(page.locator('tr.outcome[data-outcome="processed"]')).to_have_count(2, timeout=60_000)
    page.screenshot(path=str(tmp_path / "redrive-outcomes.png"), full_page=True)
    wait_for(lambda: len(store.context(probe, "run#")) == 2, 30, "the two handled")

    page.click('a[href="/dlq-audit"]')
    entries = page.locator("tr.entry")
    expect(entries.first).to_contain_text("redrive finished")
    expect(entries.first.locator(".who")).to_contain_text("dana (console)")
    expect(entries.nth(1)).to_contain_text("reason=quota")
    page.screenshot(path=str(tmp_path / "audit.png"), full_page=True)
    page.goto(console_url(world) + "/dlq/critic-dlq")
    expect(page.locator("tr.letter")).to_have_count(6)  # the other six stay dead letters


def test_a_slow_redrive_cancelled_half_way_loses_nothing(
    world: RunningWorld, workers: Workers, chromium: Browser, tmp_path: Path
) -> None:
    for name in ("watchdog", "watchdog-dlq"):
        _drain(world, name)
    worker = workers.start("watchdog", "noop")
    sqs = _sqs(world)
    url = sqs.get_queue_url(QueueName="watchdog")["QueueUrl"]
    for i in range(30):  # unreadable: dead-lettered at once, with their records
        sqs.send_message(QueueUrl=url, MessageBody=f"not json {i} {{")
    wait_for(lambda: _depth(world, "watchdog-dlq")[0] == 30, 60, "thirty dead letters")
    terminate([worker], 30)  # nobody takes what is redriven: it can be counted

    page = log_in(chromium, world, tmp_path)
    page.goto(console_url(world) + "/dlq/watchdog-dlq")
    page.check("#scope-all")
    page.fill('#redrive-form input[name="rate"]', "2")
    page.click("#redrive")
    wait_for(lambda: _depth(world, "watchdog")[0] >= 3, 60, "a few moved")
    page.click("#cancel")
    expect(page.locator("#status")).to_have_text("done", timeout=30_000)
    expect(page.locator("#result")).to_contain_text("cancelled")
    page.screenshot(path=str(tmp_path / "cancelled.png"))
    moved = int(page.locator("#moved").inner_text())
    assert 3 <= moved < 30
    # Every message is in one place or the other, once, and none is held.
    wait_for(lambda: _depth(world, "watchdog-dlq")[1] == 0, 30, "the rest handed back")
    assert _depth(world, "watchdog") == (moved, 0)
    assert _depth(world, "watchdog-dlq") == (30 - moved, 0)
    page.click("#report")
    expect(page.locator("tr.outcome")).to_have_count(moved)
    _drain(world, "watchdog")
    _drain(world, "watchdog-dlq")


def test_the_queues_page_fits_1280_pixels_and_charts_each_depth(
    world: RunningWorld, chromium: Browser, tmp_path: Path
) -> None:
    _drain(world, "resolver-dlq")
    page = log_in(chromium, world, tmp_path)
    page.set_viewport_size({"width": 1280, "height": 800})
    chart = page.locator('svg.spark[data-queue="resolver"]')
    expect(chart.locator("polyline.depth")).to_have_count(1)
    sqs = _sqs(world)
    sqs.send_message(
        QueueUrl=sqs.get_queue_url(QueueName="resolver-dlq")["QueueUrl"], MessageBody="{}"
    )
    # The chart's DLQ line follows the depth as the page refreshes itself.
    expect(chart).to_have_attribute("data-last-dlq", "1", timeout=30_000)
    assert int(chart.get_attribute("data-samples") or 0) >= 2
    # Nothing runs off the right edge: the table and the incident statuses fit.
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280
    page.screenshot(path=str(tmp_path / "queues-1280.png"), full_page=True)
    _drain(world, "resolver-dlq")


def test_an_escalation_says_what_a_person_needs_and_its_quotes_stay_text(
    world: RunningWorld, chromium: Browser, tmp_path: Path
) -> None:
    store = IncidentStore(world.clients(Principal.ADMIN)("dynamodb"))
    incident_id = record_two_rounds_then_escalated(store, "report-browser")
    page = log_in(chromium, world, tmp_path)
    page.click('a[href="/incidents"]')
    page.click('#status-filter a[href="/incidents?status=RECOVERED"]')
    expect(page.locator("h1")).to_have_text("Incidents: RECOVERED")
    page.click('#status-filter a[href="/incidents?status=ESCALATED"]')
    row = page.locator(f'tr[data-incident="{incident_id}"]')
    expect(row.locator(".symptoms")).to_have_text("errors, throttles")
    expect(row.locator(".round")).to_have_text("2")
    page.screenshot(path=str(tmp_path / "incidents-escalated.png"))
    row.locator("a").click()

    handover = page.locator("#handover")
    expect(handover).to_be_visible()
    expect(page.locator("#why")).to_have_text("Why the fleet stopped: confidence 0.45 < 0.6")
    expect(page.locator("#next-step")).to_contain_text(NEXT_STEP)
    expect(page.locator("#hypothesis")).to_contain_text("code_bug, config_drift, confidence 0.45")
    expect(page.locator("#ruled-out li")).to_have_count(2)
    expect(page.locator("#unseen")).to_contain_text("logs before 10:02")
    expect(page.locator("#who-changed")).to_contain_text("not looked up here")
    # The quoted log line is shown as the text it is; nothing in it ran.
    expect(handover.locator("pre.quote")).to_contain_text(
        "KeyError: 'records' <script>window.__owned = 1</script><img src=x"
    )
    assert page.evaluate("window.__owned") is None
    assert page.locator("#handover script, #handover img").count() == 0
    expect(page.locator('section.round[data-round="1"] .ended-because')).to_have_text(
        ROUND_2_BECAUSE
    )
    expect(page.locator('section.round[data-round="2"] h2')).to_have_text("Round 2 (current)")
    page.screenshot(path=str(tmp_path / "incident-escalated.png"), full_page=True)
