"""A student's walk through the Train tab in a real browser (Debian Chromium through Playwright):
trains both frameworks and sees the loss plot grow, then the comparison of the two (how often they
agree, the images they disagree on, one click away); stops a second run and still sees the first
run's results; and on a phone, Start and the chart fill the first screen and the Augment tab is
short. Any page or console error fails the test."""

import re

import pytest

from support.browser import PHONE, WAIT_MS, chromium, open_visitor, set_number, start_tiny_run, wait_text
from support.launch import toy_app

pytestmark = pytest.mark.slow
AUGMENT_MAX_PX = 3600  # the phone's Augment tab was ~5200 px tall with its code panes open


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    app, _ = toy_app(tmp_path_factory.mktemp("walk"), per_class=(24, 8), reference=None)
    yield app.url
    app.stop()


@pytest.fixture(scope="module")
def browser(url):
    with chromium() as browser:
        yield browser


def points(page) -> int:
    found = re.search(r"(\d+) points", page.locator("#train-chart").inner_text())
    return int(found.group(1)) if found else 0


def test_a_student_compares_both_frameworks_and_keeps_the_results_after_stop(browser, url):
    errors = []
    page = open_visitor(browser, url, errors)
    start_tiny_run(page, epochs=2, batch_size=4)
    wait_text(page, "train-chart", r"[1-9]\d* points")
    seen = points(page)
    page.wait_for_function("n => +(/(\\d+) points/.exec(document.querySelector('#train-chart').innerText) "
                           "|| [0, 0])[1] > n", arg=seen, timeout=WAIT_MS)  # the plot grows
    wait_text(page, "train-progress", "Finished", timeout=240_000)
    wait_text(page, "train-chart", "keras")  # the legend names both frameworks, each drawn in its colour
    for colour in ("#d00000", "#ee8c00"):
        assert page.locator(f"#train-chart path[stroke='{colour}']").count() >= 1, colour

    wait_text(page, "train-results", r"agree on \d+ of 16 validation images")
    results = page.locator("#train-results").inner_text()
    assert "Results of this run" in results and "UTC" in results
    for row in ("seconds per epoch", "one prediction", "parameters: trainable / total", "model file size"):
        assert row in results
    agree = int(re.search(r"agree on (\d+) of 16", results).group(1))
    if agree < 16:  # the disagreements, one click away
        page.locator("#disagree-box").get_by_text("disagree on").click()
        page.locator("#disagreements img").first.wait_for(timeout=WAIT_MS)
        assert "Keras: " in page.locator("#disagreements").inner_text()
    else:
        assert not page.locator("#disagree-box").is_visible()

    # A second run, stopped: the first run's results stay, named as such
    set_number(page, "epochs", 20)
    set_number(page, "batch-size", 1)
    page.get_by_role("button", name="Start").click()
    wait_text(page, "train-progress", "batch [1-9]")
    page.get_by_role("button", name="Stop").click()
    wait_text(page, "train-progress", "Stopped by Stop")
    wait_text(page, "train-results", "Results of your last finished run")
    assert f"agree on {agree} of 16" in page.locator("#train-results").inner_text()

    # The same page on a phone: Start and the chart, with its data and legend, on the first screen
    page.set_viewport_size(PHONE)
    page.evaluate("window.scrollTo(0, 0)")
    assert_on_first_screen(page)
    assert errors == [], errors


def assert_on_first_screen(page) -> None:
    for target in (page.get_by_role("button", name="Start"), page.locator("#train-chart")):
        box = target.bounding_box()
        assert box and box["y"] + box["height"] <= PHONE["height"], box


def test_on_a_phone_start_and_the_chart_come_first_and_augment_is_short(browser, url):
    errors = []
    page = open_visitor(browser, url, errors, viewport=PHONE)
    page.locator("#torch-samples img").nth(7).wait_for(timeout=WAIT_MS)
    page.locator("#keras-samples img").nth(7).wait_for(timeout=WAIT_MS)
    height = page.evaluate("document.documentElement.scrollHeight")
    assert height < AUGMENT_MAX_PX, f"the Augment tab is {height} px tall on a phone"
    assert "zoom" in page.locator("#keras-values").inner_text()

    page.get_by_role("tab", name="Train").click()
    page.evaluate("window.scrollTo(0, 0)")
    assert_on_first_screen(page)
    assert errors == [], errors
