"""What a run costs before it starts, and the server's cap on one run.

    units = cost_units(config, train_images=694, val_images=200)   # work, in "image units"
    seconds = estimate_s(units, unit_s)                             # on this server
    cap_s = max_run_s()                                             # AVP_MAX_RUN_MINUTES

One image unit is one image of 224 x 224 through one framework's frozen ResNet-50 for one epoch at
batch size 32. A run's units grow with its images, epochs (for a frozen backbone only epochs that
see a new augmented view run the backbone; the others train the head on kept features), pixels,
frameworks and unfrozen stages (their backward pass), and with small batches (each step has a fixed
cost). The seconds per unit on this server are calibrated by the queue from the runs that finished
lately (classroom/jobs.py); before any has, a default for a CPU or a GPU. No framework import.
"""

from __future__ import annotations

import math
import os

from trainer.config import TrainConfig, machine_has_nvidia_gpu

# Seconds per image unit before any run has finished here: ~35 images/s per framework on this
# project's 2-core development machine, ~1,000 on one data-centre GPU (README, Speed).
DEFAULT_UNIT_S = {"cpu": 0.03, "gpu": 0.002}
DEFAULT_MAX_MINUTES = {"cpu": 20.0, "gpu": 10.0}
START_UP_S = 10.0  # a worker's start-up: imports (a cold worker), the first batch
DECODE_UNITS = 0.2  # decoding and resizing one image, once per run, in image units
STEP_UNITS = 0.1  # the fixed cost of one optimiser step (a batch), in image units
# Share of ResNet-50's forward work in each stage, last stage first (its backward costs ~2x that).
STAGE_SHARES = (0.2, 0.36, 0.25, 0.17)


def device_kind() -> str:
    return "gpu" if machine_has_nvidia_gpu() else "cpu"


def max_run_s() -> float:
    """`AVP_MAX_RUN_MINUTES` in seconds: the most one run may train (default 20 on a CPU, where the
    Train tab's defaults take ~3 minutes cold, 10 on a GPU)."""
    minutes = os.environ.get("AVP_MAX_RUN_MINUTES")
    return 60 * (float(minutes) if minutes else DEFAULT_MAX_MINUTES[device_kind()])


def cost_units(config: TrainConfig, train_images: int, val_images: int) -> float:
    """A run's work in image units (see the module's docstring)."""
    if config.limit:
        train_images, val_images = min(train_images, config.limit), min(val_images, config.limit)
    pixels = (config.image_size / 224) ** 2
    frozen = config.unfreeze == 0
    passes = config.epochs if (config.augment_active or not frozen) else 1  # backbone passes over train
    backward = 1 + 2 * sum(STAGE_SHARES[:config.unfreeze])
    steps = config.epochs * math.ceil(max(1, train_images) / config.batch_size)
    val_passes = 1 if frozen else config.epochs
    per_framework = (passes * train_images * pixels * backward + val_passes * val_images * pixels
                     + steps * STEP_UNITS + (train_images + val_images) * DECODE_UNITS * pixels)
    return per_framework * len(config.frameworks)


def estimate_s(units: float, unit_s: float) -> float:
    return START_UP_S + units * unit_s


def minutes_text(seconds: float) -> str:
    """"about 4 minutes", "under a minute"."""
    if seconds < 60:
        return "under a minute"
    minutes = round(seconds / 60)
    return f"about {minutes} minute{'s' if minutes != 1 else ''}"


def describe(config: TrainConfig, train_images: int) -> str:
    """The settings a run's cost depends on, in words."""
    names = " and ".join(config.frameworks)
    stages = f", {config.unfreeze} stage(s) unfrozen" if config.unfreeze else ""
    return (f"{train_images} images x {config.epochs} epochs at {config.image_size} px, {names}, "
            f"batch {config.batch_size}{stages}")


def over_cap_message(config: TrainConfig, train_images: int, seconds: float, cap_s: float) -> str:
    return (f"this run would take {minutes_text(seconds)} on this server ({describe(config, train_images)}), "
            f"more than the {cap_s / 60:.0f} minutes one run may take here: fewer epochs, a smaller image "
            "size, a larger batch, the feature cache or a limit on images make it shorter")
