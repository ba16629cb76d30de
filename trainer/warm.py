"""The warm-up before a lesson: the reference models trained at the class's settings, and the feature
bank filled for them, so that the first student's run at those settings takes its frozen-backbone
features from the bank (seconds, not minutes).

    config, random_init = warm.prepare(config)    # WeightsUnavailable unless random init is allowed
    outcome = warm.warm(config, on_event, should_stop, bank)   # trains, fills the bank, installs

`python -m trainer warm` (trainer/cli.py) runs `warm`; the Teacher tab's Warm-up (ui/warmup.py) runs
the same settings through the app's queue and installs the run's models with `install`. Both
frameworks are trained, whatever framework the class defaults name: the bank keys features per
framework, and Predict shows both reference models. The models are written to a staging folder
beside their place and swapped in only when both are complete, so a warm-up that fails or is
stopped halfway leaves the previous reference models as they were. No framework import.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

from trainer import data, loop, store, weights
from trainer.bank import FeatureBank
from trainer.config import TrainConfig

RANDOM_INIT_NOTE = ("the reference models are randomly initialised (no ImageNet weights here): they learn far "
                    "less from so few images than ImageNet-initialised ones")
STAGING_PREFIX = ".warming-"
LEFTOVER_S = 3600  # a staging folder this old belongs to a warm-up that was killed


def random_init_frameworks(config: TrainConfig) -> list[str]:
    """The frameworks whose backbone would start from random weights with these settings."""
    if config.weights == "none":
        return list(config.frameworks)
    if config.weights == "imagenet":
        return [fw for fw in config.frameworks if weights.status(fw) == "unavailable"]
    return []


def prepare(config: TrainConfig) -> tuple[TrainConfig, list[str]]:
    """The settings a warm-up trains with (both frameworks; `weights` none where no framework can have
    ImageNet weights, so no download is tried) and the frameworks that start from random weights.
    WeightsUnavailable, saying what to do, when that would happen without `allow_random_init`."""
    config = config.with_changes(framework="both").validate()
    random_init = random_init_frameworks(config)
    if random_init and not config.allow_random_init:
        if config.weights == "none":
            raise weights.WeightsUnavailable(
                "weights none trains the reference models from random initialisation: allow it explicitly "
                "(--allow-random-init, or the tick on the Teacher tab)")
        raise weights.WeightsUnavailable(
            weights.unavailable_message(random_init[0]) + " A warm-up trains from random initialisation "
            "only when that is allowed explicitly (--allow-random-init, or the tick on the Teacher tab).")
    if random_init and config.weights == "imagenet" and len(random_init) == len(config.frameworks):
        config = config.with_changes(weights="none")
    return config, random_init


def backbone_passes(config: TrainConfig, train_images: int, val_images: int) -> int:
    """Images through a backbone in a warm-up (both frameworks), the work its time grows with."""
    if config.limit:
        train_images, val_images = min(train_images, config.limit), min(val_images, config.limit)
    frozen = config.unfreeze == 0
    passes = config.epochs if (config.augment_active or not frozen) else 1
    return len(config.frameworks) * (passes * train_images + (1 if frozen else config.epochs) * val_images)


def image_counts(config: TrainConfig) -> tuple[int, int]:
    """(training, validation) images of the warm-up's data set (listed, nothing decoded)."""
    dataset = data.discover(config.data_dir, config.seed)
    return len(dataset.train), len(dataset.val)


def warm(config: TrainConfig, on_event=loop.ignore, should_stop=loop.never, bank: FeatureBank | None = None) -> dict:
    """Prepare, train both frameworks into a staging folder beside `config.out_dir`'s models (the
    bank filled on the way), and install them there when both are complete. Returns {"results":
    framework -> summary (trainer/runner.py), "installed": framework -> folder (empty when the run was
    stopped, time was up or a framework failed), "random_init": frameworks from random weights}."""
    from trainer import runner
    config, random_init = prepare(config)
    if random_init:
        on_event({"type": "warning", "message": RANDOM_INIT_NOTE})
    out = Path(config.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    remove_leftovers(out)
    staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=out))
    try:
        results = runner.train(config.with_changes(out_dir=str(staging)), on_event, should_stop, bank)
        installed = {}
        if complete(results, config):
            installed = install({fw: staging / fw for fw in config.frameworks}, out)
            for framework, folder in installed.items():
                results[framework]["saved_to"] = str(folder)
        return {"results": results, "installed": installed, "random_init": random_init}
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def complete(results: dict, config: TrainConfig) -> bool:
    """Every framework trained all its epochs (not stopped, not cut off by the server's time cap)."""
    return all(fw in results and not results[fw]["stopped"] and not results[fw].get("time_up")
               and len(results[fw]["history"]) == config.epochs for fw in config.frameworks)


def install(staged: dict[str, Path], models: str | Path) -> dict[str, Path]:
    """Make trained models (framework -> saved model folder) the reference models in `models`, all at
    once (trainer/store.py `install`); their metadata names `models` as where they live and says they
    came from a warm-up."""
    for folder in staged.values():
        metadata_file = Path(folder) / store.METADATA
        metadata = json.loads(metadata_file.read_text())
        metadata["config"]["out_dir"] = str(models)
        metadata["warm_up"] = True
        temporary = metadata_file.with_suffix(".tmp")
        temporary.write_text(json.dumps(metadata, indent=2, default=str))
        temporary.replace(metadata_file)
    return store.install(staged, models)


def remove_leftovers(models: Path) -> None:
    """Staging folders of warm-ups killed long ago (a running one's folder is younger)."""
    for folder in models.glob(STAGING_PREFIX + "*"):
        try:
            if time.time() - folder.stat().st_mtime > LEFTOVER_S:
                shutil.rmtree(folder, ignore_errors=True)
        except OSError:
            continue
