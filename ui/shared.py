"""What all users of one server share: the models folder, the runs folder, the one training job,
and the loaded models. Everything per user lives in gr.State or in return values.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

from trainer import data
from trainer.config import default_data_dir

ROOT = Path(__file__).resolve().parents[1]
MODELS_DIR = Path(os.environ.get("AVP_MODELS_DIR", ROOT / "models")).resolve()
RUNS_DIR = Path(os.environ.get("AVP_RUNS_DIR", ROOT / "runs")).resolve()
ASSETS = ROOT / "assets"
PREVIEW_SIZE = 224
MAX_UPLOAD = os.environ.get("AVP_MAX_UPLOAD", "200mb")  # larger uploads are answered 413


@functools.cache
def jobs():
    from trainer.jobs import Jobs
    return Jobs(RUNS_DIR)


@functools.cache
def predictor():
    from trainer.predictor import Predictor
    return Predictor(MODELS_DIR)


def example_images(per_class: int = 2) -> list[str]:
    """A few validation images of the data folder, else the project's own test card.

    Quick on purpose (it runs while the page is built): files are listed, not decoded; a broken
    one says so when it is clicked.
    """
    picks = []
    root = Path(default_data_dir())
    if root.is_dir():
        root = data.resolve_root(root)
        split = data.find_split(root, "val") or data.find_split(root, "train") or root
        for class_dir in data.subfolders(split):
            files = sorted(p for p in class_dir.iterdir() if p.is_file() and data.visible(p))
            picks += [str(p) for p in files[:per_class]]
    return picks or [str(ASSETS / "test_card.png")]


def public_error(error: BaseException) -> str:
    """An error message fit for a page: no server folders."""
    text = str(error)
    for folder in {str(ROOT), str(Path.home())}:
        text = text.replace(folder, "…")
    return text
