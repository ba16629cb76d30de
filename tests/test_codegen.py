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
