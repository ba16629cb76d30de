"""The epoch loop both backends share, and the progress events it emits (no framework import).

A backend supplies two functions (with a frozen backbone, `frozen_batches` makes the first from
the backend's `compute` and `head_step`, with the feature bank): `train_batches(epoch)`, a
generator that runs one optimisation step per item and yields
`(loss, images, correct, data_seconds)` for that batch (data_seconds: how long the step waited for
its input), and `validate()`, which returns
`(loss, accuracy, probabilities)` on the validation split. This loop times them, emits events, and
checks the stop flag after every batch, so Stop takes effect within one batch in both frameworks.

Events are plain JSON-serialisable dicts with a "type": start, batch, epoch, end, warning. They
travel through a callable whose default ignores them, and across processes as JSON lines.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator

import numpy as np

from trainer.constants import FEATURE_DIM

Event = dict
EventSink = Callable[[Event], None]


def ignore(event: Event) -> None:
    """The default event sink: does nothing."""


def never() -> bool:
    """The default stop flag: never set."""
    return False


def validation(model, data, frozen: bool, features_of, evaluate,
               views=None) -> Callable[[], tuple[float, float, object]]:
    """`validate()` for run_epochs. With a frozen backbone the validation features are the same every
    epoch: taken from the bank (`views`, trainer/bank.py) or computed at the first validation (not
    before the first batch), then reused. `features_of(model, images)` returns numpy features."""
    cached = None

    def validate():
        nonlocal cached
        if frozen and cached is None:
            cached = views.get("val") if views is not None else None
            if cached is None:
                cached = features_of(model, data.x_val)
                if views is not None:
                    views.put("val", 0, cached)
        return evaluate(model, data.x_val, data.y_val, features=cached)

    return validate


def batch_order(n: int, batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
    """The image indices of each batch of an epoch: a seeded shuffle, the same in both frameworks."""
    order = np.random.default_rng([seed, epoch]).permutation(n)
    return [order[start:start + batch_size] for start in range(0, n, batch_size)]


def frozen_batches(n_train: int, batch_size: int, seed: int, view_of: Callable[[int], int],
                   compute: Callable[[np.ndarray, int], tuple[np.ndarray, float]],
                   head_step: Callable[[np.ndarray, np.ndarray], tuple[float, int]],
                   views=None) -> Callable[[int], Iterator[tuple[float, int, int, float]]]:
    """`train_batches(epoch)` for a frozen backbone: the head trains on the features of view
    `view_of(epoch)` of the training images. They come from the bank (`views`) when it has them;
    else `compute(index, view) -> (features, data_seconds)` makes them batch by batch, and once the
    epoch has run to its end they are kept: in the bank, and for a next epoch of the same view
    (every epoch, when nothing is augmented). `head_step(features, index) -> (loss, correct)`."""
    kept: dict[int, np.ndarray] = {}

    def train_batches(epoch: int):
        view = view_of(epoch)
        stored = kept.get(view)
        if stored is None and views is not None:
            stored = views.get("train", view)
        computed = np.empty((n_train, FEATURE_DIM), np.float32) if stored is None else None
        for index in batch_order(n_train, batch_size, seed, epoch):
            if stored is not None:
                features, data_s = stored[index], 0.0
            else:
                features, data_s = compute(index, view)
                computed[index] = features
            loss, correct = head_step(features, index)
            yield loss, len(index), correct, data_s
        if computed is not None:  # only reached when the epoch ran to its end (a Stop never resumes it)
            if views is not None:
                views.put("train", view, computed)
            stored = computed
        kept.clear()
        kept[view] = stored

    return train_batches


def run_epochs(framework: str, epochs: int, n_train: int, batch_size: int,
               train_batches: Callable[[int], Iterator[tuple[float, int, int, float]]],
               validate: Callable[[], tuple[float, float, object]],
               on_event: EventSink = ignore, should_stop: Callable[[], bool] = never) -> dict:
    """Train for `epochs`; return {"history": [...], "stopped": bool, "val_probabilities": ...}."""
    batches_per_epoch = math.ceil(n_train / batch_size)
    total_batches = epochs * batches_per_epoch
    history, done_batches, images_total, started = [], 0, 0, time.perf_counter()
    val_probabilities = None
    for epoch in range(1, epochs + 1):
        epoch_start, loss_sum, seen, correct, data_seconds = time.perf_counter(), 0.0, 0, 0, 0.0
        for batch, (loss, images, right, data_s) in enumerate(train_batches(epoch), 1):
            loss_sum, seen, correct = loss_sum + loss * images, seen + images, correct + right
            data_seconds += data_s
            done_batches, images_total = done_batches + 1, images_total + images
            elapsed = time.perf_counter() - started
            on_event({"type": "batch", "framework": framework, "epoch": epoch, "epochs": epochs,
                      "batch": batch, "batches": batches_per_epoch, "loss": float(loss),
                      "images_seen": images_total, "images_per_s": images_total / elapsed,
                      "elapsed_s": elapsed,
                      "eta_s": elapsed / done_batches * (total_batches - done_batches)})
            if should_stop():
                on_event({"type": "stopped", "framework": framework, "epoch": epoch, "batch": batch})
                return {"history": history, "stopped": True, "val_probabilities": val_probabilities}
        train_seconds = time.perf_counter() - epoch_start
        val_loss, val_accuracy, val_probabilities = validate()
        record = {"epoch": epoch, "train_loss": loss_sum / seen, "train_accuracy": correct / seen,
                  "val_loss": float(val_loss), "val_accuracy": float(val_accuracy),
                  "train_seconds": train_seconds, "seconds": time.perf_counter() - epoch_start,
                  "images_per_s": seen / train_seconds, "data_wait_share": data_seconds / train_seconds}
        history.append(record)
        on_event({"type": "epoch", "framework": framework, "epochs": epochs, **record})
    return {"history": history, "stopped": False, "val_probabilities": val_probabilities}
