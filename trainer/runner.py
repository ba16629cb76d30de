"""A whole training run: find and load the data once, train each framework, save, summarise.

Framework-free: the backends are imported when a run needs them. Used by the CLI (`python -m
trainer train`) and by the app's training process (classroom/worker.py).
"""

from __future__ import annotations

import platform
import threading
import time
from datetime import UTC, datetime

import numpy as np

from trainer import __version__, data, frameworks, loop, weights
from trainer.bank import FeatureBank
from trainer.config import TrainConfig, machine_has_nvidia_gpu, server_precision
from trainer.frameworks import backend

MAX_MISCLASSIFIED = 48


def load_data(config: TrainConfig, on_event=loop.ignore) -> data.Arrays:
    dataset = data.discover(config.data_dir, config.seed)
    for path, why in dataset.skipped:
        on_event({"type": "warning", "message": f"skipped {path}: {why}"})
    if dataset.skipped:
        on_event({"type": "warning", "message": f"skipped {len(dataset.skipped)} unreadable file(s)"})
    for note in dataset.notes:
        on_event({"type": "warning", "message": note})
    return decoded(dataset, config.image_size, config.limit, config.seed)


_last_decoded: list = []  # [(key, Arrays)]: the last data set a (warm) worker process decoded


def decoded(dataset: data.DataSet, size: int, limit: int, seed: int) -> data.Arrays:
    """`data.load_dataset`, reusing the last result when the same files (same sizes and times) are
    asked for at the same size: a warm worker's next run on the same images skips the decoding."""
    files = tuple((str(s.path), s.path.stat().st_mtime_ns, s.path.stat().st_size)
                  for s in dataset.train + dataset.val)
    key = (str(dataset.root), files, size, limit, seed)
    if _last_decoded and _last_decoded[0][0] == key:
        return _last_decoded[0][1]
    arrays = data.load_dataset(dataset, size, limit, seed)
    _last_decoded[:] = [(key, arrays)]
    return arrays


def train(config: TrainConfig, on_event=loop.ignore, should_stop=loop.never, bank: FeatureBank | None = None) -> dict:
    """Train every framework of `config`; return framework -> summary (see `summarise`). With a
    `bank`, a frozen backbone's features are taken from it and kept in it (trainer/bank.py)."""
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
        results[framework] = train_one(framework, config, arrays, on_event, should_stop, bank)
        if results[framework]["stopped"]:
            break
    return results


def warm_up(config: TrainConfig | None = None) -> dict:
    """Make each framework's frozen backbone engine ready for `config` (default: the Train tab's
    defaults, the server's precision, random initialisation where ImageNet weights cannot be had)
    now (the backends' `prepare`: compile, export, or time XLA against tf.function): a warm worker
    pays this once, as it starts, and every run with the same weights and size reuses it.
    Framework -> (engine, seconds spent, loading the weights included); a framework that cannot
    build or compile (no weights offline) is left for its run to report."""
    config = config or TrainConfig(precision=server_precision(), weights=weights.default_choice())
    prepared = {}
    for framework in config.frameworks:
        started = time.perf_counter()
        try:
            engine = backend(framework).prepare(config)
        except Exception:  # noqa: BLE001 - a worker must serve even so; the run itself will say what fails
            continue
        prepared[framework] = (engine, time.perf_counter() - started)
    return prepared


def train_one(framework: str, config: TrainConfig, arrays: data.Arrays, on_event, should_stop,
              bank: FeatureBank | None = None) -> dict:
    module = backend(framework)
    device = module.describe_device(config.device)
    model, info = module.build_model(len(arrays.classes), config)
    for message in info["warnings"]:
        on_event({"type": "warning", "framework": framework, "message": message})
    if device.startswith("CPU") and config.device != "cpu" and machine_has_nvidia_gpu():
        on_event({"type": "warning", "framework": framework, "loud": True,
                  "message": frameworks.get(framework).gpu_unused})
    on_event({"type": "start", "framework": framework, "device": device, "classes": arrays.classes,
              "train_images": len(arrays.y_train), "val_images": len(arrays.y_val),
        "val_paths": arrays.val_paths,  # in the order of val_predicted: the app shows where two models disagree
              "pretrained": info["pretrained"], "precision": info["precision"], "engine": info.get("engine"),
              "epochs": config.epochs,
              "augment": config.augment_active, "feature_cache": config.feature_cache})
    started = time.perf_counter()
    views = bank_views(bank, framework, config, info, arrays, module, on_event)
    result = module.train(model, arrays, config, on_event, should_stop, views)
    if views is not None:
        on_event({"type": "bank", "framework": framework, "message": bank_message(views, config, result)})
    summary = summarise(framework, config, arrays, result, info, device, time.perf_counter() - started, model)
    summary["versions"] = module.versions()
    if not result["stopped"]:
        summary["saved_to"] = str(module.save(model, config.out_dir, summary))
    on_event({"type": "end", **summary})
    return summary


def bank_views(bank: FeatureBank | None, framework: str, config: TrainConfig, info: dict, arrays, module, on_event):
    """The run's keys in the bank; None without a bank, or when unfrozen stages change the backbone."""
    if bank is None:
        return None
    if config.unfreeze:
        on_event({"type": "bank", "framework": framework, "message": f"feature bank not used: unfreezing "
                  f"{config.unfreeze} stage(s) changes the backbone, so its features are computed every batch"})
        return None
    identity = {**info, "library": module.versions(), "weights_id": weights.identity(config, info["pretrained"])}
    return bank.for_run(framework, config, identity, arrays)


def bank_message(views, config: TrainConfig, result: dict) -> str:
    """What the run took from the bank, in words that do not read as a failure when it took nothing:
    "augmented features computed fresh (the first run with these settings), now in the feature bank";
    "augmented features of all 3 epochs from the feature bank"."""
    epochs, taken = len(result["history"]), views.from_bank["train"]
    if not config.augment_active:
        train = ("features from the feature bank" if taken else
                 "features computed once (the first run with these settings), now in the feature bank")
    elif not taken:
        train = "augmented features computed fresh (the first run with these settings), now in the feature bank"
    elif taken >= epochs:
        train = ("augmented features from the feature bank" if epochs == 1 else
                 f"augmented features of all {epochs} epochs from the feature bank")
    else:
        train = f"augmented features of {taken} of {epochs} epochs from the feature bank, the others computed fresh"
    val = "from the bank" if views.from_bank["val"] else "computed, now in the bank"
    return f"{train}; validation features {val}"


def summarise(framework, config, arrays, result, info, device, seconds, model=None) -> dict:
    """What metadata.json holds and what the app shows at the end of a run (the Train tab compares
    the two frameworks by it: sizes, speeds and the predictions on the validation images)."""
    history = result["history"]
    summary = {
        "framework": framework, "classes": arrays.classes, "config": config.to_dict(),
        "history": history, "stopped": result["stopped"], "time_up": result.get("time_up", False),
        "pretrained": info["pretrained"], "warnings": info["warnings"], "device": device,
        "precision": info["precision"], "engine": info.get("engine"), "seconds": seconds,
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "train_images": len(arrays.y_train), "val_images": len(arrays.y_val),
        "val_paths": arrays.val_paths,  # in the order of val_predicted: the app shows where two models disagree
        "preprocessing": frameworks.get(framework).preprocessing, "trainer_version": __version__,
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
        summary.update(backend(framework).parameter_counts(model),
                       predict_seconds=predict_seconds(framework, model, arrays))
    return summary


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
