"""Shared fixtures: tiny generated image folders and a tiny training configuration."""

from __future__ import annotations

import os
import socket
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# The feature bank of every run the tests start (worker processes included): a fresh one per session.
os.environ.setdefault("AVP_CACHE_DIR", tempfile.mkdtemp(prefix="avp-bank-"))
# Frozen backbones run eagerly unless a test asks for the compiled engine (tests/test_engine.py): on a
# float32 CPU every tiny model would otherwise compile (tens of seconds each).
os.environ.setdefault("AVP_BACKBONE_ENGINE", "eager")
import torchvision  # noqa: F401 - before any TensorFlow import; see trainer/keras_backend.py

ROOT = Path(__file__).resolve().parents[1]
AVP = Path(os.environ.get("AVP_TEST_DATA", ROOT.parent / "shared" / "data" / "avp"))
CLASSES = ("bright", "dark")


def toy_image(label: int, size: int, rng: np.random.Generator) -> Image.Image:
    """Class 0 bright, class 1 dark, with noise: learnable from any features, even random ones."""
    base = 185 if label == 0 else 0
    return Image.fromarray((base + rng.integers(0, 70, (size, size, 3))).astype(np.uint8))


def make_dataset(root: Path, per_class=(6, 3), size=40, classes=CLASSES, seed=0,
                 splits=("train", "validation")) -> Path:
    """root/<split>/<class>/*.jpg (or root/<class>/ when splits is empty)."""
    rng = np.random.default_rng(seed)
    for split, count in zip(splits or ("",), per_class):
        for label, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                toy_image(label, size, rng).save(folder / f"{i}.jpg", quality=90)
    return root


@pytest.fixture
def dataset(tmp_path) -> Path:
    return make_dataset(tmp_path / "data")


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection fails at once, as on an offline machine."""
    def refuse(*args, **kwargs):
        raise OSError("network disabled by the test")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture
def tiny_config(dataset, tmp_path):
    from trainer.config import TrainConfig
    return TrainConfig(data_dir=str(dataset), out_dir=str(tmp_path / "models"), epochs=1,
                       batch_size=4, image_size=32, weights="none", head_units=16)


def needs_avp():
    return pytest.mark.skipif(not (AVP / "train").is_dir(), reason=f"real AvP data not found at {AVP}")
