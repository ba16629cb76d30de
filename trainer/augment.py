"""Augmentation settings, once, for both frameworks (no framework import).

The seed notebooks used Keras' ImageDataGenerator(shear_range=10, zoom_range=0.2,
horizontal_flip=True) and torchvision's RandomAffine(0, shear=10, scale=(0.8, 1.2)) with a
horizontal flip. Each backend turns an `AugmentConfig` into its own pipeline:
`keras_backend.build_augmenter` (trainer/keras_affine.py's RandomAffine layer) and
`torch_backend.build_augmenter` (torchvision.transforms.v2 RandomAffine). The units here are the
ones torchvision takes and people think in: degrees, zoom as a magnification, shift as a fraction
of the side.
"""

from __future__ import annotations

import math
from dataclasses import MISSING, asdict, dataclass, field, fields

import numpy as np

NUMBERS = ("shear_deg", "zoom_min", "zoom_max", "rotation_deg", "shift")


def setting(default=MISSING, help: str = "", **options):
    """A settings field with its help text, which the command line's --help and the page read."""
    return field(default=default, metadata={"help": help}, **options)


@dataclass(frozen=True)
class AugmentConfig:
    enabled: bool = setting(True, "augmentation of the training images")
    shear_deg: float = setting(10.0, "max shear angle, degrees, either direction")
    zoom_min: float = setting(0.8, "smallest magnification (<1 shows more of the scene)")
    zoom_max: float = setting(1.2, "largest magnification (>1 zooms in)")
    rotation_deg: float = setting(0.0, "max rotation, degrees, either direction")
    shift: float = setting(0.0, "max shift, fraction of the side, either direction")
    hflip: bool = setting(True, "random horizontal flip")
    vflip: bool = setting(False, "random vertical flip")

    def validate(self) -> list[str]:
        """Return the problems with these settings as sentences; empty when they are fine."""
        problems = [f"{name} must be a number, got {getattr(self, name)!r}"[:200] for name in NUMBERS
                    if not isinstance(getattr(self, name), (int, float)) or isinstance(getattr(self, name), bool)
                    or not math.isfinite(getattr(self, name))]
        problems += [f"{name} must be true or false, got {getattr(self, name)!r}"[:200]
                     for name in ("enabled", "hflip", "vflip") if not isinstance(getattr(self, name), bool)]
        if problems:
            return problems
        if not 0 <= self.shear_deg < 45:
            problems.append(f"shear must be between 0 and 45 degrees, got {self.shear_deg}")
        if not 0.25 <= self.zoom_min <= self.zoom_max <= 4:
            problems.append(
                f"zoom must satisfy 0.25 <= min <= max <= 4, got {self.zoom_min}..{self.zoom_max}")
        if not 0 <= self.rotation_deg <= 180:
            problems.append(f"rotation must be between 0 and 180 degrees, got {self.rotation_deg}")
        if not 0 <= self.shift < 0.5:
            problems.append(f"shift must be a fraction between 0 and 0.5, got {self.shift}")
        return problems

    @property
    def is_identity(self) -> bool:
        """True when the pipeline would leave every image as it is."""
        return not self.enabled or (
            self.shear_deg == 0 and self.zoom_min == self.zoom_max == 1 and self.rotation_deg == 0
            and self.shift == 0 and not self.hflip and not self.vflip)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> AugmentConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown augmentation settings: {', '.join(sorted(unknown))}")
        return cls(**values)


HELP = {f.name: f.metadata["help"] for f in fields(AugmentConfig)}  # by field name


def draw(aug: AugmentConfig, seed: int, view: int, indices, width: int, height: int) -> dict:
    """The random values of view `view` of each image in `indices`, in torchvision's parameterisation.

    A fixed function of (seed, image index, view): view e of image i is the same whatever the batch
    order, the batch size or the framework, so its backbone features can be kept and reused by any
    later run with the same settings (trainer/bank.py). Epoch e trains on view e.
    Returns arrays: hflip, vflip (bool), rotation_deg, zoom, shear_deg (float), shift_px (N, 2).
    """
    u = np.array([np.random.default_rng([seed, view, int(i)]).random(7) for i in indices]).reshape(-1, 7)
    between = lambda column, low, high: low + u[:, column] * (high - low)
    shift = np.stack([np.round(between(5, -1, 1) * aug.shift * width),
                      np.round(between(6, -1, 1) * aug.shift * height)], axis=1)
    return {"hflip": (u[:, 0] < 0.5) & aug.hflip, "vflip": (u[:, 1] < 0.5) & aug.vflip,
            "rotation_deg": between(2, -aug.rotation_deg, aug.rotation_deg),
            "zoom": between(3, aug.zoom_min, aug.zoom_max), "shear_deg": between(4, -aug.shear_deg, aug.shear_deg),
            "shift_px": shift}


def describe(drawn: dict, i: int, aug: AugmentConfig) -> dict:
    """The values image `i` drew (from `draw`), rounded for people; only those of enabled settings."""
    values = {"hflip": bool(drawn["hflip"][i]) if aug.hflip else None,
              "vflip": bool(drawn["vflip"][i]) if aug.vflip else None,
              "rotation_deg": round(float(drawn["rotation_deg"][i]), 1) if aug.rotation_deg else None,
              "shift_px": [int(v) for v in drawn["shift_px"][i]] if aug.shift else None,
              "zoom": round(float(drawn["zoom"][i]), 3), "shear_deg": round(float(drawn["shear_deg"][i]), 1)}
    return {key: value for key, value in values.items() if value is not None}
