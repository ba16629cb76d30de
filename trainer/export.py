"""A saved model packed to take home: one zip with the model file, a metadata.json without server
paths and a script that loads them and predicts (trainer/codegen.py). No framework import.

    export.pack_model(models_dir, "pytorch", "pytorch-my-model", cache_dir)  # -> <cache_dir>/model-<v>/<name>.zip

The zip is made once per saved model in a folder of the caller's (the app: gradio's cache, which
gradio serves and `delete_cache` removes), however often it is asked for, so the disk a visitor can
fill is bounded by the models, not the clicks.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
from pathlib import Path

from trainer import codegen, public, store

SERVER_ONLY = ("saved_to", "misclassified", "val_paths")  # metadata keys that name server files


def public_metadata(metadata: dict) -> dict:
    """metadata.json as it may leave the server: no server folders or file paths."""
    kept = {key: value for key, value in metadata.items() if key not in SERVER_ONLY}
    kept["config"] = {**metadata.get("config", {}), "data_dir": "", "out_dir": ""}
    # The warnings can name a weights cache in the server's home folder.
    kept["warnings"] = [public.text(str(w)) for w in metadata.get("warnings", [])]
    return kept


def pack_model(models_dir: Path, framework: str, name: str, cache_dir: str | Path) -> Path:
    """`<cache_dir>/model-<version>/<name>.zip` holding the saved model of `framework` found under
    `models_dir`, its public metadata.json and predict_<framework>.py; the one already made for
    this saved model when there is one. FileNotFoundError if there is no model."""
    folder = store.find_models(models_dir).get(framework)
    if folder is None:
        raise FileNotFoundError(f"no saved {framework} model")
    saved = f"{folder.resolve()}|{(folder / store.METADATA).stat().st_mtime_ns}"
    target = Path(cache_dir) / f"model-{hashlib.sha256(saved.encode()).hexdigest()[:20]}" / f"{name}.zip"
    if target.is_file():
        os.utime(target)  # gradio's delete_cache ages files by their times: this one was just handed out
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    metadata = public_metadata(store.read_metadata(folder))
    fd, staging = tempfile.mkstemp(dir=target.parent, suffix=".part")
    os.close(fd)
    try:
        # Stored, not deflated: the weights do not compress, and the zip is made while the visitor waits.
        with zipfile.ZipFile(staging, "w", zipfile.ZIP_STORED) as archive:
            archive.write(folder / store.model_file(framework), store.model_file(framework))
            archive.writestr(store.METADATA, json.dumps(metadata, indent=2, default=str))
            archive.writestr(f"predict_{framework}.py", codegen.predict_script(framework, metadata))
        os.replace(staging, target)  # whole or not at all, also when two visitors ask at once
    finally:
        Path(staging).unlink(missing_ok=True)
    return target
