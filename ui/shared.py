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
MAX_UPLOAD = "200mb"


@functools.cache
def jobs():
    from trainer.jobs import Jobs
    return Jobs(RUNS_DIR)


@functools.cache
def predictor():
    from trainer.predictor import Predictor
    return Predictor(MODELS_DIR)


def example_images(per_class: int = 2) -> list[str]:
    """A few validation images of the data folder, else the project's own test card."""
    try:
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            found = data.discover(default_data_dir())
        picks = [s for label in range(len(found.classes))
                 for s in [s for s in found.val if s.label == label][:per_class]]
        return [str(s.path) for s in picks]
    except (data.DataError, OSError):
        return [str(ASSETS / "test_card.png")]


def public_error(error: BaseException) -> str:
    """An error message fit for a page: no server folders."""
    text = str(error)
    for folder in {str(ROOT), str(Path.home())}:
        text = text.replace(folder, "…")
    return text
