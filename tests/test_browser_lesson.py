"""A lesson without stumbles (issue 18), walked in a real browser (Debian Chromium through
Playwright) on a server where ImageNet weights cannot be had: a first Start trains at once from
random initialisation and the log says so in one plain line; the previous run's line is named in
the chart's legend; the data check follows the data set chosen; the Augment tab's Keras side never
shows old samples beside new PyTorch ones; Predict says at once that it works, and on a phone its
results come right under the button; the heatmaps' labels are whole and nothing covers the maps.
Any page or console error fails the test."""

import re

import pytest

from support.browser import PHONE, WAIT_MS, chromium, open_visitor, set_number, wait_text
from support.launch import start_app

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The app on generated images with a PyTorch reference model, and no way to ImageNet weights:
    empty weight caches, and every https request sent to a proxy that is not there."""
    from test_app import zip_of

    from conftest import make_dataset
    from trainer import runner
    from trainer.config import TrainConfig
    base = tmp_path_factory.mktemp("lesson")
    data = make_dataset(base / "data" / "toy", per_class=(16, 4), size=40)
    runner.train(TrainConfig(framework="pytorch", data_dir=str(data), out_dir=str(base / "reference"), epochs=1,
                             batch_size=8, image_size=32, head_units=16, weights="none"))
    offline = {"TORCH_HOME": str(base / "torch"), "KERAS_HOME": str(base / "keras"),
               "https_proxy": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9", "no_proxy": "127.0.0.1"}
    app = start_app(base / "reference", base / "workspaces", data_dir=base / "data", log=base / "app.log",
                    env=offline)
    upload = zip_of(make_dataset(base / "holiday", per_class=(6, 3), size=40), base / "holiday.zip")
    yield app.url, upload
    app.stop()


@pytest.fixture(scope="module")
def browser(server):
    with chromium() as browser:
        yield browser


def log(page) -> str:
    return page.locator("#train-log textarea").input_value()


def wait_log(page, pattern: str, timeout: int = 240_000) -> None:
    page.wait_for_function("source => new RegExp(source).test(document.querySelector('#train-log textarea')"
                           "?.value ?? '')", arg=pattern, timeout=timeout)


def test_a_first_start_trains_and_the_page_follows_the_visitors_choices(browser, server):
    url, upload = server
    errors = []
    page = open_visitor(browser, url, errors)
    page.get_by_role("tab", name="Train").click()

    # No ImageNet weights here: the form starts from random initialisation and says why
    wait_text(page, "weights-note", "because ImageNet weights cannot be had")
    assert page.locator("#weights input[value=none]").is_checked()
    assert page.locator("#allow-random-init input[type=checkbox]").is_checked()

    # The data check follows the data set chosen
    page.locator("#upload-zip input[type=file]").set_input_files(upload)
    wait_text(page, "data-check", r"holiday\.zip: 2 classes")
    page.locator("#dataset input").click()
    page.get_by_role("option", name="toy (on the server)").click()
    wait_text(page, "data-check", r"toy: 2 classes[\s\S]*train: 32 images")

    # A first Start, the weights as they came: it trains
    page.locator("#framework").get_by_text("pytorch", exact=True).click()
    set_number(page, "epochs", 1)
    set_number(page, "batch-size", 8)
    set_number(page, "image-size", 32)
    page.get_by_role("button", name="Start").click()
    wait_text(page, "train-progress", "Finished", timeout=240_000)
    assert "random initialisation" in log(page)

    # ImageNet asked for, random initialisation allowed: one plain line, no error's insides
    page.locator("#weights").get_by_text("imagenet", exact=True).click()
    page.get_by_role("button", name="Start").click()
    wait_log(page, "as allowed")
    wait_log(page, "pytorch: saved")
    text = log(page)
    warnings = [line for line in text.splitlines() if line.startswith("warning:")]
    assert any("training from random initialisation, as allowed" in line for line in warnings), text
    assert not re.search(r"URLError|Errno|http|--weights", text), text
    assert " 0 of " not in text  # the feature bank's line of a first run does not read as a failure

    # The chart's legend names the previous run's pale line
    wait_text(page, "train-chart", r"pytorch \(previous run\)")
    assert errors == [], errors


def test_the_keras_side_shows_no_old_samples_beside_new_pytorch_ones(browser, server):
    url, _ = server
    errors = []
    page = open_visitor(browser, url, errors)
    page.locator("#keras-samples img").nth(7).wait_for(timeout=WAIT_MS)
    page.locator("#torch-samples img").nth(7).wait_for(timeout=WAIT_MS)
    sources = "(id) => [...document.querySelectorAll('#' + id + ' img')].map(i => i.src)"
    old_keras, old_torch = page.evaluate(sources, "keras-samples"), page.evaluate(sources, "torch-samples")
    page.locator("#augment-examples img").first.click()
    # the moment the PyTorch side is new, the Keras side is new too or says it follows
    page.wait_for_function("([id, old]) => { const now = [...document.querySelectorAll('#' + id + ' img')]"
                           ".map(i => i.src); return now.length == 8 && !now.some(s => old.includes(s)); }",
                           arg=["torch-samples", old_torch], timeout=WAIT_MS)
    keras_now = page.evaluate(sources, "keras-samples")
    assert not set(keras_now) & set(old_keras), "the Keras side kept the old samples"
    if not keras_now:
        assert "follow" in page.locator("#keras-values").inner_text()
    page.wait_for_function("([id, old]) => { const now = [...document.querySelectorAll('#' + id + ' img')]"
                           ".map(i => i.src); return now.length == 8 && !now.some(s => old.includes(s)); }",
                           arg=["keras-samples", old_keras], timeout=WAIT_MS)
    assert "zoom" in page.locator("#keras-values").inner_text()
    captions = page.locator("#torch-samples .caption-label").evaluate_all(
        "nodes => nodes.map(n => n.scrollWidth <= n.clientWidth)")
    assert captions and all(captions), "a thumbnail's caption is cut off"
    assert errors == [], errors


def test_predict_says_it_works_at_once_and_on_a_phone_the_results_come_under_the_button(browser, server):
    url, _ = server
    errors = []
    page = open_visitor(browser, url, errors, viewport=PHONE)
    page.get_by_role("tab", name="Predict").click()
    page.locator("#explain input[type=checkbox]").check()
    page.locator("#predict-examples").get_by_text("bright/0.jpg", exact=True).click()
    wait_text(page, "predict-files", r"\.jpg")
    page.locator("#predict-button").click()
    wait_text(page, "predict-status", "Predicting 1 image", timeout=10_000)  # before the models have loaded
    assert "PyTorch: reference model" not in page.locator("#predictions").inner_text()
    wait_text(page, "predictions", "PyTorch: reference model")
    button = page.locator("#predict-button").bounding_box()
    image = page.locator("#predictions img").first.bounding_box()
    cards = page.locator("#model-cards").bounding_box()
    assert image["y"] < cards["y"], "the results are below the model cards"
    assert image["y"] - (button["y"] + button["height"]) < 300, (button, image)

    # the heatmap: its label whole under it, no buttons over the map
    page.locator("#heatmaps .heatmap img").first.wait_for(timeout=WAIT_MS)
    wait_text(page, "predict-status", "^\\s*$")
    heatmap = page.locator("#heatmaps .heatmap").first
    assert heatmap.locator("button:not(:has(img))").count() == 0  # no icons over the map (it is a button itself)
    assert heatmap.inner_text().strip().startswith("PyTorch: reference model, ")
    assert "bright/0.jpg" in page.locator("#heatmaps").inner_text()
    whole = heatmap.locator("p").evaluate_all("nodes => nodes.every(n => n.scrollWidth <= n.clientWidth)")
    assert whole

    # the class switch says it works, then shows the other class's heatmaps
    predicted = heatmap.inner_text().strip()
    page.locator("#explain-class").get_by_text("runner-up class").click()
    wait_text(page, "predict-status", "Drawing the heatmaps", timeout=10_000)
    page.wait_for_function("old => { const map = document.querySelector('#heatmaps .heatmap');"
                           "return map && map.querySelector('img') && map.innerText.trim() != old; }",
                           arg=predicted, timeout=WAIT_MS)
    assert errors == [], errors
