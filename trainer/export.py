"""A saved model packed to take home: one zip with the model file, a metadata.json without server
paths, a script that loads them and predicts (trainer/codegen.py) and a README.md model card in
the Hugging Face format (YAML front matter, then what it is and how to load it). No framework import.

    export.pack_model(models_dir, "pytorch", "pytorch-my-model", cache_dir)  # -> <cache_dir>/model-<v>/<name>.zip

The zip is made once per saved model in a folder of the caller's (the app: gradio's cache, which
gradio serves and `delete_cache` removes), however often it is asked for, so the disk a visitor can
fill is bounded by the models, not the clicks.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
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
    if not (folder / store.model_file(framework)).is_file():
        raise FileNotFoundError(f"the {framework} model is saved in an older format: train it again to take it home")
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
            archive.writestr("README.md", model_card(framework, metadata, dataset_name(folder)))
        os.replace(staging, target)  # whole or not at all, also when two visitors ask at once
    finally:
        Path(staging).unlink(missing_ok=True)
    return target


LIBRARY = {"keras": "keras", "pytorch": "pytorch"}  # Hugging Face's library_name values
LOADING = {
    "keras": """```python
import keras

model = keras.saving.load_model("model.keras", safe_mode=True)  # ends in a softmax: probabilities
# inputs: RGB images squashed to {size} x {size}, then keras.applications.resnet50.preprocess_input
```""",
    "pytorch": """```python
import torch, torchvision
from safetensors.torch import load_file

model = torchvision.models.resnet50(weights=None)
model.fc = torch.nn.Sequential(torch.nn.Linear(2048, {units}), torch.nn.ReLU(), torch.nn.Linear({units}, {classes}))
model.load_state_dict(load_file("model.safetensors"))  # tensors only: loading runs no code
model.eval()  # returns logits: apply softmax for probabilities
# inputs: RGB images squashed to {size} x {size}, scaled to 0-1, normalised with the ImageNet mean and std
```""",
}


def dataset_name(folder: Path) -> str:
    """The data set's folder name (never its path), as a safe identifier: `avp`, `my_photos`."""
    try:
        data_dir = store.read_metadata(folder).get("config", {}).get("data_dir", "")
    except (OSError, ValueError):
        data_dir = ""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(str(data_dir)).name).strip("-.")[:60]
    return name or "custom"


def model_card(framework: str, metadata: dict, dataset: str) -> str:
    """README.md in the Hugging Face model-card format: front matter, then the model in words."""
    config = metadata.get("config", {})
    augment = config.get("augment", {})
    classes = [str(c) for c in metadata.get("classes", [])]
    accuracy = metadata.get("val_accuracy")
    front = {"library_name": LIBRARY[framework], "pipeline_tag": "image-classification",
             "tags": ["image-classification", "transfer-learning", "resnet-50", framework],
             "datasets": [dataset], "metrics": ["accuracy"]}
    yaml = "\n".join(f"{key}: {json.dumps(value)}" if not isinstance(value, list) else
                      f"{key}:\n" + "\n".join(f"- {json.dumps(item)}" for item in value)
                      for key, value in front.items())
    settings = ", ".join(f"{name} {config.get(name)}" for name in (
        "epochs", "batch_size", "lr", "image_size", "head_units", "unfreeze", "fine_tune_lr", "seed")
        if name in config)
    augmentation = ("off" if not augment.get("enabled", True) or config.get("feature_cache") else
                    ", ".join(f"{k} {v}" for k, v in augment.items() if k != "enabled"))
    init = ("pretrained on ImageNet" if metadata.get("pretrained") else
            "**random initialisation** (no ImageNet weights): expect low accuracy")
    load = LOADING[framework].format(size=config.get("image_size", "?"), units=config.get("head_units", "?"),
                                     classes=len(classes))
    return f"""---
{yaml}
---

# ResNet-50 fine-tuned on {dataset} ({framework})

An ImageNet ResNet-50 with a frozen backbone and a new dense head (global average pooling, Dense
{config.get("head_units", "?")} ReLU, Dense {len(classes)}), trained with Adam by the Keras vs. PyTorch
transfer-learning app.

- **Framework:** {framework} ({", ".join(f"{k} {v}" for k, v in metadata.get("versions", {}).items())})
- **Data set:** {dataset}: classes {", ".join(classes)}; {metadata.get("train_images", "?")} training and
  {metadata.get("val_images", "?")} validation images
- **Settings:** {settings}; augmentation: {augmentation}; precision {metadata.get("precision", "?")}
- **Validation accuracy:** {f"{accuracy:.4f}" if isinstance(accuracy, (int, float)) else "not measured"}
- **Initialisation:** {init}
- **Trained:** {metadata.get("trained_at", "?")}

## How to load it

Predict from the command line (one JSON line of class probabilities per image):

    python predict_{framework}.py image.jpg

Or in Python (`metadata.json` holds the classes, in order, and every setting):

{load}
"""
