"""A whole training run: find and load the data once, train each framework, save, summarise.

Framework-free: the backends are imported when a run needs them. Used by the CLI (`python -m
trainer train`) and by the app's training process (trainer/worker.py).
"""

from __future__ import annotations

import importlib
import platform
import threading
import time
from datetime import UTC, datetime
from typing import cast

import numpy as np

from trainer import __version__, data, loop
from trainer.backend import Backend
from trainer.config import TrainConfig

PREPROCESSING = {
    "keras": "keras.applications.resnet50.preprocess_input (caffe: BGR, ImageNet mean subtracted)",
    "pytorch": "0-1 scaling, then Normalize(ImageNet mean, std)",
}
MAX_MISCLASSIFIED = 48


def backend(framework: str) -> Backend:
    """The backend module of a framework (trainer/backend.py's surface), imported on first use."""
    name = {"keras": "keras_backend", "pytorch": "torch_backend"}[framework]
    return cast(Backend, importlib.import_module(f"trainer.{name}"))


def load_data(config: TrainConfig, on_event=loop.ignore) -> data.Arrays:
    dataset = data.discover(config.data_dir, config.seed)
    for path, why in dataset.skipped:
        on_event({"type": "warning", "message": f"skipped {path}: {why}"})
    if dataset.skipped:
        on_event({"type": "warning", "message": f"skipped {len(dataset.skipped)} unreadable file(s)"})
    for note in dataset.notes:
        on_event({"type": "warning", "message": note})
    return data.load_dataset(dataset, config.image_size, config.limit, config.seed)


def train(config: TrainConfig, on_event=loop.ignore, should_stop=loop.never) -> dict:
    """Train every framework of `config`; return framework -> summary (see `summarise`)."""
    config.validate()
    # Import the first framework while the images decode: on a small machine this overlaps
    # seconds of library loading with the decoding, and the first batch comes sooner.
    importer = threading.Thread(target=backend, args=(config.frameworks[0],), daemon=True)
    importer.start()
    arrays = load_data(config, on_event)
    importer.join()
    results = {}
    for framework in config.frameworks:
        if should_stop():
            break
        results[framework] = train_one(framework, config, arrays, on_event, should_stop)
        if results[framework]["stopped"]:
            break
    return results


def train_one(framework: str, config: TrainConfig, arrays: data.Arrays, on_event, should_stop) -> dict:
    module = backend(framework)
    device = module.describe_device(config.device)
    model, info = module.build_model(len(arrays.classes), config)
    for message in info["warnings"]:
        on_event({"type": "warning", "framework": framework, "message": message})
    on_event({"type": "start", "framework": framework, "device": device, "classes": arrays.classes,
              "train_images": len(arrays.y_train), "val_images": len(arrays.y_val),
              "pretrained": info["pretrained"], "precision": info["precision"], "epochs": config.epochs,
              "augment": config.augment_active, "feature_cache": config.feature_cache})
    started = time.perf_counter()
    result = module.train(model, arrays, config, on_event, should_stop)
    summary = summarise(framework, config, arrays, result, info, device, time.perf_counter() - started, model)
    summary["versions"] = module.versions()
    if not result["stopped"]:
        summary["saved_to"] = str(module.save(model, config.out_dir, summary))
    on_event({"type": "end", **summary})
    return summary


def summarise(framework, config, arrays, result, info, device, seconds, model=None) -> dict:
    """What metadata.json holds and what the app shows at the end of a run (the Train tab compares
    the two frameworks by it: sizes, speeds and the predictions on the validation images)."""
    history = result["history"]
    summary = {
        "framework": framework, "classes": arrays.classes, "config": config.to_dict(),
        "history": history, "stopped": result["stopped"], "pretrained": info["pretrained"],
        "warnings": info["warnings"], "device": device, "precision": info["precision"], "seconds": seconds,
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "train_images": len(arrays.y_train), "val_images": len(arrays.y_val),
        "preprocessing": PREPROCESSING[framework], "trainer_version": __version__,
        "python": platform.python_version(),
    }
    if history:
        summary.update(
            val_accuracy=history[-1]["val_accuracy"],
            best_val_accuracy=max(h["val_accuracy"] for h in history),
            seconds_per_epoch=float(np.mean([h["seconds"] for h in history])),
            images_per_s=float(np.mean([h["images_per_s"] for h in history])))
    if result["val_probabilities"] is not None and len(arrays.y_val):
        summary.update(confusion_and_mistakes(arrays, np.asarray(result["val_probabilities"])))
    if model is not None:
        summary.update(parameter_counts(model), predict_seconds=predict_seconds(framework, model, arrays))
    return summary


def parameter_counts(model) -> dict:
    """Trainable and total parameters of a keras.Model or a torch.nn.Module."""
    if hasattr(model, "count_params"):  # Keras
        trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
        return {"trainable_params": trainable, "total_params": int(model.count_params())}
    params = list(model.parameters())
    return {"trainable_params": sum(p.numel() for p in params if p.requires_grad),
            "total_params": sum(p.numel() for p in params)}


def predict_seconds(framework: str, model, arrays: data.Arrays) -> float | None:
    """Seconds for one prediction of one image: the fastest of three after a warm-up call (the first
    call pays for set-up, and the others for whatever else the machine does meanwhile)."""
    images = arrays.x_val[:1] if len(arrays.y_val) else arrays.x_train[:1]
    if not len(images):
        return None
    backend(framework).predict_proba(model, images)
    times = []
    for _ in range(3):
        started = time.perf_counter()
        backend(framework).predict_proba(model, images)
        times.append(time.perf_counter() - started)
    return min(times)


def confusion_and_mistakes(arrays: data.Arrays, probabilities: np.ndarray) -> dict:
    predicted = probabilities.argmax(1)
    size = len(arrays.classes)
    confusion = np.zeros((size, size), dtype=int)  # rows: true class, columns: predicted
    np.add.at(confusion, (arrays.y_val, predicted), 1)
    wrong = np.flatnonzero(predicted != arrays.y_val)[:MAX_MISCLASSIFIED]
    mistakes = [{"path": arrays.val_paths[i], "true": arrays.classes[arrays.y_val[i]],
                 "predicted": arrays.classes[predicted[i]],
                 "probability": float(probabilities[i, predicted[i]])} for i in wrong]
    return {"confusion": confusion.tolist(), "misclassified": mistakes, "val_predicted": predicted.tolist()}
