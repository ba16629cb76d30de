"""The code panel's snippets run as shown and build the same pipeline as the trainer."""

import contextlib
import io

import numpy as np
import pytest
from PIL import Image

from trainer import codegen
from trainer.augment import AugmentConfig

SETTINGS = [AugmentConfig(), AugmentConfig(rotation_deg=15, shift=0.1, vflip=True, hflip=False),
            AugmentConfig(enabled=False)]


@pytest.mark.parametrize("aug", SETTINGS, ids=["seed", "more", "off"])
@pytest.mark.parametrize("framework", ["keras", "pytorch"])
def test_snippet_runs_as_shown(framework, aug, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (50, 70, 3), dtype=np.uint8)).save("image.jpg")
    make = codegen.keras_code if framework == "keras" else codegen.torch_code
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(make(aug, size=64, count=3), {})
    shape = "(3, 64, 64, 3)" if framework == "keras" else "torch.Size([3, 3, 64, 64])"
    assert printed.getvalue().strip() == shape


def test_keras_snippet_builds_the_trainers_layer():
    from trainer import keras_backend
    aug = SETTINGS[1]
    scope = {}
    exec(codegen.keras_code(aug).split("image = Image.open")[0], scope)
    theirs, ours = scope["augment"].get_config(), keras_backend.build_augmenter(aug).get_config()
    for key in set(ours) - {"name", "seed"}:
        assert theirs[key] == ours[key], key


def test_torch_snippet_builds_the_trainers_transforms():
    from trainer import torch_backend
    aug = SETTINGS[1]
    scope = {}
    exec(codegen.torch_code(aug).split("normalize =")[0], scope)
    assert repr(scope["augment"]).replace(" ", "") == repr(torch_backend.build_augmenter(aug)).replace(" ", "")


@pytest.mark.parametrize("framework", ["keras", "pytorch"])
def test_gradcam_source_is_the_backends_own(framework):
    import inspect

    from trainer.frameworks import backend
    shown = codegen.gradcam_source(framework)
    assert inspect.getsource(backend(framework).gradcam) in shown
    assert ("tf.GradientTape" if framework == "keras" else "register_forward_hook") in shown


@pytest.fixture(scope="module")
def trained_models(tmp_path_factory):
    """Both frameworks' models, trained by the runner (as the CLI and the app train) on tiny images."""
    from conftest import make_dataset
    from trainer import runner
    from trainer.config import TrainConfig
    base = tmp_path_factory.mktemp("takehome")
    data = make_dataset(base / "data", per_class=(6, 3), size=40)
    runner.train(TrainConfig(framework="both", data_dir=str(data), out_dir=str(base / "models"), epochs=1,
                             batch_size=4, image_size=32, head_units=16, weights="none"))
    return base / "models", data


@pytest.mark.slow
@pytest.mark.parametrize("framework", ["keras", "pytorch"])
def test_downloaded_model_predicts_as_the_app_does(framework, trained_models, tmp_path):
    """The zip a visitor downloads, unzipped: its script, run in a fresh Python, prints the app's
    probabilities; its metadata names no server folder."""
    import json
    import subprocess
    import sys
    import zipfile

    from trainer import export
    from trainer.predictor import Predictor
    models, data = trained_models
    archive = export.pack_model(models, framework, f"{framework}-model", tmp_path)
    folder = tmp_path / "home"
    zipfile.ZipFile(archive).extractall(folder)
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["README.md", "metadata.json", f"predict_{framework}.py",
         "model.keras" if framework == "keras" else "model.safetensors"])
    card = (folder / "README.md").read_text()
    assert card.startswith(f"---\nlibrary_name: \"{framework}\"\n") and "\ndatasets:\n- \"data\"\n" in card
    assert "Validation accuracy:** " in card and "random initialisation" in card and str(data) not in card
    assert str(data) not in (folder / "metadata.json").read_text()
    assert str(models) not in (folder / "metadata.json").read_text()
    images = sorted(str(p) for p in (data / "validation").rglob("*.jpg"))[:4]
    run = subprocess.run([sys.executable, f"predict_{framework}.py", *images], cwd=folder, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    printed = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    predictor = Predictor(models)
    predictor.refresh()
    assert [p["image"] for p in printed] == images
    for line in printed:
        app = predictor.predict_file(line["image"])[framework]["probabilities"]
        assert line["probabilities"].keys() == app.keys()
        for name in app:
            assert line["probabilities"][name] == pytest.approx(app[name], abs=1e-4)
