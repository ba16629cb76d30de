"""A visitor in a real browser (Debian Chromium through Playwright) opens the Code tab, changes the
Train tab's settings (epochs, unfrozen stages, augmentation off) and sees both sides of the code
follow; both sides' notebook and script download; no console error."""

import json
import time

import pytest

from support.browser import chromium, open_visitor, set_number
from support.launch import toy_app

pytestmark = pytest.mark.slow
WAIT_S = 60


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    app, _ = toy_app(tmp_path_factory.mktemp("code"), reference=None)
    yield app.url
    app.stop()


def code_text(page, elem_id: str) -> str:
    """A code box's text, scrolled into view first (the editor draws only the lines on screen); empty
    while the tab has not drawn the box yet (a tab's children are mounted when it is first opened)."""
    return page.evaluate("(id) => { const box = document.getElementById(id); if (!box) return '';"
                         " box.scrollIntoView({block: 'end'}); return box.innerText; }", elem_id)


def wait_for_code(page, changes: dict[str, str], present: bool = True) -> None:
    """Until each code box (by elem_id) shows (or no longer shows) its text; fails at the deadline."""
    deadline = time.monotonic() + WAIT_S
    while True:
        shown = {box: code_text(page, box) for box in changes}
        if all((want in shown[box]) == present for box, want in changes.items()):
            return
        assert time.monotonic() < deadline, (changes, shown)
        time.sleep(0.3)


def change_on_train_tab(page, change) -> None:
    page.get_by_role("tab", name="Train").click()
    change()
    page.get_by_role("tab", name="Code").click()


def test_code_follows_the_train_tab_and_downloads(server, tmp_path):
    errors = []
    with chromium() as browser:
        page = open_visitor(browser, server, errors)
        page.get_by_role("tab", name="Code").click()
        wait_for_code(page, {"code-keras-1": "EPOCHS = 3", "code-pytorch-1": "EPOCHS = 3"})
        # the differences table: read from the libraries when the tab is first opened, then shown
        page.locator("#code-differences").get_by_text("Adam's default epsilon").wait_for(timeout=WAIT_S * 1000)

        change_on_train_tab(page, lambda: set_number(page, "epochs", 7))
        wait_for_code(page, {"code-keras-1": "EPOCHS = 7", "code-pytorch-1": "EPOCHS = 7"})
        change_on_train_tab(page, lambda: set_number(page, "unfreeze", 2))
        wait_for_code(page, {"code-keras-1": "UNFREEZE = 2", "code-pytorch-1": "UNFREEZE = 2",
                             "code-keras-5": '"conv4", "conv5"', "code-pytorch-4": "model.layer3.requires_grad_"})
        change_on_train_tab(page, lambda: page.locator("#augment input[type=checkbox]").uncheck())
        wait_for_code(page, {"code-keras-3": ".map(preprocessed)",
                             "code-pytorch-3": "Images(x_train, y_train, normalize)"})
        wait_for_code(page, {"code-keras-2": "import math"}, present=False)

        for framework in ("keras", "pytorch"):
            for kind in ("ipynb", "py"):
                with page.expect_download(timeout=WAIT_S * 1000) as download:
                    page.locator(f"#download-{framework}-{kind}").click()
                path = tmp_path / download.value.suggested_filename
                download.value.save_as(path)
                body = path.read_text()
                assert path.name == f"avp_{framework}.{kind}"
                code = body if kind == "py" else "".join(
                    "".join(cell["source"]) for cell in json.loads(body)["cells"] if cell["cell_type"] == "code")
                assert "EPOCHS = 7" in code and "UNFREEZE = 2" in code
    assert not errors, errors
