"""A teacher and three students in a real browser (Debian Chromium through Playwright), each in a
browser context of their own, on the app with AVP_TEACHER_KEY set: the teacher signs in, caps the
class and makes their own Train tab the class defaults; a new student's form starts there; the board
fills as the students train (their states always, a run's results once published); the teacher
pauses the queue and a student sees it; the teacher stops a student's run; a reload keeps the
teacher signed in. No page or console error, and the teacher's key is in no page, no browser storage
and no line of the app's log."""

import re

import pytest
from gradio_client.exceptions import AppError
from playwright.sync_api import expect

from support import browser as support_browser
from support.browser import WAIT_MS, chromium, open_visitor, set_number
from support.launch import toy_app
from support.visitor import Visitor
from trainer.config import TrainConfig

pytestmark = pytest.mark.slow
KEY = "kq7-Teacher-Key-never-shown-3141"  # distinctive: searched for in every page and the log


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("teacher")
    app, _ = toy_app(base, per_class=(24, 4), reference=None, env={"AVP_TEACHER_KEY": KEY})
    yield app.url, base
    app.stop()


@pytest.fixture(scope="module")
def browser(server):
    with chromium() as browser:
        yield browser


def wait_text(page, elem_id: str, pattern: str, timeout: int = WAIT_MS) -> None:
    """support.browser's wait_text, saying what the element showed when it timed out."""
    try:
        support_browser.wait_text(page, elem_id, pattern, timeout)
    except Exception:
        shown = page.locator(f"#{elem_id}").inner_text() if page.locator(f"#{elem_id}").count() else "(absent)"
        raise AssertionError(f"#{elem_id} never matched {pattern!r}; it showed: {shown[:1500]!r}") from None


def sign_in(page) -> None:
    page.get_by_role("tab", name="Teacher").click()
    page.locator("#teacher-key input").fill(KEY)
    page.get_by_role("button", name="Sign in").click()
    wait_text(page, "teacher-status", "Signed in as the teacher")


def student(browser, url: str, errors: list, name: str = ""):
    """A new student on the Train tab (their form restored from the class defaults), named if `name`."""
    page = open_visitor(browser, url, errors)
    page.get_by_role("tab", name="Train").click()
    expect(page.locator("#epochs input[type=number]")).to_have_value("2", timeout=WAIT_MS)
    if name:
        box = page.locator("#board-name input, #board-name textarea").first
        box.fill(name)
        box.press("Enter")
        wait_text(page, "publish-result", "shows your runs as")
    return page


def test_a_teacher_watches_and_steers_three_students(browser, server):
    url, base = server
    errors = []
    teacher = open_visitor(browser, url, errors)
    sign_in(teacher)
    assert teacher.locator("#teacher-key input").input_value() == ""

    # Caps for the class, and the teacher's own Train tab as the class defaults
    set_number(teacher, "cap-epochs", 3)
    teacher.get_by_role("button", name="Set these caps").click()
    wait_text(teacher, "teacher-caps", "epochs 1–3")
    teacher.get_by_role("tab", name="Train").click()
    teacher.locator("#framework").get_by_text("pytorch", exact=True).click()
    set_number(teacher, "epochs", 2)
    set_number(teacher, "batch-size", 8)
    set_number(teacher, "image-size", 32)
    teacher.locator("#weights").get_by_text("none", exact=True).click()
    teacher.get_by_role("tab", name="Teacher").click()
    teacher.get_by_role("button", name="Use my Train tab's settings as the class defaults").click()
    wait_text(teacher, "teacher-defaults", "epochs 2")

    # A new student's form starts from the class defaults, within the caps; a capped setting is refused
    ada = student(browser, url, errors, name="Ada <b>L</b>")
    assert ada.locator("#framework input[value=pytorch]").is_checked()
    assert ada.locator("#weights input[value=none]").is_checked()
    assert ada.locator("#image-size input[type=number]").input_value() == "32"
    wait_text(ada, "train-caps", "epochs 1–3")
    with pytest.raises(AppError, match="epochs must be from 1 to 3 here"):
        Visitor(url).start(TrainConfig(data_dir="", framework="pytorch", epochs=4, image_size=32, weights="none"),
                           "server/toy")

    # Ada trains; the board shows her run, and its results once she publishes it
    ada.get_by_role("button", name="Start").click()
    wait_text(teacher, "class-board", r"Ada <b>L</b>[\s\S]*(running|starting|done)")
    wait_text(ada, "train-progress", "Finished", timeout=240_000)
    wait_text(teacher, "class-board", r"Ada <b>L</b>[\s\S]*not published[\s\S]*done")
    ada.get_by_role("button", name="Publish my last run to the class board").click()
    wait_text(ada, "publish-result", "Published")
    wait_text(teacher, "class-board", r"PyTorch 0\.\d{3}")
    wait_text(teacher, "class-figures", r"PyTorch\s+1\s+\d")
    assert teacher.locator("#class-board b").count() == 0  # her name is text, not HTML

    # The teacher pauses the queue: the next student waits, and is told why
    teacher.get_by_role("button", name="Pause the queue").click()
    wait_text(teacher, "teacher-queue", "paused")
    bob = student(browser, url, errors)
    bob.get_by_role("button", name="Start").click()
    wait_text(bob, "train-progress", "The teacher has paused the queue")
    wait_text(teacher, "class-board", r"Student \d+[\s\S]*waiting: number 1")

    # A third student queues a long run; the teacher resumes, then stops that run while it trains
    cara = student(browser, url, errors)
    set_number(cara, "batch-size", 1)
    set_number(cara, "epochs", 3)
    set_number(cara, "image-size", 224)
    cara.get_by_role("button", name="Start").click()
    wait_text(cara, "train-progress", "number 2")
    teacher.get_by_role("button", name="Resume the queue").click()
    wait_text(bob, "train-progress", "Finished", timeout=240_000)
    wait_text(cara, "train-progress", "batch [1-9]", timeout=240_000)
    wait_text(teacher, "class-board", r"running")
    teacher.locator("#teacher-runs input").click()
    teacher.get_by_role("option", name=re.compile(r"running")).click()
    teacher.get_by_role("button", name="Stop this run").click()
    wait_text(teacher, "teacher-control", "Stopping after its current batch")
    wait_text(cara, "train-progress", "Stopped by the teacher")
    wait_text(teacher, "class-board", r"stopped")

    # A reload keeps the teacher signed in; Sign out forgets the key's token
    teacher.reload()
    teacher.get_by_role("heading", name=re.compile("Alien vs. Predator")).wait_for()
    errors[:] = [e for e in errors if "AbortError" not in e and "Connection errored out" not in e]
    teacher.get_by_role("tab", name="Teacher").click()
    wait_text(teacher, "teacher-status", "Signed in as the teacher")
    wait_text(teacher, "class-board", r"Ada <b>L</b>")

    assert not errors, errors
    for page in (teacher, ada, bob, cara):
        assert KEY not in page.content()
        assert KEY not in page.evaluate("JSON.stringify(Object.entries(localStorage))")
    teacher.get_by_role("button", name="Sign out").click()
    wait_text(teacher, "teacher-status", "Enter the teacher's key")
    expect(teacher.locator("#class-board")).to_be_hidden()
    teacher.reload()  # signed out stays signed out
    teacher.get_by_role("heading", name=re.compile("Alien vs. Predator")).wait_for()
    teacher.get_by_role("tab", name="Teacher").click()
    wait_text(teacher, "teacher-status", "Enter the teacher's key")
    expect(teacher.locator("#class-board")).to_be_hidden()
    assert KEY not in (base / "app.log").read_text()
