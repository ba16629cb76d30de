"""Saved models on disk: one folder per framework, written atomically, found again after a restart.

Layout of a models folder: `<models>/keras/{model.keras, metadata.json}` and
`<models>/pytorch/{model.safetensors, metadata.json}`. A save writes a fresh staging folder and then swaps it
in with two renames, so a crash leaves either the old model or the new one, never half of one
(`recover` finishes an interrupted swap). No framework import.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from trainer import frameworks

METADATA = "metadata.json"


def model_file(framework: str) -> str:
    """The saved model's file name, e.g. model.keras (trainer/frameworks.py)."""
    return frameworks.get(framework).model_file


def saved_file(folder: str | Path, framework: str) -> Path | None:
    """The model file in a saved model's folder: today's format, or an older one the backend still
    loads (trainer/frameworks.py legacy_model_files); None when there is none."""
    record = frameworks.get(framework)
    for name in (record.model_file, *record.legacy_model_files):
        if (Path(folder) / name).is_file():
            return Path(folder) / name
    return None


def model_dir(models: str | Path, framework: str) -> Path:
    return Path(models) / framework


def save_atomically(models: str | Path, framework: str, write_model: Callable[[Path], None],
                    metadata: dict) -> Path:
    """Write the model (by `write_model(file)`) and metadata.json, then swap them in at once."""
    models = Path(models)
    models.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".staging-{framework}-", dir=models))
    try:
        write_model(staging / model_file(framework))
        (staging / METADATA).write_text(json.dumps(metadata, indent=2, default=str))
        return _swap_in(staging, models, framework)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _swap_in(staging: Path, models: Path, framework: str) -> Path:
    """A complete model folder beside its place takes it, with two renames: the old one aside,
    the new one in (a reader sees the old model or the new one, never half of either)."""
    final, old = model_dir(models, framework), models / f".old-{framework}"
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        os.replace(final, old)
    os.replace(staging, final)
    shutil.rmtree(old, ignore_errors=True)
    return final


def install(staged: dict[str, Path], models: str | Path) -> dict[str, Path]:
    """Put complete saved models (framework -> folder, anywhere) in place in `models`, all or none:
    each is first moved (or, from another disk, copied) to a staging folder beside its place, and
    only when every one is there are they swapped in, each with two renames (as `save_atomically`).
    A model that is not complete (no model file or metadata) is refused with ValueError before
    anything in `models` changes. Return framework -> its folder in `models`."""
    missing = [fw for fw, folder in staged.items()
               if saved_file(folder, fw) is None or not (Path(folder) / METADATA).is_file()]
    if missing:
        raise ValueError(f"no complete saved model to install for {', '.join(missing)}")
    models = Path(models)
    models.mkdir(parents=True, exist_ok=True)
    staging = {}
    try:
        for framework, folder in staged.items():
            target = Path(tempfile.mkdtemp(prefix=f".staging-{framework}-", dir=models))
            staging[framework] = target
            try:
                os.replace(folder, target)  # the same disk: a rename
            except OSError:
                shutil.copytree(folder, target, dirs_exist_ok=True)
        for framework, target in staging.items():
            _swap_in(target, models, framework)
    finally:
        for target in staging.values():
            shutil.rmtree(target, ignore_errors=True)
    return {framework: model_dir(models, framework) for framework in staged}


def recover(models: str | Path) -> None:
    """Finish a swap that a crash interrupted: put the previous model back where it belongs."""
    models = Path(models)
    for framework in frameworks.NAMES:
        old, final = models / f".old-{framework}", model_dir(models, framework)
        if old.is_dir() and not final.exists():
            os.replace(old, final)


def find_models(models: str | Path) -> dict[str, Path]:
    """Framework -> folder of every complete saved model under `models`."""
    models = Path(models)
    if models.is_dir():
        recover(models)
    found = {}
    for framework in frameworks.NAMES:
        folder = model_dir(models, framework)
        if saved_file(folder, framework) is not None and (folder / METADATA).is_file():
            found[framework] = folder
    return found


def read_metadata(folder: str | Path) -> dict:
    return json.loads((Path(folder) / METADATA).read_text())
