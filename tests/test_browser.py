"""A new user in a real browser (Debian Chromium through Playwright): preview augmentations, train
both frameworks on a generated data set and watch the chart grow, predict, then start and stop."""

import os
import re
import shutil
import socket
import subprocess
import sys
import time

import pytest

from conftest import ROOT, make_dataset

pytestmark = pytest.mark.slow
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--no-first-run", "--disable-sync"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("browser")
    data = make_dataset(base / "data", per_class=(24, 4), size=40)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "GRADIO_SERVER_PORT": str(port), "AVP_DATA_DIR": str(data),
           "AVP_MODELS_DIR": str(base / "models"), "AVP_RUNS_DIR": str(base / "runs")}
    process = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env,
                               stdout=open(base / "app.log", "w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.2)
    yield url, data
    process.terminate()
    process.wait(10)


@pytest.fixture(scope="module")
def page(server):
    playwright = pytest.importorskip("playwright.sync_api")
    if not os.path.exists(CHROMIUM):
        pytest.fail("Chromium is missing: ./dev test installs it with apt (chromium, chromium-driver)")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(server[0])
        yield page
        browser.close()


def set_number(page, elem_id, value):
    box = page.locator(f"#{elem_id} input[type=number]")
    box.fill(str(value))
    box.press("Tab")


def chart_points(page) -> int:
    label = page.locator("#train-chart").inner_text()
    match = re.search(r"(\d+) points", label)
    return int(match.group(1)) if match else 0


def test_a_user_previews_trains_predicts_and_stops(page, server):
    _, data = server
    page.get_by_role("heading", name=re.compile("Alien vs. Predator")).wait_for()

    # Augment: both frameworks' samples appear, with the values drawn
    page.locator("#keras-samples img").nth(7).wait_for(timeout=90_000)
    page.locator("#torch-samples img").nth(7).wait_for(timeout=30_000)
    assert "zoom" in page.locator("#keras-samples").inner_text()

    # Train both frameworks, tiny settings, random initialisation
    page.get_by_role("tab", name="Train").click()
    set_number(page, "epochs", 2)
    set_number(page, "batch-size", 8)
    set_number(page, "image-size", 32)
    page.locator("#weights").get_by_text("none", exact=True).click()
    page.get_by_role("button", name="Start").click()
    page.wait_for_function("() => /([1-9]\\d*) points/.test(document.querySelector('#train-chart').innerText)",
                           timeout=120_000)
    first = chart_points(page)
    page.get_by_text("Finished").first.wait_for(timeout=240_000)
    assert chart_points(page) > first
    log = page.locator("#train-log textarea").input_value()
    assert "random initialisation" in log and "keras: saved" in log and "pytorch: saved" in log

    # Predict with both models
    page.get_by_role("tab", name="Predict").click()
    page.locator("#predict-files input[type=file]").set_input_files(str(data / "validation" / "bright" / "0.jpg"))
    page.get_by_role("button", name="Predict").click()
    results = page.locator("#predictions")
    results.get_by_text("PyTorch", exact=True).first.wait_for(timeout=90_000)
    text = results.inner_text()
    assert "Keras" in text and "bright" in text and "dark" in text and " ms" in text

    # Start a longer run and stop it
    page.get_by_role("tab", name="Train").click()
    set_number(page, "epochs", 20)
    page.locator("#framework").get_by_text("pytorch", exact=True).click()
    page.get_by_role("button", name="Start").click()
    page.get_by_text("Running").first.wait_for(timeout=60_000)
    page.wait_for_function("() => /batch [1-9]/.test(document.querySelector('#train-progress').innerText)",
                           timeout=60_000)
    page.get_by_role("button", name="Stop").click()
    page.get_by_text("Stopped by Stop").first.wait_for(timeout=60_000)
