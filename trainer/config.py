"""One settings object for a training run, validated, saved as JSON beside every model.

Filled from the command line (trainer/cli.py) or from the app's widgets; `load` in each backend
rebuilds the model from the copy saved in metadata.json. No framework import here.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from trainer import frameworks
from trainer.augment import AugmentConfig, setting
from trainer.constants import MAX_IMAGE_SIZE, MIN_IMAGE_SIZE

WEIGHT_CHOICES = ("imagenet", "none")  # or a path to a weights file
DEVICE_CHOICES = ("auto", "cpu", "gpu")
PRECISION_CHOICES = ("auto", "float32", "bfloat16")
ENGINE_CHOICES = ("auto", "eager", "compiled", "onnxruntime")  # AVP_BACKBONE_ENGINE: how a frozen backbone runs


def cpu_has_bfloat16() -> bool:
    """True on CPUs with native bfloat16 (AMX or AVX-512 BF16), where it is faster than float32
    (the README's Speed section has the figures)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def machine_has_nvidia_gpu() -> bool:
    """True when the machine has an NVIDIA GPU and driver, whether or not a framework can use it."""
    return Path("/proc/driver/nvidia/version").exists() or shutil.which("nvidia-smi") is not None


def use_bfloat16(precision: str, on_gpu: bool) -> bool:
    """Mixed precision for the backbone: always on GPUs, on CPUs only where it is native."""
    return precision == "bfloat16" or (precision == "auto" and (on_gpu or cpu_has_bfloat16()))


def server_precision() -> str:
    """The precision a server's runs take (`AVP_PRECISION`: auto, the default, bfloat16 or float32):
    visitors do not choose it; float32 on a machine with native bfloat16 runs the CPU-basic Space's path."""
    return os.environ.get("AVP_PRECISION", "auto").strip().lower() or "auto"


def backbone_engine(offered: tuple[str, ...], prefers: tuple[str, ...], on_gpu: bool, frozen: bool) -> str:
    """What computes a frozen backbone in training: "eager" (the framework's own pass), "compiled"
    (torch.compile with frozen weights, XLA) or "onnxruntime" (PyTorch's backbone exported to ONNX).
    `offered`: the engines the framework can run here; `prefers`: those auto picks from, best first
    (each backend's: a fixed order where one engine is measured best everywhere, else the engine its
    warm worker's `race` timed faster for these settings). `AVP_BACKBONE_ENGINE` eager, compiled,
    onnxruntime or auto (the default): on auto, a CPU takes the first preferred engine offered;
    GPUs keep the eager path. An engine asked for but not offered, and unfrozen stages (they
    change), run eagerly."""
    choice = os.environ.get("AVP_BACKBONE_ENGINE", "auto").strip().lower() or "auto"
    if choice not in ENGINE_CHOICES:
        raise ValueError(f"AVP_BACKBONE_ENGINE must be one of {', '.join(ENGINE_CHOICES)}, got {choice!r}")
    if not frozen or choice == "eager":
        return "eager"
    if choice != "auto":
        return choice if choice in offered else "eager"
    if on_gpu:
        return "eager"
    return next((engine for engine in prefers if engine in offered), "eager")


RACE_MARGIN = 1.05  # another engine must be this much faster: a tie keeps the framework's own pass


def race_key(config: TrainConfig, bfloat16: bool) -> tuple:
    """The settings a race's result holds for: the backbone's input shape and precision."""
    return config.image_size, config.batch_size, bfloat16


def prepare_engine(engine: str, could: str, key: tuple, raced: dict[tuple, str],
                   backbone_in: Callable[[str], Callable[[Any], object]], x: Any) -> str:
    """A backend's `prepare` once it knows its model's `engine` and the compiler auto `could` take
    (`backbone_engine` offered the backend's raced engines): where the model runs its framework's own
    pass but could take the compiler, and these settings (`key`) were not timed yet, time both on the
    batch `x` (`race`; `backbone_in(engine)`: the backbone in that engine) and keep the faster in
    `raced`; else make the model's engine ready with one call. The engine runs with `key` take."""
    if could != "eager" and engine == "eager" and key not in raced:
        raced[key] = race({name: functools.partial(backbone_in(name), x) for name in ("eager", could)})
        return raced[key]
    if engine != "eager":
        backbone_in(engine)(x)
    return engine


def race(calls: dict[str, Callable[[], object]]) -> str:
    """The engine to take of `calls` (engine -> one call of the backbone on a batch, "eager" among
    them): each timed by `fastest_calls`; another engine wins only when RACE_MARGIN faster than eager."""
    seconds = fastest_calls(calls)
    best = min(seconds, key=seconds.get)
    return best if seconds["eager"] > RACE_MARGIN * seconds[best] else "eager"


def fastest_calls(calls: dict[str, Callable[[], object]], turns: int = 2) -> dict[str, float]:
    """Engine -> its fastest call of `turns`, taken in turns after a first call each (tracing,
    compiling), so that the machine's drift hits all alike."""
    for call in calls.values():
        call()
    fastest = dict.fromkeys(calls, float("inf"))
    for _ in range(turns):
        for engine, call in calls.items():
            started = time.perf_counter()
            call()
            fastest[engine] = min(fastest[engine], time.perf_counter() - started)
    return fastest


def default_data_dir() -> str:
    """`$AVP_DATA_DIR`, else ./data."""
    return os.environ.get("AVP_DATA_DIR") or "data"


@dataclass(frozen=True)
class TrainConfig:
    framework: str = setting("both", "keras, pytorch, or both (one after the other)")
    data_dir: str = setting(help="data folder: train/<class>/*, validation/<class>/* (or class folders only)",
                            default_factory=default_data_dir)
    out_dir: str = setting("models", "models folder: <out>/keras and <out>/pytorch are (re)written")
    epochs: int = setting(3, "passes over the training images")
    batch_size: int = setting(32, "images per optimisation step")
    lr: float = setting(1e-3, "Adam learning rate of the new head")
    image_size: int = setting(224, "images are squashed to this many pixels a side (224 = ImageNet's)")
    head_units: int = setting(128, "units of the new hidden dense layer")
    augment: AugmentConfig = field(default_factory=AugmentConfig)  # its fields have their own help
    feature_cache: bool = setting(False, "fast mode: backbone features computed once, then only the head "
                                         "trains (no augmentation: every epoch sees the same images)")
    unfreeze: int = setting(0, "also train the last N of the 4 ResNet stages, at the fine-tune learning rate")
    fine_tune_lr: float = setting(1e-5, "learning rate of unfrozen backbone stages")
    weights: str = setting("imagenet", "imagenet (download once, or pre-seeded cache), none (random init), "
                                       "or a file")
    allow_random_init: bool = setting(False, "if ImageNet weights cannot be had, train from random init "
                                             "instead of failing")
    limit: int = setting(0, "use at most N images per split (seeded, class-balanced); 0 = all")
    seed: int = setting(42, "random seed for splits, subsets, initialisation, shuffling and augmentation")
    device: str = setting("auto", "auto (GPU when present), cpu or gpu")
    precision: str = setting("auto", "auto: bfloat16 mixed precision on GPUs and on CPUs with native "
                                     "bfloat16, float32 elsewhere")

    @property
    def frameworks(self) -> tuple[str, ...]:
        """In training order (trainer/frameworks.py ORDER: PyTorch first)."""
        return frameworks.ORDER if self.framework == "both" else (self.framework,)

    @property
    def augment_active(self) -> bool:
        return not self.feature_cache and not self.augment.is_identity

    def validate(self) -> TrainConfig:
        """Raise ValueError listing every problem; return self so calls can chain."""
        problems = list(self.augment.validate())
        if self.framework not in (*frameworks.NAMES, "both"):
            problems.append(f"framework must be keras, pytorch or both, got {self.framework!r}")
        for name, low, high in (("epochs", 1, 1000), ("batch_size", 1, 1024),
                                ("image_size", MIN_IMAGE_SIZE, MAX_IMAGE_SIZE),
                                ("head_units", 1, 8192), ("unfreeze", 0, 4), ("limit", 0, 10**7),
                                ("seed", 0, 2**32 - 1)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                problems.append(f"{name} must be a whole number from {low} to {high}, got {value!r}")
        for name in ("lr", "fine_tune_lr"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0 < value < 1:
                problems.append(f"{name} must be a number between 0 and 1, got {value!r}")
        for name in ("framework", "weights", "device", "precision", "data_dir", "out_dir"):
            if not isinstance(getattr(self, name), str):
                problems.append(f"{name} must be text, got {getattr(self, name)!r}"[:200])
        for name in ("feature_cache", "allow_random_init"):
            if not isinstance(getattr(self, name), bool):
                problems.append(f"{name} must be true or false, got {getattr(self, name)!r}"[:200])
        if problems:
            raise ValueError("invalid training settings: " + "; ".join(problems))
        if self.weights not in WEIGHT_CHOICES and not Path(self.weights).is_file():
            problems.append(
                f"weights must be imagenet, none or an existing file, got {self.weights!r}")
        if self.device not in DEVICE_CHOICES:
            problems.append(f"device must be one of {', '.join(DEVICE_CHOICES)}, got {self.device!r}")
        if self.precision not in PRECISION_CHOICES:
            problems.append(f"precision must be one of {', '.join(PRECISION_CHOICES)}, got {self.precision!r}")
        if self.feature_cache and self.unfreeze:
            problems.append("feature_cache needs a frozen backbone: set unfreeze to 0")
        if problems:
            raise ValueError("invalid training settings: " + "; ".join(problems))
        return self

    def with_changes(self, **changes) -> TrainConfig:
        return replace(self, **changes)

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        values = dict(values)
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown training settings: {', '.join(sorted(unknown))}")
        if isinstance(values.get("augment"), dict):
            values["augment"] = AugmentConfig.from_dict(values["augment"])
        elif "augment" in values and not isinstance(values["augment"], AugmentConfig):
            raise ValueError("augment must be an object of augmentation settings by name")
        for f in fields(cls):  # sliders and JSON give 3.0 for 3: accept whole numbers as int fields
            value = values.get(f.name)
            if f.type == "int" and isinstance(value, float) and value.is_integer():
                values[f.name] = int(value)
        return cls(**values)

    @classmethod
    def from_json(cls, text: str) -> TrainConfig:
        return cls.from_dict(json.loads(text))


HELP = {f.name: f.metadata["help"] for f in fields(TrainConfig) if "help" in f.metadata}  # by field name
