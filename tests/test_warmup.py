"""The Teacher tab's Warm-up (ui/warmup.py), in-process: refused without the teacher's token; with
it, the warm-up runs through the app's queue and warm worker, installs the reference models all at
once (Predict loads the new ones), and the next student's run at the class defaults takes its
features from the bank."""

import time

import gradio as gr
import pytest

from classroom import teacher
from conftest import make_dataset
from trainer import store
from ui import shared, warmup
from ui.train import run

KEY = "the teacher's own key"
SMALL = {"epochs": 1, "image_size": 32, "batch_size": 4, "head_units": 16, "weights": "none"}


@pytest.fixture
def app(tmp_path, monkeypatch):
    """The app's shared state in this test's folder, a server data set `toy`, the teacher key set."""
    make_dataset(tmp_path / "server" / "toy")
    monkeypatch.setenv("AVP_DATA_DIR", str(tmp_path / "server"))
    monkeypatch.setenv(teacher.KEY_ENV, KEY)
    monkeypatch.setenv("AVP_CACHE_DIR", str(tmp_path / "bank"))  # the suite's bank may hold these features
    monkeypatch.setattr(shared, "WORKSPACES_DIR", tmp_path / "workspaces")
    monkeypatch.setattr(shared, "MODELS_DIR", tmp_path / "reference")
    for cached in (shared.workspaces, shared.jobs):
        cached.cache_clear()
    yield
    shared.jobs().close()
    for cached in (shared.workspaces, shared.jobs):
        cached.cache_clear()


def token() -> str:
    return teacher.token_for(KEY, shared.workspaces().secret())


def wait_for(condition, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        shared.jobs().schedule()  # the app's scheduler thread does this every second
        if value := condition():
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def test_the_section_builds_and_refuses_everything_without_the_teachers_token(app, monkeypatch):
    with gr.Blocks() as demo:
        browser_token = gr.BrowserState(None)
        warmup.build(browser_token)
    assert {"Warm up", "Stop warm-up"} <= {b.value for b in demo.blocks.values() if isinstance(b, gr.Button)}
    for wrong in (None, "", "0" * 64, KEY):  # the key itself is not the token
        estimate, tick, progress, result, button = warmup.show(wrong)
        assert "only the teacher may do this" in estimate and button.interactive is False
        assert "only the teacher may do this" in warmup.start(wrong, True)
        assert "only the teacher may do this" in warmup.stop(wrong)
    assert shared.jobs().overview() == {"training": 0, "waiting": 0, "slots": 1, "paused": False}
    assert not (warmup.state_dir() / warmup.SPACE_FILE).exists() and not shared.MODELS_DIR.exists()
    right = token()
    monkeypatch.delenv(teacher.KEY_ENV)  # no key on the server: nobody is the teacher, and the page says how
    assert "To turn it on, set the secret AVP\\_TEACHER\\_KEY" in warmup.start(right, True)


@pytest.mark.slow
def test_a_warm_up_installs_the_reference_models_and_the_next_default_run_takes_seconds(app, capsys):
    teacher.ClassSettings(warmup.state_dir()).set_defaults(SMALL)
    estimate, tick, progress, result, button = warmup.show(token())
    assert "Trains the reference models at the class defaults (12 images x 1" in estimate and "32 px" in estimate
    assert tick.visible is True and progress == "No warm-up yet." and button.interactive is True
    assert "allow it explicitly" in warmup.start(token(), False)  # weights none: the tick is needed
    loaded_before = shared.predictor()

    started = time.monotonic()
    answer = warmup.start(token(), True)
    assert answer.startswith(("**Waiting in the queue", "**Starting", "**Warming up")), answer
    space = warmup.teacher_space()
    wait_for(lambda: shared.jobs().view(space).status == "done", 300, "the warm-up")
    warm_up_s = time.monotonic() - started
    _, _, progress, result, _ = wait_for(lambda: (parts := warmup.show(token()))[3] and parts, 30, "the install")
    assert progress == "**Finished.**"
    assert "Reference models installed" in result and "randomly initialised" in result
    assert "pytorch: augmented features computed fresh" in result
    assert set(store.find_models(shared.MODELS_DIR)) == {"keras", "pytorch"}
    assert all(store.read_metadata(f)["warm_up"] for f in store.find_models(shared.MODELS_DIR).values())
    assert shared.predictor() is not loaded_before  # Predict loads the new reference models

    # The first student: the Train tab's form at the class defaults, the sliders' whole numbers as sent.
    student = shared.workspaces().create()
    form = {**SMALL, "dataset": "server/toy", "allow_random_init": True,
            "augment": {"enabled": True, "shear_deg": 10, "zoom_min": 0.8, "zoom_max": 1.2, "rotation_deg": 0,
                        "shift": 0, "hflip": True, "vflip": False}}
    started = time.monotonic()
    run.submit(student, form)
    view = wait_for(lambda: (v := shared.jobs().view(student)).status == "done" and v, 120, "the student's run")
    student_s = time.monotonic() - started
    bank = {e["framework"]: e["message"] for e in view.events if e["type"] == "bank"}
    assert bank == {fw: "augmented features from the feature bank; validation features from the bank"
                    for fw in ("pytorch", "keras")}
    with capsys.disabled():
        print(f"\nwarm-up through the queue: {warm_up_s:.1f} s; the first student's default run after it: "
              f"{student_s:.1f} s from Start to done (tiny settings, every feature from the bank)")
