"""The training outline both backends share, and the progress events it emits (no framework import).

A backend's `train` makes its framework's steps (`Steps`: backbone features of a batch, one step of
the head, one step through unfrozen stages, the validation) and hands them to `fit`, which runs the
same outline for both: which view of the augmented images each epoch sees, the feature bank for a
frozen backbone, the seeded batch order, validation once per epoch, timing, events, and the stop
flag checked after every batch (so Stop takes effect within one batch in both frameworks).

Events are plain JSON-serialisable dicts with a "type": start, batch (coalesced: a few hundred a run),
epoch, end, warning, stopped, time_up. They
travel through a callable whose default ignores them, and across processes as JSON lines.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from trainer.constants import FEATURE_DIM

if TYPE_CHECKING:
    from trainer.bank import RunViews
    from trainer.config import TrainConfig

Event = dict
EventSink = Callable[[Event], None]
MAX_BATCH_POINTS = 300  # batch events per framework and run (the chart needs no more)
TIME_UP = "time up"  # what `should_stop` returns when the server's time for the run is over


def ignore(event: Event) -> None:
    """The default event sink: does nothing."""


def never() -> bool:
    """The default stop flag: never set."""
    return False


@dataclass(frozen=True)
class Steps:
    """A backend's framework steps for one training; `fit` decides when each runs. Indices are
    positions in the training images; a view is the augmented version an epoch sees (view 0 is the
    images as they are when nothing is augmented)."""
    # (index, view) -> backbone features of those images in that view (numpy), seconds waited for data
    features: Callable[[np.ndarray, int], tuple[np.ndarray, float]]
    # (features, index) -> loss, correct: one optimiser step of the head
    head_step: Callable[[np.ndarray, np.ndarray], tuple[float, int]]
    # (index, view) -> loss, correct, seconds waited for data: one step through unfrozen stages and the head
    full_step: Callable[[np.ndarray, int], tuple[float, int, float]]
    # () -> backbone features of the validation images
    val_features: Callable[[], np.ndarray]
    # (validation features, or None: computed from the images) -> loss, accuracy, probabilities
    evaluate: Callable[[np.ndarray | None], tuple[float, float, object]]


def fit(framework: str, steps: Steps, n_train: int, config: TrainConfig, on_event: EventSink = ignore,
        should_stop: Callable[[], bool] = never, views: RunViews | None = None) -> dict:
    """Train with a backend's `steps`; return {"history": [...], "stopped": bool, "val_probabilities": ...}.
    With a frozen backbone each epoch's features come from the bank (`views`) when it has them."""
    # Epoch e trains on view e of the augmented images (the same draws in both frameworks,
    # trainer/augment.py); without augmentation every epoch sees the images as they are.
    view_of = (lambda epoch: epoch) if config.augment_active else (lambda epoch: 0)
    frozen = config.unfreeze == 0
    if frozen:  # only the head learns: it trains on backbone features, computed once per view
        train_batches = frozen_batches(n_train, config.batch_size, config.seed, view_of, steps.features,
                                       steps.head_step, views)
    else:  # unfrozen stages learn too: every batch goes through the backbone
        train_batches = unfrozen_batches(n_train, config.batch_size, config.seed, view_of, steps.full_step)
    validate = validation(steps, frozen, views)
    return run_epochs(framework, config.epochs, n_train, config.batch_size, train_batches, validate,
                      on_event, should_stop)


def validation(steps: Steps, frozen: bool, views: RunViews | None = None) -> Callable[[], tuple[float, float, object]]:
    """`validate()` for run_epochs. With a frozen backbone the validation features are the same every
    epoch: taken from the bank (`views`, trainer/bank.py) or computed at the first validation (not
    before the first batch), then reused."""
    cached = None

    def validate():
        nonlocal cached
        if frozen and cached is None:
            cached = views.get("val") if views is not None else None
            if cached is None:
                cached = steps.val_features()
                if views is not None:
                    views.put("val", 0, cached)
        return steps.evaluate(cached)

    return validate


def unfrozen_batches(n_train: int, batch_size: int, seed: int, view_of: Callable[[int], int],
                     full_step: Callable[[np.ndarray, int], tuple[float, int, float]]
                     ) -> Callable[[int], Iterator[tuple[float, int, int, float]]]:
    """`train_batches(epoch)` when stages are unfrozen: one `full_step` per batch."""
    def train_batches(epoch: int):
        for index in batch_order(n_train, batch_size, seed, epoch):
            loss, correct, data_s = full_step(index, view_of(epoch))
            yield loss, len(index), correct, data_s
    return train_batches


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
               on_event: EventSink = ignore, should_stop: Callable[[], bool | str] = never) -> dict:
    """Train for `epochs`; return {"history": [...], "stopped": bool, "val_probabilities": ...}.

    `should_stop()` is asked after every batch: True stops at once (nothing is validated, the
    caller saves nothing); TIME_UP ends the run there as if its epochs were done (the epoch under
    way is validated as it stands, the result is marked "time_up", and the caller saves it).
    Batch events are coalesced to about MAX_BATCH_POINTS per run (each carries the mean loss of
    the batches it stands for, and the last batch of every epoch has one): a batch-1 run writes a
    few hundred lines, not one per image, whatever its length."""
    batches_per_epoch = math.ceil(n_train / batch_size)
    total_batches = epochs * batches_per_epoch
    every = max(1, math.ceil(total_batches / MAX_BATCH_POINTS))
    history, done_batches, images_total, started = [], 0, 0, time.perf_counter()
    val_probabilities = None
    point_loss, point_images = 0.0, 0  # the batches the next batch event stands for

    def send_point(epoch: int, batch: int) -> None:
        nonlocal point_loss, point_images
        elapsed = time.perf_counter() - started
        on_event({"type": "batch", "framework": framework, "epoch": epoch, "epochs": epochs,
                  "batch": batch, "batches": batches_per_epoch, "loss": point_loss / point_images,
                  "images_seen": images_total, "images_per_s": images_total / elapsed, "elapsed_s": elapsed,
                  "eta_s": elapsed / done_batches * (total_batches - done_batches)})
        point_loss, point_images = 0.0, 0

    for epoch in range(1, epochs + 1):
        epoch_start, loss_sum, seen, correct, data_seconds = time.perf_counter(), 0.0, 0, 0, 0.0
        for batch, (loss, images, right, data_s) in enumerate(train_batches(epoch), 1):
            loss_sum, seen, correct = loss_sum + loss * images, seen + images, correct + right
            point_loss, point_images = point_loss + loss * images, point_images + images
            data_seconds += data_s
            done_batches, images_total = done_batches + 1, images_total + images
            if batch % every == 0 or batch == batches_per_epoch:
                send_point(epoch, batch)
            stop = should_stop()
            if stop and point_images:
                send_point(epoch, batch)  # the batches since the last point, before the run ends
            if stop == TIME_UP:
                on_event({"type": "time_up", "framework": framework, "epoch": epoch, "batch": batch})
                break
            if stop:
                on_event({"type": "stopped", "framework": framework, "epoch": epoch, "batch": batch})
                return {"history": history, "stopped": True, "val_probabilities": val_probabilities}
        train_seconds = time.perf_counter() - epoch_start
        val_loss, val_accuracy, val_probabilities = validate()
        record = {"epoch": epoch, "train_loss": loss_sum / seen, "train_accuracy": correct / seen,
                  "val_loss": float(val_loss), "val_accuracy": float(val_accuracy),
                  "train_seconds": train_seconds, "seconds": time.perf_counter() - epoch_start,
                  "images_per_s": seen / train_seconds, "data_wait_share": data_seconds / train_seconds}
        if stop == TIME_UP:
            record["images"] = seen  # a part of the epoch: the server's time for one run was up
        history.append(record)
        on_event({"type": "epoch", "framework": framework, "epochs": epochs, **record})
        if stop == TIME_UP:
            return {"history": history, "stopped": False, "time_up": True, "val_probabilities": val_probabilities}
    return {"history": history, "stopped": False, "val_probabilities": val_probabilities}
