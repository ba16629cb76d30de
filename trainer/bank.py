"""A server-wide bank of frozen-backbone features, so the second student's run skips the backbone.

The frozen backbone's output for an augmented image depends only on the framework and its version,
the backbone's weights, the image size, the precision, the engine that ran it (an eager pass and a
compiled one agree to float32's rounding, not bit for bit), the image, the augmentation settings and
the random draw. The draw for image i in epoch e is a fixed function of (seed, i, e): "view e"
(trainer/augment.py `draw`). So the features of view e of a whole training set are kept under a key
of all of those, and every later run with the same key trains its head on them, without running
the backbone: epoch e of a run with the bank sees exactly what it would see without it.

    bank = FeatureBank.from_env()                 # AVP_CACHE_DIR, AVP_CACHE_MB; None when off
    views = bank.for_run(framework, config, info, arrays)
    views.get("train", 2) or compute, then views.put("train", 2, features)

Entries are `.npz` files written to a temporary name and renamed into place (a reader never sees
half a file), checked on reading (zip CRC, shape, a digest of the array: a corrupt entry is
deleted and computed again, never trained on), and evicted least-recently-used past a size cap.
Concurrent runs writing the same key write the same array; the last rename wins. No framework import.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from trainer.constants import FEATURE_DIM

ROOT = Path(__file__).resolve().parents[1]
VERSION = 1  # of the key's recipe: a change of how features are computed must change it


def digest(*arrays: np.ndarray) -> str:
    """A content hash of arrays (their bytes, shapes and types)."""
    h = hashlib.sha256()
    for array in arrays:
        h.update(f"{array.shape}{array.dtype}".encode())
        h.update(np.ascontiguousarray(array).data)
    return h.hexdigest()


_digests: dict[int, tuple[np.ndarray, str]] = {}


def digest_of(array: np.ndarray) -> str:
    """`digest`, once per array object: a warm worker reuses its decoded images run after run."""
    cached = _digests.get(id(array))
    if cached is not None and cached[0] is array:
        return cached[1]
    if len(_digests) >= 2:  # a run's training and validation images: older ones may go
        _digests.clear()
    _digests[id(array)] = (array, digest(array))
    return _digests[id(array)][1]


class FeatureBank:
    def __init__(self, root: str | Path, max_bytes: int):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes

    @classmethod
    def from_env(cls) -> FeatureBank | None:
        """`AVP_CACHE_DIR` (default ./cache/features; "off" turns the bank off) and `AVP_CACHE_MB`
        (default 2048: the augmented epochs of about 60 full AvP runs' worth of settings)."""
        folder = os.environ.get("AVP_CACHE_DIR", str(ROOT / "cache" / "features"))
        if folder.lower() in ("", "off", "none"):
            return None
        return cls(folder, int(float(os.environ.get("AVP_CACHE_MB", 2048)) * 2**20))

    def path(self, key: str) -> Path:
        return self.root / f"{key}.npz"

    def get(self, key: str, rows: int) -> np.ndarray | None:
        """The features stored under `key`, or None when absent or not intact (then removed)."""
        path = self.path(key)
        try:
            with np.load(path) as stored:
                features, expected = stored["features"], str(stored["digest"])
            if features.shape != (rows, FEATURE_DIM) or digest(features) != expected:
                raise ValueError("entry does not match its key")
        except FileNotFoundError:
            return None
        except Exception:  # noqa: BLE001 - any damage means: not trusted, compute again
            path.unlink(missing_ok=True)
            return None
        with contextlib.suppress(OSError):  # another run's eviction may have removed it meanwhile
            now = time.time_ns()  # the precise clock: file writes are stamped by a coarser one
            os.utime(path, ns=(now, now))  # recently used: evicted last
        return features

    def put(self, key: str, features: np.ndarray) -> None:
        features = np.ascontiguousarray(features, dtype=np.float32)
        handle, temporary = tempfile.mkstemp(suffix=".tmp", dir=self.root)
        try:
            with os.fdopen(handle, "wb") as sink:
                np.savez(sink, features=features, digest=np.array(digest(features)))
            os.replace(temporary, self.path(key))
        except OSError:  # a full disk: the run goes on without storing
            Path(temporary).unlink(missing_ok=True)
            return
        self.evict()

    def evict(self) -> None:
        """Remove the least recently used entries while the bank is over its size cap."""
        for leftover in self.root.glob("*.tmp"):  # writes cut off by a killed run
            with contextlib.suppress(OSError):
                if time.time() - leftover.stat().st_mtime > 3600:
                    leftover.unlink()
        entries = []
        for path in self.root.glob("*.npz"):
            try:
                stat = path.stat()
                entries.append((stat.st_mtime, stat.st_size, path))
            except OSError:
                continue
        total = sum(size for _, size, _ in entries)
        for _, size, path in sorted(entries):
            if total <= self.max_bytes:
                break
            path.unlink(missing_ok=True)
            total -= size

    def for_run(self, framework: str, config, info: dict, arrays) -> RunViews:
        return RunViews(self, framework, config, info, arrays)


def augment_key(augment) -> dict:
    """The augmentation settings as the key holds them: numbers as floats, so a slider's 10 and the
    defaults' 10.0 (the same augmentation) find the same entries."""
    return {name: float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value
            for name, value in augment.to_dict().items()}


class RunViews:
    """One run's keys: view e of the training set, and the validation set."""

    def __init__(self, bank: FeatureBank, framework: str, config, info: dict, arrays):
        self.bank = bank
        augment = config.augment_active
        self.base = {"version": VERSION, "framework": framework, "library": info.get("library"),
                     "weights": info.get("weights_id"), "precision": info.get("precision"),
                     "engine": info.get("engine"), "image_size": config.image_size}
        self.train_part = {"data": digest_of(arrays.x_train), "seed": config.seed if augment else None,
                           "augment": augment_key(config.augment) if augment else None}
        self.val_part = {"data": digest_of(arrays.x_val)}
        self.rows = {"train": len(arrays.x_train), "val": len(arrays.x_val)}
        self.from_bank = {"train": 0, "val": 0}

    def key(self, split: str, view: int) -> str:
        parts = {**self.base, **(self.train_part if split == "train" else self.val_part), "view": view}
        return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:40]

    def get(self, split: str, view: int = 0) -> np.ndarray | None:
        found = self.bank.get(self.key(split, view), self.rows[split])
        self.from_bank[split] += found is not None
        return found

    def put(self, split: str, view: int, features: np.ndarray) -> None:
        self.bank.put(self.key(split, view), features)
