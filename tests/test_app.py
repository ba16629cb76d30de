"""The app's handlers, in-process: what each tab answers, and that importing the app stays light."""

import subprocess
import sys
import time
import zipfile
from pathlib import Path

import gradio as gr
import pytest

from conftest import ROOT, make_dataset
from trainer.augment import AugmentConfig
from ui import augment_tab, predict_tab, shared, text as ui_text, train


def test_importing_the_app_loads_no_framework():
    code = "import app, sys; app.build_demo(); print('tensorflow' in sys.modules, 'torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "False False", result.stderr


def test_the_app_speeds_up_gradios_import_and_keeps_its_events():
    """ui/startup.py halves gradio's import: no stub rewriting, event docs without jinja2. The
    components must keep every event, with the same documentation."""
    code = ("import app, gradio.component_meta as meta, gradio as gr; "
            "print(meta.create_or_modify_pyi.__name__, callable(gr.Button().click), callable(gr.Image().upload)); "
            "print(gr.Button.click.__doc__.splitlines()[0]); print(gr.Image.upload.__doc__.splitlines()[0])")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.stdout.splitlines() == [
        "<lambda> True True", "Triggered when the Button is clicked.",
        "This listener is triggered when the user uploads a file into the Image."], result.stderr


def zip_of(folder, target):
    with zipfile.ZipFile(target, "w") as archive:
        for path in folder.rglob("*"):
            if path.is_file():
                archive.write(path, "top/" + str(path.relative_to(folder)))
        archive.writestr("__MACOSX/top/._x.jpg", b"junk")
    return str(target)


@pytest.fixture
def visitor(tmp_path, monkeypatch):
    """A workspace of this test's own, with a server data set `toy`: its id, as the page keeps it."""
    make_dataset(tmp_path / "server" / "toy")
    monkeypatch.setenv("AVP_DATA_DIR", str(tmp_path / "server"))
    monkeypatch.setattr(shared, "WORKSPACES_DIR", tmp_path / "workspaces")
    monkeypatch.setattr(shared, "MODELS_DIR", tmp_path / "reference")
    for cached in (shared.workspaces, shared.jobs):
        cached.cache_clear()
    yield shared.workspaces().create().id
    for cached in (shared.workspaces, shared.jobs):
        cached.cache_clear()


def test_upload_zip_lands_in_the_workspace_and_can_be_deleted(visitor, tmp_path):
    path = zip_of(make_dataset(tmp_path / "d"), tmp_path / "holiday pics.zip")
    chosen, text = train.upload_zip(visitor, path)
    assert "2 classes: bright, dark" in text and "train: 12 images" in text
    assert chosen.value == "upload/holiday_pics"
    space = shared.workspace(visitor)
    assert (space.uploads / "holiday_pics").is_dir()
    chosen, text = train.delete_upload(visitor, "upload/holiday_pics")
    assert "Deleted holiday\\_pics" in text and space.upload_names() == []


def test_upload_of_a_bad_zip_lists_the_problems_and_keeps_nothing(visitor, tmp_path):
    one_class = make_dataset(tmp_path / "one", classes=("only",))
    _, text = train.upload_zip(visitor, zip_of(one_class, tmp_path / "one.zip"))
    text = text.replace("\\", "")  # the page's Markdown escapes
    assert "one.zip cannot be trained on" in text and "one.zip/top: found 1 class folder" in text
    assert visitor not in text
    (tmp_path / "bad.zip").write_bytes(b"PK\x05\x06broken")
    _, text = train.upload_zip(visitor, str(tmp_path / "bad.zip"))
    assert "not a valid zip archive" in text
    assert shared.workspace(visitor).upload_names() == []


def test_the_page_offers_data_sets_by_name_and_restores_settings(visitor):
    workspace_id, form = train.open_workspace(visitor)
    assert workspace_id == visitor and form["dataset"].value == "server/toy"
    settings = {"framework": "pytorch", "dataset": "server/toy", "epochs": 0, "augment.shear_deg": 5}
    with pytest.raises(gr.Error, match="epochs must be a whole number"):
        train.start_pressed(visitor, **settings)
    _, form = train.open_workspace(visitor)  # a reload: the settings of the last Start come back
    assert form["framework"] == "pytorch" and form["epochs"] == 0 and form["augment.shear_deg"] == 5
    assert train.open_workspace("0" * 32)[0] != visitor  # an unknown id gets a new workspace


def test_the_server_chooses_every_runs_precision(visitor, monkeypatch):
    from ui.train import run
    space = shared.workspace(visitor)
    assert run.config_for(space, {"dataset": "server/toy"}).precision == "auto"
    monkeypatch.setenv("AVP_PRECISION", "float32")  # a CPU-basic Space's path, on a bfloat16 machine
    assert run.config_for(space, {"dataset": "server/toy"}).precision == "float32"
    with pytest.raises(ValueError, match="precision cannot be set here"):
        run.config_for(space, {"dataset": "server/toy", "precision": "bfloat16"})


def test_check_data_names_problems_without_server_folders(visitor):
    assert "unknown data set" in train.check_data(visitor, "server/nothing")
    assert "2 classes" in train.check_data(visitor, "server/toy")
    text = train.check_data(visitor, "server/toy")
    assert str(shared.WORKSPACES_DIR) not in text and "/tmp" not in text


def test_preview_gives_both_frameworks_samples_views_and_code():
    """/preview takes the augmentation as AugmentConfig fields by name; omitted ones keep their defaults."""
    keras_gallery, torch_gallery, keras_view, torch_view, keras_code, torch_code = augment_tab.preview(
        None, {"shear_deg": 10, "zoom_max": 1.2}, 7)
    assert len(keras_gallery) == len(torch_gallery) == augment_tab.SAMPLES
    assert all(image.shape == (224, 224, 3) for image, _ in keras_gallery + torch_gallery)
    assert "zoom" in keras_gallery[0][1] and "shear" in torch_gallery[0][1]
    assert "BGR" in keras_view.label and "RGB" in torch_view.label
    assert "affine_transform" in keras_code and "RandomAffine" in torch_code
    with pytest.raises(gr.Error, match="unknown augmentation settings: shear"):
        augment_tab.preview(None, {"shear": 10}, 7)
    with pytest.raises(gr.Error, match="shear must be between 0 and 45"):
        augment_tab.preview_pytorch(None, 7, shear_deg=50, zoom_min=0.8, zoom_max=1.2, rotation_deg=0, shift=0,
                                    hflip=True, vflip=False)  # the page's controls, by keyword


def test_the_stored_opening_previews_match_the_pipelines_and_need_no_framework(tmp_path, monkeypatch):
    """assets/default_previews.npz is what both pipelines make today (else: `python -m ui.augment_tab`);
    the page's opening state comes from it without loading torch or TensorFlow."""
    import numpy as np
    augment_tab.save_default_previews(tmp_path / "fresh.npz")
    with np.load(augment_tab.DEFAULT_PREVIEWS) as stored, np.load(tmp_path / "fresh.npz") as fresh:
        assert sorted(stored.files) == sorted(fresh.files)
        for name in stored.files:
            if stored[name].dtype.kind in "uf":
                assert np.abs(stored[name].astype(float) - fresh[name]).max() <= 1, name
            else:
                assert str(stored[name]) == str(fresh[name]), name
    monkeypatch.setattr(augment_tab, "backend", None)  # any framework call would fail
    gallery, view, values, code = augment_tab.side("pytorch", None, AugmentConfig(), 0)
    assert len(gallery) == augment_tab.SAMPLES and "zoom" in values and "RandomAffine" in code


def test_preview_names_a_broken_upload(tmp_path):
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    with pytest.raises(gr.Error, match="broken.png"):
        augment_tab.preview(str(tmp_path / "broken.png"), {}, 0)


def test_verdict_marks_disagreement_between_any_two_models():
    alien = {"probabilities": {"alien": 0.9, "predator": 0.1}, "seconds": 0.05}
    predator = {"probabilities": {"alien": 0.2, "predator": 0.8}, "seconds": 0.02}
    assert "disagree" in predict_tab.verdict({"reference": {"keras": alien, "pytorch": predator}})
    assert "disagree" in predict_tab.verdict({"reference": {"keras": alien}, "yours": {"keras": predator}})
    agree = predict_tab.verdict({"reference": {"keras": alien, "pytorch": alien}})
    assert "All say **alien**" in agree and "Keras (reference model) 50 ms" in agree
    assert "The only model says" in predict_tab.verdict({"yours": {"pytorch": predator}})


def test_progress_and_log_from_events():
    events = [{"type": "start", "framework": "pytorch", "device": "CPU (2 threads)", "train_images": 8,
               "val_images": 4, "pretrained": False, "augment": True, "feature_cache": False},
              {"type": "warning", "message": "ImageNet weights unavailable"},
              {"type": "batch", "framework": "pytorch", "epoch": 1, "epochs": 2, "batch": 1, "batches": 2,
               "loss": 0.7, "images_seen": 4, "images_per_s": 3.5, "elapsed_s": 65, "eta_s": 3}]
    from classroom.jobs import RunView
    idle = {"training": 1, "waiting": 0, "slots": 1}
    text = train.progress_text(RunView("r1", "running", events), idle)
    assert "epoch 1/2, batch 1/2" in text and "3.5 images/s" in text and "elapsed 1:05" in text and "CPU" in text
    assert "warning: ImageNet weights unavailable" in train.log_text(events)
    waiting = train.progress_text(RunView("r2", "queued", position=3, start_in_s=125), idle)
    assert "number 3" in waiting and "2:05" in waiting


def test_a_stopped_both_run_says_exactly_what_was_saved():
    ends = [{"type": "end", "framework": "pytorch", "saved_to": "x"}, {"type": "stopped", "framework": "keras"}]
    assert "Saved before it ended: pytorch" in train.saved_text(ends)
    assert "Nothing was saved" in train.saved_text(ends[1:])


def test_out_of_memory_reads_as_advice():
    from classroom.worker import public_message
    assert "out of memory" in public_message(MemoryError())


def test_model_cards_load_no_model_and_the_predict_tab_loads_them(tiny_config, visitor):
    """Cards come from metadata (opening the page costs no TensorFlow or torch load) and say which
    model is the reference one; selecting the Predict tab loads the models in the background; a
    damaged model file is named at prediction."""
    from trainer import runner
    config = tiny_config.with_changes(framework="pytorch", out_dir=str(shared.MODELS_DIR))
    runner.train(config)
    cards = predict_tab.model_cards(visitor)
    assert "PyTorch: reference model" in cards and "validation accuracy" in cards
    assert "Keras: your model\nnone yet" in cards
    predict_tab.load_models_in_background(visitor)
    predictor = shared.predictor(shared.MODELS_DIR)
    deadline = time.monotonic() + 60
    while "pytorch" not in predictor.loaded:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    (shared.MODELS_DIR / "pytorch" / "model.safetensors").write_bytes(b"not a model")
    (shared.MODELS_DIR / "pytorch" / "metadata.json").touch()
    with pytest.raises(gr.Error, match="reference models could not be loaded"):
        predict_tab.predict_files(visitor, [str(ROOT / "assets" / "test_card.png")])


def test_names_from_a_visitors_data_are_shown_as_text():
    from ui import text
    hostile = '<img src=x onerror=alert(1)> [link](http://evil.example) ![i](http://evil.example/x.png) $x$'
    shown = text.md(hostile)
    assert "<" not in shown and "](" not in shown and "![" not in shown
    assert text.plain("a\x00b\u202ec\nd") == "a b c d" and len(text.plain("x" * 500, 80)) == 80


def test_a_gpu_the_framework_does_not_use_is_said_loudly(tiny_config, monkeypatch):
    from classroom.jobs import RunView
    from trainer import runner
    monkeypatch.setattr(runner, "machine_has_nvidia_gpu", lambda: True)  # this machine has none
    events = []
    runner.train(tiny_config.with_changes(framework="pytorch"), events.append)
    (loud,) = [e for e in events if e.get("loud")]
    assert "PyTorch is training on the CPU" in loud["message"]
    page = train.progress_text(RunView("r", "running", events), {"training": 1, "waiting": 0, "slots": 1})
    assert "**⚠ this machine has a GPU, but PyTorch is training on the CPU" in page


def write_run(space, name: str, events: list[dict]) -> None:
    import json

    from classroom import runs
    (space.runs / name).mkdir(parents=True)
    (space.runs / name / runs.CONFIG).write_text("{}")
    (space.runs / name / runs.EVENTS).write_text("".join(json.dumps(e, default=float) + "\n" for e in events))


def test_a_both_run_is_compared_and_stays_shown_after_a_stopped_run(visitor, tmp_path):
    """After a run with both frameworks: a table of the two, how often they agree on the validation
    images and those they disagree on; a newer run that is stopped keeps them on the page."""
    from classroom import runs
    from trainer import runner
    from trainer.config import TrainConfig
    space = shared.workspaces().open(visitor)
    events = []
    config = TrainConfig(data_dir=str(tmp_path / "server" / "toy"), out_dir=str(space.models), epochs=1,
                         batch_size=4, image_size=32, weights="none", head_units=16, framework="both")
    runner.train(config, events.append)
    ends = [e for e in events if e["type"] == "end"]
    assert all(e["trainable_params"] < e["total_params"] and e["predict_seconds"] > 0 for e in ends)
    assert {e["device"] for e in ends} == {ends[0]["device"]}  # the two backends say it the same way
    ends[0]["val_predicted"][0] = 1 - ends[1]["val_predicted"][0]  # one disagreement for sure
    write_run(space, "20261127-140000-000000", [*events, {"type": "finished", "status": "done"}])
    stopped = [{"type": "batch", "framework": "pytorch", "epoch": 1, "epochs": 1, "batch": 1, "batches": 3,
                "loss": 0.7, "images_seen": 4, "images_per_s": 3.0, "elapsed_s": 1, "eta_s": 2},
               {"type": "stopped", "framework": "pytorch", "epoch": 1, "batch": 1},
               {"type": "finished", "status": "stopped"}]
    write_run(space, "20261127-150000-000000", stopped)
    view = shared.jobs().view(space)
    assert view.status == "stopped" and runs.runs_of(space)[-1].name == view.run_id
    parts = train.render(space, view, shared.jobs().overview())
    results = parts["results"]
    assert "last finished run" in results and "UTC" in results and "T14" not in results
    for row in ("validation accuracy", "seconds per epoch", "training images per second", "one prediction",
                "parameters: trainable / total", "model file size", "| Keras |", "| PyTorch |"):
        assert row in results
    total = len(ends[0]["val_predicted"])
    agree = sum(a == b for a, b in zip(ends[0]["val_predicted"], ends[1]["val_predicted"]))
    assert f"agree on {agree} of {total} validation images" in results
    assert len(parts["disagreements"]) == total - agree >= 1 and "Keras: " in parts["disagreements"][0][1]
    assert parts["confusion"] is not None and parts["chart"].label == "Loss: 1 points"


def test_the_log_is_newest_first_short_and_free_of_command_line_words():
    long = ("ImageNet weights unavailable. Training from random initialisation " + "x " * 200
            + "(--weights none, or allow it in the app)")
    events = [{"type": "warning", "message": long},
              {"type": "stopped", "framework": "keras", "epoch": 1, "batch": 2}]
    lines = train.log_text(events).splitlines()
    assert lines[0].startswith("keras: stopped") and len(lines[1]) <= train.LOG_CHARS + 20
    assert "--" not in train.for_page("out of memory: try a smaller batch size or --limit")
    assert "AVP_DATA_DIR" not in train.for_page("data folder x does not exist (set --data or AVP_DATA_DIR, ...)")
    from trainer.augment import HELP as AUGMENT_HELP
    from trainer.config import HELP
    assert not [key for key, words in {**HELP, **AUGMENT_HELP}.items() if "--" in words or "AVP_" in words]
    assert ui_text.readable_time("2026-11-27T14:05:09+00:00") == "27 Nov 2026, 14:05 UTC"


def test_a_clicked_example_is_named_by_its_folder(visitor, tmp_path):
    """gradio hands the handler its own copy of an example: still named `class/file`."""
    predict_tab.example_labels.cache_clear()
    example = Path(shared.example_images(3)[0])
    copy = tmp_path / "cache" / example.name
    copy.parent.mkdir()
    copy.write_bytes(example.read_bytes())
    assert predict_tab.display_name(str(copy)) == "/".join(example.parts[-2:])
    other = tmp_path / example.name
    other.write_bytes(b"not the example")
    assert predict_tab.display_name(str(other)) == example.name
    predict_tab.example_labels.cache_clear()


def test_a_second_page_load_asks_no_server_whether_weights_can_be_downloaded(tmp_path, monkeypatch):
    """The weights line on the Train tab asks each framework's weights server once per process."""
    import contextlib
    import urllib.request

    from trainer import frameworks, weights
    asked = []
    answer = lambda request, timeout: asked.append(request.full_url) or contextlib.nullcontext()
    monkeypatch.setattr(urllib.request, "urlopen", answer)
    for home in ("TORCH_HOME", "KERAS_HOME"):  # empty caches: the weights are not on disk
        monkeypatch.setenv(home, str(tmp_path / home))
    weights.reachable.cache_clear()
    try:
        assert "downloaded on the first run" in train.weights_text()
        assert sorted(asked) == sorted(f.weights_url for f in frameworks.REGISTRY.values())
        train.weights_text()  # the next page load
        assert len(asked) == 2
    finally:
        weights.reachable.cache_clear()


# ---------------------------------------------------------------- budgets (issue 16)

@pytest.fixture
def fake_jobs(visitor, monkeypatch):
    """The app's queue with fake workers (tests/support/fake_worker.py) and a queue of two places."""
    import functools

    from test_classroom import FAKE_WORKER

    from classroom.jobs import Jobs
    queue = Jobs(shared.workspaces(), shared.WORKSPACES_DIR / ".keep-queue", max_runs=1, max_waiting=2,
                 command=FAKE_WORKER, warm=0, max_run_s=60)
    monkeypatch.setattr(shared, "jobs", functools.cache(lambda: queue))
    return queue


def test_refused_starts_decode_nothing(visitor, fake_jobs, monkeypatch, tmp_path):
    """Busy, a full queue, a run past the cap, an unknown data set: refused before any image is read."""
    from trainer import data
    paced = shared.workspace(visitor)
    (paced.root / "fake-pace").write_text("0.5")
    quick = {"framework": "pytorch", "dataset": "server/toy", "epochs": 1, "image_size": 32,
             "weights": "none", "allow_random_init": True}
    train.start_pressed(visitor, **quick)
    others = [shared.workspaces().create().id for _ in range(3)]
    for other in others[:2]:
        train.start_pressed(other, **quick)

    def decoded(*args, **kwargs):
        raise AssertionError("a refused Start decoded the data set")
    monkeypatch.setattr(data, "discover", decoded)
    maximal = {**quick, "framework": "both", "epochs": 20, "image_size": 448, "batch_size": 1, "unfreeze": 4}
    for workspace_id, settings, words in [
            (visitor, quick, "already have a run"), (others[2], quick, "queue is full"),
            (others[2], {**quick, "dataset": "server/nothing"}, "unknown data set"),
            (others[2], {**quick, "epochs": 1000}, "epochs must be from 1 to 20 here")]:
        with pytest.raises(gr.Error, match=words):
            train.start_pressed(workspace_id, **settings)
    fake_jobs.cancel(shared.workspace(others[0]))
    too_long = r"would take about \d+ minutes on this server \(12 images x 20 epochs at 448 px.* than the 1 minutes"
    with pytest.raises(gr.Error, match=too_long):
        train.start_pressed(others[2], **maximal)


def test_two_uploads_at_once_share_one_quota(visitor, tmp_path, monkeypatch):
    import threading

    from classroom.workspace import Limits
    from trainer import archive
    path = zip_of(make_dataset(tmp_path / "d"), tmp_path / "pics.zip")
    space = shared.workspace(visitor)
    _, text = train.upload_zip(visitor, path)
    one_upload = space.used_bytes() - shared.workspace(shared.workspaces().create().id).used_bytes()
    space.remove_upload(space.upload_names()[0])
    shared.workspaces().limits = Limits(quota_bytes=space.used_bytes() + int(1.5 * one_upload))
    extract = archive.extract_zip

    def slow_extract(*args, **kwargs):  # both would measure the free space before either writes
        time.sleep(0.3)
        return extract(*args, **kwargs)
    monkeypatch.setattr(archive, "extract_zip", slow_extract)
    texts = []
    threads = [threading.Thread(target=lambda: texts.append(train.upload_zip(visitor, path)[1])) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(shared.workspace(visitor).upload_names()) == 1, texts
    assert sum("more than the" in t for t in texts) == 1


def test_uploads_per_hour_are_counted_per_person(visitor, tmp_path):
    from classroom.people import Budgets, People
    shared.workspaces().people = People(Budgets(uploads_per_hour=2))
    (tmp_path / "bad.zip").write_bytes(b"PK\x05\x06broken")
    for _ in range(2):
        assert "not a valid zip" in train.upload_zip(visitor, str(tmp_path / "bad.zip"))[1]
    assert "2 uploads an hour is the most" in train.upload_zip(visitor, str(tmp_path / "bad.zip"))[1]
