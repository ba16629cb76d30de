"""Visitors in a real browser (Debian Chromium through Playwright), each in a browser context of
their own: A previews augmentations, trains, predicts and starts a long run; B cannot stop it, queues
behind another student and sees the position count down; A's models are untouched by B's training;
a reload brings back A's workspace and settings."""

import re

import pytest

from conftest import ROOT
from support.browser import WAIT_MS, chromium, open_visitor, set_number, start_tiny_run, wait_text
from support.launch import toy_app
from support.visitor import Visitor
from trainer.config import TrainConfig

pytestmark = pytest.mark.slow
@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The app with a server data set `toy` and reference PyTorch models trained with the CLI."""
    app, data = toy_app(tmp_path_factory.mktemp("browser"), per_class=(24, 4), reference="pytorch")
    yield app.url, data
    app.stop()


@pytest.fixture(scope="module")
def browser(server):
    with chromium() as browser:
        yield browser


def predicted(page, image) -> str:
    """The Predict tab's results row of one image (dropping it in predicts it; earlier images stay
    listed), without the latencies (they vary). Consecutive calls must use differently named
    images, so that the row is known fresh."""
    page.get_by_role("tab", name="Predict").click()
    page.locator("#predict-files input[type=file]").set_input_files(str(image))
    wait_text(page, "predictions", f"{re.escape(image.name)}[\\s\\S]*PyTorch: your model")
    lines = page.locator("#predictions").inner_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line in (image.name, f"{image.parent.name}/{image.name}"))
    end = next(i for i in range(start, len(lines)) if lines[i].endswith(" ms"))
    return re.sub(r"\d+ ms", "", "\n".join(lines[start:end + 1]))


def test_visitors_train_queue_and_keep_their_own_models(browser, server):
    url, data = server
    errors = []
    a = open_visitor(browser, url, errors)

    # Augment: both frameworks' samples, with the values drawn
    a.locator("#keras-samples img").nth(7).wait_for(timeout=WAIT_MS)
    a.locator("#torch-samples img").nth(7).wait_for(timeout=WAIT_MS)
    assert "zoom" in a.locator("#keras-values").inner_text()

    # A trains PyTorch on the server's data set, tiny settings, random initialisation
    start_tiny_run(a, epochs=2, batch_size=8, framework="pytorch")
    wait_text(a, "train-chart", r"[1-9]\d* points")
    wait_text(a, "train-progress", "Finished")
    assert "pytorch: saved" in a.locator("#train-log textarea").input_value()

    # A predicts: the reference model and A's own, side by side
    image = data / "validation" / "bright" / "0.jpg"
    before = predicted(a, image)
    assert "PyTorch: reference model" in before

    # A starts a long run; another student queues; B arrives
    a.get_by_role("tab", name="Train").click()
    set_number(a, "epochs", 20)
    set_number(a, "batch-size", 1)
    a.get_by_role("button", name="Start").click()
    wait_text(a, "train-progress", "batch [1-9]")
    other = Visitor(url)
    other.start(TrainConfig(data_dir="", framework="pytorch", epochs=1, image_size=32, weights="none"), "server/toy")
    b = open_visitor(browser, url, errors)
    b.get_by_role("tab", name="Train").click()
    wait_text(b, "train-queue", "busy: 1 run training, 1 waiting")
    assert not b.get_by_role("button", name="Stop").is_enabled()  # nothing of B's to stop; A's is A's
    b.locator("#framework").get_by_text("keras", exact=True).click()
    set_number(b, "epochs", 1)
    set_number(b, "image-size", 32)
    b.locator("#weights").get_by_text("none", exact=True).click()
    b.get_by_role("button", name="Start").click()
    wait_text(b, "train-progress", "number 2")
    assert "Running" in a.locator("#train-progress").inner_text()
    assert "bright" not in b.locator("#train-log textarea").input_value()  # B sees nothing of A's run

    a.get_by_role("button", name="Stop").click()
    wait_text(a, "train-progress", "Stopped by Stop")
    wait_text(b, "train-progress", "number 1")  # the position counts down
    wait_text(b, "train-progress", "Finished", timeout=240_000)
    assert "keras: saved" in b.locator("#train-log textarea").input_value()

    # A's models are A's: B's training changed nothing of what A's Predict tab shows
    predicted(a, data / "validation" / "dark" / "1.jpg")
    assert predicted(a, image) == before

    # A reload keeps A's workspace and settings
    assert not errors, errors
    a.reload()
    a.get_by_role("heading", name=re.compile("Alien vs. Predator")).wait_for()
    # Requests of the page being left (its timer's poll, its event stream) are cut off by the reload:
    # the browser reports that, and it is no error of the app's.
    errors[:] = [e for e in errors if "AbortError" not in e and "Connection errored out" not in e]
    a.get_by_role("tab", name="Train").click()
    wait_text(a, "train-progress", "Stopped by Stop")
    assert a.locator("#epochs input[type=number]").input_value() == "20"
    assert a.locator("#framework input[value=pytorch]").is_checked()
    assert not errors, errors
    for page in (a, b):  # no server folder reaches the page (gradio's own upload cache aside)
        html = page.content()
        for folder in (str(data.parents[1]), str(ROOT)):
            assert folder not in html, folder


def test_the_api_example_in_the_readme_runs(server, capsys):
    """The README's gradio_client example, as written there, against the live app: it starts a run,
    polls it and predicts (only the address, the data set, the image and, offline, the weights
    are swapped)."""
    url, data = server
    readme = (ROOT / "README.md").read_text()
    block = readme.split("<!-- api-example", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    swaps = {"http://127.0.0.1:7860/": url, "server/avp": "server/toy",
             '"alien.jpg"': repr(str(next(data.rglob("*.jpg")))), '"allow_random_init": True': '"weights": "none"'}
    for old, new in swaps.items():
        assert old in block, old
        block = block.replace(old, new)
    exec(compile(block, "README.md", "exec"), {})
    printed = capsys.readouterr().out
    assert "['server/toy']" in printed and "done [{" in printed and "'bright':" in printed


HOSTILE_CLASSES = ("<img src=x onerror=alert(1)>", "![pic](https:evil.example) [go](javascript:alert(2))",
                   "<svg onload=alert(3)>\x1b[31m\x07")


def hostile_zip(folder, target):
    """A data set whose class and file names are HTML, SVG, Markdown links and images, and control
    characters."""
    import zipfile

    from PIL import Image
    with zipfile.ZipFile(target, "w") as archive:
        for split, count in (("train", 6), ("validation", 2)):
            for label, name in enumerate(HOSTILE_CLASSES):
                for i in range(count):
                    image = folder / f"{label}-{i}.jpg"
                    Image.new("RGB", (40, 40), (230, 230, 230) if label == 0 else (20 * label, 0, 0)).save(image)
                    archive.write(image, f"{split}/{name}/<b onmouseover=alert(4)>{i}.jpg")
    return target


def test_hostile_names_show_as_text_and_run_nothing(browser, server, tmp_path):
    url, _ = server
    errors, dialogs, foreign = [], [], []
    page = open_visitor(browser, url, errors)
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.on("request", lambda request: foreign.append(request.url)
            if not request.url.startswith((url.rstrip("/"), "data:", "blob:")) else None)
    page.get_by_role("tab", name="Train").click()
    page.locator("#upload-zip input[type=file]").set_input_files(str(hostile_zip(tmp_path, tmp_path / "evil <i>.zip")))
    wait_text(page, "data-check", "3 classes")
    shown = page.locator("#data-check").inner_text()
    assert "<img src=x onerror=alert(1)>" in shown and "<svg onload=alert(3)>" in shown
    assert "![pic](https:evil.example) [go](javascript:alert(2))" in shown
    assert page.locator("#data-check img, #data-check svg[onload], #data-check a").count() == 0

    page.locator("#framework").get_by_text("pytorch", exact=True).click()
    set_number(page, "epochs", 1)
    set_number(page, "image-size", 32)
    page.locator("#weights").get_by_text("none", exact=True).click()
    page.get_by_role("button", name="Start").click()
    wait_text(page, "train-progress", "Finished", timeout=240_000)
    image = next(tmp_path.glob("0-0.jpg"))
    results = predicted(page, image)
    assert "<img src=x onerror=alert(1)>" in results
    assert "<img src=x onerror=alert(1)>" in page.locator("#model-cards").inner_text()
    assert not dialogs and not foreign and not errors, (dialogs, foreign, errors)
