"""Driving the console in a real headless browser (Debian's Chromium, through Playwright;
the `chromium` fixture is tests/integration/conftest.py's): its address, and logging in as
an operator does."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Browser, Page, expect

from tests.integration.conftest import RunningWorld


def console_url(world: RunningWorld) -> str:
    return f"http://{world.settings.console_host}:{world.settings.console_port}"


def log_in(chromium: Browser, world: RunningWorld, shots: Path) -> Page:
    page = chromium.new_context().new_page()
    page.goto(console_url(world) + "/queues")
    expect(page.locator("#token")).to_be_visible()  # the login form, not the queues
    page.screenshot(path=str(shots / "login.png"))
    page.fill("#token", world.settings.console_token_file.read_text().strip())
    page.click("#login")
    expect(page.locator("#queues")).to_be_visible()
    page.screenshot(path=str(shots / "queues.png"))
    return page
