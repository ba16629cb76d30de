"""A real browser for the tests: Debian's Chromium driven by Playwright, one context per visitor.

    with sync_playwright() as p:
        browser = launch_chromium(p)
        page = open_visitor(browser, app.url, errors)   # its own localStorage: its own workspace
        wait_text(page, "train-progress", "Finished")

A missing Chromium or Playwright fails the test (it never skips): CI must run the browser tests.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--no-first-run", "--disable-sync"]
WAIT_MS = 120_000
DESKTOP = {"width": 1400, "height": 1000}
PHONE = {"width": 390, "height": 844}


@contextlib.contextmanager
def chromium():
    """Playwright's Chromium for one module's tests (a missing driver fails them: CI must run them)."""
    from playwright.sync_api import sync_playwright
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            yield browser
        finally:
            browser.close()


def launch_chromium(playwright):
    if not os.path.exists(CHROMIUM):
        pytest.fail("Chromium is missing: ./dev test installs it with apt (chromium, chromium-driver)")
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)


def open_visitor(browser, url: str, errors: list, viewport: dict = DESKTOP):
    """A new visitor: a browser context of their own (own localStorage), on the app's page. Page
    errors and console errors are appended to `errors`."""
    page = browser.new_context(viewport=viewport).new_page()
    page.on("pageerror", lambda error: errors.append(f"page error: {error}"))
    page.on("console", lambda message: errors.append(f"console: {message.text}")
            if message.type == "error" else None)
    page.goto(url)
    page.get_by_role("heading", name=re.compile("Alien vs. Predator")).wait_for()
    return page


def set_number(page, elem_id: str, value) -> None:
    box = page.locator(f"#{elem_id} input[type=number]")
    box.fill(str(value))
    box.press("Tab")


def wait_text(page, elem_id: str, pattern: str, timeout: int = WAIT_MS) -> None:
    """Until the element's visible text matches the regular expression `pattern`."""
    page.wait_for_function(
        "([id, source]) => new RegExp(source).test(document.querySelector('#' + id)?.innerText ?? '')",
        arg=[elem_id, pattern], timeout=timeout)


def start_tiny_run(page, epochs: int, batch_size: int, framework: str | None = None) -> None:
    """On the Train tab: tiny images (32 px), random initialisation, the given settings, Start."""
    page.get_by_role("tab", name="Train").click()
    if framework:
        page.locator("#framework").get_by_text(framework, exact=True).click()
    set_number(page, "epochs", epochs)
    set_number(page, "batch-size", batch_size)
    set_number(page, "image-size", 32)
    page.locator("#weights").get_by_text("none", exact=True).click()
    page.get_by_role("button", name="Start").click()
