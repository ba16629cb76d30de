"""The app's handlers, in-process: what each tab answers, and that importing the app stays light."""

import subprocess
import sys
import zipfile

import gradio as gr
import numpy as np
import pytest
from PIL import Image

from conftest import ROOT, make_dataset
from ui import augment_tab, predict_tab, shared, train_tab


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


def test_upload_zip_is_checked_and_cleaned_up(tmp_path):
    folder, text = train_tab.upload_zip(zip_of(make_dataset(tmp_path / "d"), tmp_path / "d.zip"), None)
    assert "2 classes: bright, dark" in text and "train: 12 images" in text
    assert (shared.Path(folder) / "train").is_dir() or (shared.Path(folder) / "top" / "train").is_dir()
    train_tab.remove_upload(folder)
    assert not shared.Path(folder).exists()


def test_upload_of_a_bad_zip_lists_the_problems(tmp_path):
    one_class = make_dataset(tmp_path / "one", classes=("only",))
    folder, text = train_tab.upload_zip(zip_of(one_class, tmp_path / "one.zip"), None)
    assert folder is None and "one.zip cannot be trained on" in text and "need at least 2" in text
    (tmp_path / "bad.zip").write_bytes(b"PK\x05\x06broken")
    folder, text = train_tab.upload_zip(str(tmp_path / "bad.zip"), None)
    assert folder is None and "not a valid zip archive" in text


def test_missing_data_folder_offers_download(tmp_path):
    text = train_tab.check_data(str(tmp_path / "none"), None)
    assert "cannot be trained on" in text and "Download the AvP images" in text


def test_bad_settings_are_refused_before_start(dataset):
    values = ["both", str(dataset), None, 0, 32, 1e-3, 224, 128, 0, False, 0, "none", False, 42, True,
              10, 0.8, 1.2, 0, 0, True, False]
    with pytest.raises(gr.Error, match="epochs"):
        train_tab.start(*values)


def test_preview_gives_both_frameworks_samples_views_and_code():
    keras_gallery, torch_gallery, keras_view, torch_view, keras_code, torch_code = augment_tab.preview(
        None, 10, 0.8, 1.2, 0, 0, True, False, 7)
    assert len(keras_gallery) == len(torch_gallery) == augment_tab.SAMPLES
    assert all(image.shape == (224, 224, 3) for image, _ in keras_gallery + torch_gallery)
    assert "zoom" in keras_gallery[0][1] and "shear" in torch_gallery[0][1]
    assert "BGR" in keras_view.label and "RGB" in torch_view.label
    assert "affine_transform" in keras_code and "RandomAffine" in torch_code


def test_preview_names_a_broken_upload(tmp_path):
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    with pytest.raises(gr.Error, match="broken.png"):
        augment_tab.preview(str(tmp_path / "broken.png"), 10, 0.8, 1.2, 0, 0, True, False, 0)


def test_verdict_marks_disagreement():
    keras = {"probabilities": {"alien": 0.9, "predator": 0.1}, "seconds": 0.05}
    torch = {"probabilities": {"alien": 0.2, "predator": 0.8}, "seconds": 0.02}
    assert "disagree" in predict_tab.verdict({"keras": keras, "pytorch": torch})
    assert "Both say **alien**" in predict_tab.verdict({"keras": keras, "pytorch": keras})
    assert "PyTorch model missing" in predict_tab.verdict({"keras": keras})


def test_progress_and_log_from_events():
    events = [{"type": "start", "framework": "pytorch", "device": "CPU (2 threads)", "train_images": 8,
               "val_images": 4, "pretrained": False, "augment": True, "feature_cache": False},
              {"type": "warning", "message": "ImageNet weights unavailable"},
              {"type": "batch", "framework": "pytorch", "epoch": 1, "epochs": 2, "batch": 1, "batches": 2,
               "loss": 0.7, "images_seen": 4, "images_per_s": 3.5, "elapsed_s": 65, "eta_s": 3}]
    from trainer.jobs import RunView
    text = train_tab.progress_text(RunView("r1", "running", events))
    assert "epoch 1/2, batch 1/2" in text and "3.5 images/s" in text and "elapsed 1:05" in text and "CPU" in text
    assert "warning: ImageNet weights unavailable" in train_tab.log_text(events)


def test_chart_has_one_colour_per_framework_and_fades_the_previous_run():
    def run(framework, loss):
        return [{"type": "batch", "framework": framework, "epoch": 1, "batch": 1, "batches": 1, "loss": loss},
                {"type": "epoch", "framework": framework, "epoch": 1, "val_loss": loss, "val_accuracy": 0.5}]
    from ui import charts
    figure = charts.training_figure(run("keras", 1) + run("pytorch", 2), previous=run("keras", 3))
    lines = figure.axes[0].get_lines()
    colours = {l.get_label(): (l.get_color(), l.get_alpha()) for l in lines}
    assert colours["keras train"][0] != colours["pytorch train"][0]
    assert colours["keras train (previous run)"][1] < colours["keras train"][1]


def test_uploads_are_deleted_with_their_session():
    import app
    demo = app.build_demo()
    states = [block for block in demo.blocks.values() if isinstance(block, gr.State)]
    assert any(s.delete_callback is train_tab.remove_upload and s.time_to_live for s in states)


def test_out_of_memory_reads_as_advice():
    from trainer.worker import public_message
    assert "out of memory" in public_message(MemoryError())


def test_model_cards_load_no_model_and_the_predict_tab_loads_them(tiny_config, monkeypatch):
    """Cards come from metadata (opening the page costs no TensorFlow or torch load); selecting the
    Predict tab loads the models in the background; a damaged model file is named at prediction."""
    import time

    from trainer import runner
    from trainer.predictor import Predictor
    config = tiny_config.with_changes(framework="pytorch")
    runner.train(config)
    predictor = Predictor(config.out_dir)
    monkeypatch.setattr(shared, "predictor", lambda: predictor)
    cards = predict_tab.model_cards()
    assert "validation accuracy" in cards and "No Keras model yet" in cards and predictor.loaded == {}
    predict_tab.load_models_in_background()
    deadline = time.monotonic() + 60
    while "pytorch" not in predictor.loaded:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    damaged = Predictor(config.out_dir)
    (damaged.models_dir / "pytorch" / "model.pt").write_bytes(b"not a model")
    monkeypatch.setattr(shared, "predictor", lambda: damaged)
    with pytest.raises(gr.Error, match="Saved models could not be loaded"):
        predict_tab.predict_files([str(ROOT / "assets" / "test_card.png")])
