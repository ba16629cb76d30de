"""Find, check, decode and load an image-classification data set (no framework import).

Layout: `<root>/train/<class>/*` and `<root>/validation/<class>/*` (`val` and `valid` also work).
A root holding only class folders is split 80/20 per class, by seed. A root holding exactly one
folder (as zips often do) is looked into. Classes are the sorted folder names.

Images are recognised by content, not by extension (five AvP `.jpg` files are PNG). Every mode is
converted to RGB, EXIF orientation applied, and decompression bombs refused. `load_rgb` is the one
decoding function both frameworks use, for training, augmentation previews and prediction; any
failure to decode a file is an ImageError naming it. Work is budgeted: callers say what size they
need (`max_side`), a `PixelBudget` caps a request or a data-set check, and `discover` checks each
file at the smallest scale its format allows.
"""

from __future__ import annotations

import io
import random
import threading
import unicodedata
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

SPLIT_NAMES = {"train": ("train", "training"), "val": ("validation", "val", "valid")}
MAX_PIXELS = 40_000_000  # refuse images declaring more pixels than this (decompression bombs)
MAX_DATASET_PIXELS = 500_000_000  # pixels the images of one data set may declare in all (AvP: 45 million)
REDUCING_GAP = 2  # decode at least 2x the side asked for: pixels stay identical below 4x
CHECK_SIDE = 8  # checking a file needs no detail: decode it as small as its format allows
VALIDATION_FRACTION = 0.2  # used when a data set has no validation folder
IGNORED_NAMES = {"__MACOSX", "Thumbs.db", "desktop.ini"}


class ImageError(ValueError):
    """An image that cannot be used; the message names the file and says why."""


class BudgetError(ImageError):
    """A PixelBudget ran out: the request or data set as a whole is too large, not this one file."""


class PixelBudget:
    """Pixels that one request or one data-set check may decode, shared by its images.

    Images are charged what they declare: decoders walk every declared pixel (libjpeg even when it
    outputs 1/8 of them), so this bounds the CPU and memory a visitor can cause.
    """

    def __init__(self, max_pixels: int, scope: str = "this request"):
        self.max_pixels, self.scope, self.used = max_pixels, scope, 0
        self._lock = threading.Lock()  # load_arrays decodes in threads

    def charge(self, width: int, height: int, name: str) -> None:
        with self._lock:
            self.used += width * height
            if self.used > self.max_pixels:
                raise BudgetError(f"{name}: brings the pixels to decode to {self.used:,}, more than "
                                  f"the {self.max_pixels:,} allowed for {self.scope}")


class DataError(ValueError):
    """A data set that cannot be trained on; `problems` lists every reason."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("; ".join(problems))


@dataclass
class Sample:
    path: Path
    label: int


@dataclass
class DataSet:
    root: Path
    classes: list[str]
    train: list[Sample]
    val: list[Sample]
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # (file relative to root, why)
    notes: list[str] = field(default_factory=list)  # what discovery decided, e.g. a made split

    def counts(self, split: str) -> dict[str, int]:
        counter = Counter(s.label for s in getattr(self, split))
        return {name: counter.get(i, 0) for i, name in enumerate(self.classes)}

    def summary(self) -> str:
        lines = [f"data set {self.root}: {len(self.classes)} classes"]
        for split, label in (("train", "train"), ("val", "validation")):
            counts = ", ".join(f"{c} {n}" for c, n in self.counts(split).items())
            lines.append(f"  {label:<10} {len(getattr(self, split)):>5} images ({counts})")
        lines += [f"  note: {note}" for note in self.notes]
        if self.skipped:
            lines.append(f"  skipped {len(self.skipped)} unreadable file(s):")
            lines += [f"    {path}: {why}" for path, why in self.skipped]
        return "\n".join(lines)


# ---------------------------------------------------------------- decoding

def load_rgb(source, name: str | None = None, max_side: int | None = None,
             budget: PixelBudget | None = None) -> Image.Image:
    """Decode an image file (path, bytes or file object) into an RGB PIL image.

    `max_side`: the caller needs at most this many pixels a side, so larger images may come back
    smaller, though never below REDUCING_GAP x max_side a side (JPEGs decode at 1/2 to 1/8 scale,
    others are box-reduced). `budget` is charged the pixels the image declares.

    Any failure to decode raises ImageError: `name: why`, naming the file (by default its base name,
    never its folder, which is the server's). Pillow's decoders raise far more than OSError on hostile
    or unusual files (KeyError, IndexError, struct.error, ...); each is one bad file, not a crash.
    """
    name = name or display_name(source)
    if isinstance(source, bytes):
        source = io.BytesIO(source)
    if is_empty(source):
        raise ImageError(f"{name}: empty file")
    decoder = "image"
    try:
        with Image.open(source) as image:
            decoder = f"{image.format} decoder"
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise ImageError(f"{name}: declares {width}x{height} pixels, more than the "
                                 f"{MAX_PIXELS:,} allowed (a decompression bomb?)")
            if budget:
                budget.charge(width, height, name)
            if max_side and min(width, height) >= 2 * REDUCING_GAP * max_side:
                image.draft(None, (REDUCING_GAP * max_side,) * 2)  # JPEG only; others ignore it
            image.load()  # Image.open leaves animations (GIF, MPO) at their first frame
            image = reduced(ImageOps.exif_transpose(image), max_side)  # before converting: cheaper
            return reduced(to_rgb(image), max_side)  # modes that could not be reduced before
    except ImageError:
        raise
    except Exception as error:  # noqa: BLE001 - any decoder failure is this file's fault
        raise ImageError(f"{name}: {why_undecodable(error, decoder)}") from None


REDUCIBLE_MODES = {"L", "LA", "RGB", "RGBA", "CMYK", "YCbCr", "I", "F"}  # not palettes, not 1-bit


def reduced(image: Image.Image, max_side: int | None) -> Image.Image:
    """Box-average by a whole factor while each side stays at least REDUCING_GAP x max_side."""
    factor = min(image.size) // (REDUCING_GAP * max_side) if max_side else 1
    if factor >= 2 and image.mode == "1":
        image = image.convert("L")  # 1-bit cannot be reduced; 8-bit gray can, and is a third of RGB
    if factor < 2 or image.mode not in REDUCIBLE_MODES:
        return image
    return image.reduce(factor)


def display_name(source) -> str:
    """The base name of a path or file object: messages reach visitors and must not show server folders."""
    if isinstance(source, bytes):
        return "image"
    return Path(str(getattr(source, "name", source))).name or "image"


def why_undecodable(error: Exception, decoder: str) -> str:
    """Plain words for a decoding failure, without the server paths some errors carry."""
    if isinstance(error, FileNotFoundError):
        return "no such file"
    if isinstance(error, IsADirectoryError):
        return "is a folder, not an image"
    if isinstance(error, UnidentifiedImageError):
        return "not an image, or a format Pillow cannot read"
    if isinstance(error, Image.DecompressionBombError):
        return "too many pixels (a decompression bomb?)"
    if isinstance(error, MemoryError):
        return "too large to decode"
    if isinstance(error, OSError) and error.filename:
        return f"cannot be read ({error.strerror})"
    if isinstance(error, (OSError, SyntaxError, ValueError, EOFError)):  # Pillow's own messages
        return f"damaged or unsupported image ({str(error)[:120]})"
    return f"damaged or unsupported image (the {decoder} failed: {type(error).__name__})"


def is_empty(source) -> bool:
    if isinstance(source, io.BytesIO):
        return not source.getbuffer().nbytes
    if isinstance(source, (str, Path)):
        path = Path(source)
        return path.is_file() and path.stat().st_size == 0
    return False


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode to 8-bit RGB; transparency becomes white, 16-bit keeps its range."""
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        values = np.asarray(image, dtype=np.float64)
        high = values.max() if values.size else 0
        scale = 255 / high if high > 255 else 1  # 16-bit data: fit its range into 8 bits
        image = Image.fromarray(np.clip(values * scale, 0, 255).astype(np.uint8), "L")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return image.convert("RGB")


def load_array(source, size: int, name: str | None = None) -> np.ndarray:
    """Decode and resize to size x size (squashed, as both seed notebooks did): uint8 HxWx3."""
    return to_array(load_rgb(source, name, max_side=size), size)


def to_array(image: Image.Image, size: int) -> np.ndarray:
    """An RGB image squashed to size x size, bilinear: uint8 HxWx3."""
    if image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(image, dtype=np.uint8)


def load_arrays(samples: list[Sample], size: int, workers: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Decode a list of checked samples into (N, size, size, 3) uint8 images and int64 labels."""
    images = np.empty((len(samples), size, size, 3), dtype=np.uint8)

    def fill(i: int) -> None:
        images[i] = load_array(samples[i].path, size)

    with ThreadPoolExecutor(max_workers=workers) as pool:  # Pillow releases the GIL while decoding
        list(pool.map(fill, range(len(samples))))
    return images, np.array([s.label for s in samples], dtype=np.int64)


# ---------------------------------------------------------------- discovery

def visible(path: Path) -> bool:
    return not path.name.startswith(".") and path.name not in IGNORED_NAMES


def subfolders(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_dir() and not p.is_symlink() and visible(p))


def find_split(root: Path, split: str) -> Path | None:
    by_name = {p.name.lower(): p for p in subfolders(root)}
    return next((by_name[n] for n in SPLIT_NAMES[split] if n in by_name), None)


def datasets_in(root: str | Path) -> dict[str, Path]:
    """Name -> folder of each data set in `root`: `root` itself when it is one, else each folder in it
    that is one (a server's `AVP_DATA_DIR`). A cheap look: nothing is decoded."""
    root = Path(root)
    if not root.is_dir():
        return {}
    if is_dataset(root):
        return {root.resolve().name: root}
    return {p.name: p for p in subfolders(root) if is_dataset(p)}


def is_dataset(folder: Path) -> bool:
    """A train split, or at least two class folders (without train splits of their own)."""
    if find_split(folder, "train") is not None:
        return True
    classes = subfolders(folder)
    return len(classes) >= 2 and not any(find_split(c, "train") for c in classes)


def resolve_root(root: Path) -> Path:
    """Look into a single wrapping folder (`avp.zip` -> `avp/train/...`)."""
    while True:
        folders = subfolders(root)
        files = [p for p in root.iterdir() if p.is_file() and visible(p)]
        if len(folders) != 1 or files or find_split(root, "train"):
            return root
        root = folders[0]


def scan_classes(root: Path, folder: Path, skipped: list, budget: PixelBudget) -> dict[str, list[Path]]:
    """Class name -> files that decode; the others go to `skipped`, relative to `root`, with the reason."""
    found = {}
    for class_dir in subfolders(folder):
        files = sorted(p for p in class_dir.rglob("*") if p.is_file() and visible(p)
                       and not any(part.startswith(".") or part in IGNORED_NAMES
                                   for part in p.relative_to(class_dir).parts))
        good = []
        for path in files:
            name = path.relative_to(root).as_posix()  # messages reach visitors: no server folders
            try:
                check_image(path, name, budget)
                good.append(path)
            except BudgetError as error:
                raise DataError([f"{error} (use fewer or smaller images)"]) from None
            except ImageError as error:
                skipped.append((Path(name), str(error).removeprefix(f"{name}: ")))
        found[class_dir.name] = good
    return found


def check_image(path: Path, name: str | None = None, budget: PixelBudget | None = None) -> None:
    """Raise ImageError unless `path` decodes completely (at the smallest scale its format allows)."""
    load_rgb(path, name, max_side=CHECK_SIDE, budget=budget)


def split_stratified(by_class: dict[str, list[Path]], seed: int) -> tuple[dict, dict]:
    train, val = {}, {}
    rng = random.Random(seed)
    for name, paths in by_class.items():
        paths = sorted(paths)
        rng.shuffle(paths)
        n_val = round(len(paths) * VALIDATION_FRACTION) if len(paths) > 1 else 0
        n_val = max(n_val, 1) if len(paths) > 1 else 0
        val[name], train[name] = paths[:n_val], paths[n_val:]
    return train, val


def discover(root: str | Path, seed: int = 42, max_pixels: int = MAX_DATASET_PIXELS) -> DataSet:
    """Find and check a data set; raise DataError listing every reason it cannot be trained on.

    Files that cannot be used are returned in `.skipped` (not warned about: callers show them).
    `max_pixels` bounds the pixels its images may declare in all, which bounds the checking work.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError([f"data folder {root} does not exist (set --data or AVP_DATA_DIR, "
                         "or run `python -m trainer fetch-data`)"])
    root = resolve_root(root)
    skipped, notes = [], []
    budget = PixelBudget(max_pixels, "one data set")
    train_dir, val_dir = find_split(root, "train"), find_split(root, "val")
    if train_dir:
        train = scan_classes(root, train_dir, skipped, budget)
        if val_dir:
            val = scan_classes(root, val_dir, skipped, budget)
        else:
            train, val = split_stratified(train, seed)
            notes.append("no validation folder: 20% of each class was set aside, by seed")
    else:
        if val_dir:
            raise DataError([f"{root} has a validation folder but no train folder"])
        train, val = split_stratified(scan_classes(root, root, skipped, budget), seed)
        notes.append("class folders without train/validation split: 20% of each class "
                     "was set aside for validation, by seed")
    check_classes(root, train, val)
    classes = sorted(train)
    to_samples = lambda by_class: [Sample(p, classes.index(c)) for c in classes for p in by_class[c]]
    return DataSet(root, classes, to_samples(train), to_samples(val), skipped, notes)


def check_classes(root: Path, train: dict, val: dict) -> None:
    problems = []
    if len(train) < 2:
        problems.append(f"{root}: found {len(train)} class folder(s) ({', '.join(train) or 'none'}); "
                        "need at least 2, one folder of images per class")
    if val and set(val) != set(train):
        only_train, only_val = sorted(set(train) - set(val)), sorted(set(val) - set(train))
        problems.append("validation classes differ from training classes"
                        + (f"; only in train: {', '.join(only_train)}" if only_train else "")
                        + (f"; only in validation: {', '.join(only_val)}" if only_val else ""))
    looks: dict[str, str] = {}
    for name in sorted(train):  # "Alien" and "alien", "café" in two Unicode forms: look-alike classes
        first = looks.setdefault(unicodedata.normalize("NFC", name).casefold(), name)
        if first != name:
            problems.append(f"classes '{first}' and '{name}' differ only in letter case or Unicode form: "
                            "rename one, or merge them")
    for split, by_class in (("train", train), ("validation", val)):
        for name, paths in sorted(by_class.items()):
            if not paths:
                problems.append(f"class '{name}' has no decodable image in the {split} split")
    if problems:
        raise DataError(problems)


def limit_samples(samples: list[Sample], limit: int, seed: int) -> list[Sample]:
    """A seeded, class-balanced subset of at most `limit` samples (0 = all)."""
    if not limit or limit >= len(samples):
        return list(samples)
    by_label: dict[int, list[Sample]] = {}
    for sample in samples:
        by_label.setdefault(sample.label, []).append(sample)
    rng = random.Random(seed)
    pools = {label: rng.sample(group, len(group)) for label, group in sorted(by_label.items())}
    chosen = []
    while len(chosen) < limit:  # round robin over classes keeps them balanced
        for pool in pools.values():
            if pool and len(chosen) < limit:
                chosen.append(pool.pop())
    return sorted(chosen, key=lambda s: (s.label, str(s.path)))


@dataclass
class Arrays:
    """A data set decoded into memory once, at one size, shared by both frameworks."""
    classes: list[str]
    x_train: np.ndarray  # (N, size, size, 3) uint8 RGB
    y_train: np.ndarray  # (N,) int64
    x_val: np.ndarray
    y_val: np.ndarray
    val_paths: list[str]


def load_dataset(dataset: DataSet, size: int, limit: int = 0, seed: int = 42) -> Arrays:
    """Decode (a `limit`-ed, class-balanced subset of) each split into memory."""
    train = limit_samples(dataset.train, limit, seed)
    val = limit_samples(dataset.val, limit, seed)
    x_train, y_train = load_arrays(train, size)
    x_val, y_val = load_arrays(val, size)
    return Arrays(dataset.classes, x_train, y_train, x_val, y_val, [str(s.path) for s in val])
