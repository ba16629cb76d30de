"""A visitor in a real browser (Debian Chromium through Playwright) picks an example image,
predicts, asks for the heatmaps of both frameworks' reference models, switches the class they
explain, downloads a model, and the script in the download predicts what the app predicted."""

import json
import subprocess
import sys
import zipfile

import pytest

from support.browser import WAIT_MS, chromium, open_visitor, start_tiny_run, wait_text
from support.launch import toy_app

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The app with a server data set `toy` and reference models of both frameworks, trained with
    the runner (as the CLI trains them)."""
    base = tmp_path_factory.mktemp("explain")
    app, data = toy_app(base, per_class=(12, 3), reference="both")
    yield app.url, data, base / "reference"
    app.stop()


@pytest.fixture(scope="module")
def browser(server):
    with chromium() as browser:
        yield browser


def heatmap_labels(page) -> list[str]:
    return page.locator("#heatmaps .heatmap").evaluate_all("nodes => nodes.map(n => n.innerText.trim())")


def test_explain_switch_class_and_take_a_model_home(browser, server, tmp_path):
    from trainer.predictor import Predictor
    url, data, reference = server
    errors = []
    page = open_visitor(browser, url, errors)
    page.get_by_role("tab", name="Predict").click()

    # an example fills the file input, and Predict predicts it
    page.locator("#predict-examples").get_by_text("bright/0.jpg", exact=True).click()
    wait_text(page, "predict-files", r"\.jpg")  # the file component shows "0", ".jpg"
    page.get_by_role("button", name="Predict", exact=True).click()
    wait_text(page, "predictions", "PyTorch: reference model")
    assert "Keras: reference model" in page.locator("#predictions").inner_text()

    # Explain: one heatmap per framework, each labelled with its model and class
    page.locator("#explain input[type=checkbox]").check()
    page.locator("#heatmaps .heatmap img").nth(1).wait_for(timeout=WAIT_MS)
    predicted = heatmap_labels(page)
    assert [label.split(",")[0] for label in predicted] == [
        "Keras: reference model", "PyTorch: reference model"], predicted
    page.locator("#explain-class").get_by_text("runner-up class").click()
    page.wait_for_function("(old) => { const now = [...document.querySelectorAll('#heatmaps .heatmap')]"
                           ".map(n => n.innerText.trim()); return now.length == 2 && now.join() != old; }",
                           arg=",".join(predicted), timeout=WAIT_MS)
    runner_up = heatmap_labels(page)
    for before, after in zip(predicted, runner_up):  # the other class of bright/dark
        assert {before.rsplit(", ", 1)[1], after.rsplit(", ", 1)[1]} == {"bright", "dark"}

    # take the Keras reference model home
    page.locator("#download-button").click()
    link = page.locator("#download-file a").first
    link.wait_for(timeout=WAIT_MS)
    response = page.request.get(link.get_attribute("href"))
    assert response.ok and "keras-reference-model" in page.locator("#download-file").inner_text()
    (tmp_path / "model.zip").write_bytes(response.body())
    assert not errors, errors

    home = tmp_path / "home"
    zipfile.ZipFile(tmp_path / "model.zip").extractall(home)
    image = str(data / "validation" / "bright" / "0.jpg")
    run = subprocess.run([sys.executable, "predict_keras.py", image], cwd=home, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    printed = json.loads(run.stdout.strip().splitlines()[-1])["probabilities"]
    predictor = Predictor(reference)
    predictor.refresh()
    app = predictor.predict_file(image)["keras"]["probabilities"]
    assert printed == pytest.approx(app, abs=1e-4)


def test_after_a_training_the_cards_and_heatmaps_show_the_visitors_model(browser, server):
    """The model cards do not keep saying "none yet": selecting the Predict tab after a training
    reads them again, and Explain then shows the visitor's own model beside the reference ones."""
    url, data, _ = server
    errors = []
    page = open_visitor(browser, url, errors)
    page.get_by_role("tab", name="Predict").click()
    wait_text(page, "model-cards", "PyTorch: your model\\s+none yet")
    start_tiny_run(page, epochs=1, batch_size=8, framework="pytorch")
    wait_text(page, "train-progress", "Finished", timeout=240_000)
    page.get_by_role("tab", name="Predict").click()
    wait_text(page, "model-cards", "PyTorch: your model\\s+trained")
    page.locator("#explain input[type=checkbox]").check()
    page.locator("#predict-files input[type=file]").set_input_files(str(data / "validation" / "dark" / "0.jpg"))
    page.locator("#heatmaps .heatmap img").nth(2).wait_for(timeout=WAIT_MS)
    assert any("PyTorch: your model" in label for label in heatmap_labels(page))
    assert not errors, errors

