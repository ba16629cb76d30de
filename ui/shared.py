"""What the app's visitors share, and the one way to reach what is theirs.

Shared: the Space's reference models (`AVP_MODELS_DIR`, written by the owner with the CLI, or by
the teacher's warm-up, ui/warmup.py, the one way the app writes them), the server's data sets
(`AVP_DATA_DIR`), the training queue, and loaded models.
Per visitor: a workspace (classroom/workspace.py) found from the id kept in their browser; every
handler that touches a visitor's data, runs or models goes through `workspace(id)`.
"""

from __future__ import annotations

import ctypes
import functools
import json
import os
import threading
import time
import traceback
from collections import OrderedDict
from pathlib import Path

from classroom.workspace import Workspace, Workspaces, walk
from trainer import data, public
from trainer.config import default_data_dir

ROOT = Path(__file__).resolve().parents[1]
MODELS_DIR = Path(os.environ.get("AVP_MODELS_DIR", ROOT / "models")).resolve()
WORKSPACES_DIR = Path(os.environ.get("AVP_WORKSPACES_DIR", ROOT / "workspaces")).resolve()
ASSETS = ROOT / "assets"
PREVIEW_SIZE = 224
MAX_UPLOAD = os.environ.get("AVP_MAX_UPLOAD", "200mb")  # larger uploads are answered 413
LOADED_MODEL_SETS = int(os.environ.get("AVP_LOADED_MODEL_SETS", 3))  # models folders kept in memory
SWEEP_EVERY_S = 600


class NoWorkspace(ValueError):
    """An id that names no workspace (malformed, unknown or expired)."""


@functools.cache
def workspaces() -> Workspaces:
    return Workspaces(WORKSPACES_DIR)


@functools.cache
def jobs():
    from classroom.jobs import Jobs
    return Jobs(workspaces(), WORKSPACES_DIR / ".keep-queue")


CLASS_DIR = ".keep-class"  # the teacher's class: defaults and caps, the board's student numbers


def class_settings():
    """The class's defaults and caps (classroom/teacher.py; read from disk at each call)."""
    from classroom.teacher import ClassSettings
    return ClassSettings(WORKSPACES_DIR / CLASS_DIR)


def roster():
    """The board's student numbers: one Roster (and its lock) per workspaces folder."""
    return _roster_at(WORKSPACES_DIR / CLASS_DIR)


@functools.cache
def _roster_at(folder: Path):
    from classroom.teacher import Roster
    return Roster(folder)


def workspace(workspace_id: object) -> Workspace:
    """The visitor's workspace; NoWorkspace when the id names none (the page then makes a new one)."""
    space = workspaces().open(workspace_id)
    if space is None:
        raise NoWorkspace("unknown or expired workspace: reload the page (API: call /workspace first)")
    return space


def start_background_work() -> threading.Event:
    """The scheduler (starts waiting runs each second) and the sweep (expired workspaces, now and
    every 10 minutes), in one thread of the app process. Set the returned event to end it."""
    stop = threading.Event()

    def loop():
        last_sweep = 0.0
        while not stop.wait(1.0):
            try:
                if time.monotonic() - last_sweep > SWEEP_EVERY_S or not last_sweep:
                    last_sweep = time.monotonic()
                    workspaces().sweep(in_use=jobs().in_use)
                jobs().schedule()
            except Exception:  # noqa: BLE001 - the one scheduler must outlive any one failure
                traceback.print_exc()
    threading.Thread(target=loop, name="avp-scheduler", daemon=True).start()
    return stop


# ---------------------------------------------------------------- models in memory

_predictors: OrderedDict[Path, object] = OrderedDict()
_predictors_lock = threading.Lock()


def predictor(models_dir: Path | None = None):
    """The Predictor of a models folder (the reference models by default), kept in memory for the
    `LOADED_MODEL_SETS` folders used most recently: thirty visitors' models cannot all stay loaded."""
    from trainer.predictor import Predictor
    folder = Path(models_dir or MODELS_DIR)
    with _predictors_lock:
        if folder not in _predictors:
            _predictors[folder] = Predictor(folder)
        _predictors.move_to_end(folder)
        while len(_predictors) > LOADED_MODEL_SETS:
            _predictors.popitem(last=False)
        return _predictors[folder]


def forget_predictor(models_dir: Path | None = None) -> None:
    """Drop a models folder's loaded models (the reference ones by default): the next prediction
    loads what is on disk now (after a warm-up installed new reference models)."""
    with _predictors_lock:
        _predictors.pop(Path(models_dir or MODELS_DIR), None)


# ---------------------------------------------------------------- data sets

def server_datasets() -> dict[str, Path]:
    """Name -> folder of each data set on the server: `AVP_DATA_DIR` itself when it is one, else
    each folder in it that is one (trainer/data.py `datasets_in`). Visitors choose them by name."""
    return data.datasets_in(default_data_dir())


def is_dataset(folder: Path) -> bool:
    """Cheap look (nothing decoded): a train split, or at least two class folders."""
    return data.is_dataset(folder)


def dataset_choices(space: Workspace | None) -> list[tuple[str, str]]:
    """(label, value) of every data set a visitor may train on: the server's, then their uploads."""
    choices = [(f"{name} (on the server)", f"server/{name}") for name in server_datasets()]
    if space is not None:
        choices += [(f"{name} (your upload)", f"upload/{name}") for name in space.upload_names()]
    return choices


def dataset_path(value: object, space: Workspace) -> Path:
    """The folder of a data set named as in `dataset_choices`; ValueError naming the choices."""
    kind, _, name = str(value).partition("/")
    found = server_datasets().get(name) if kind == "server" else (
        space.upload_path(name) if kind == "upload" else None)
    if found is None:
        names = ", ".join(v for _, v in dataset_choices(space)) or "none yet: upload a .zip"
        raise ValueError(f"unknown data set {str(value)[:80]!r}; choose one of: {names}")
    return found


COUNTS = ".counts.json"  # an upload's image counts, written when it was checked (hidden from discovery)


def record_counts(folder: Path, dataset: data.DataSet) -> None:
    """Keep a checked data set's image counts beside it, for cost estimates that decode nothing."""
    (Path(folder) / COUNTS).write_text(json.dumps({"train": len(dataset.train), "val": len(dataset.val)}))


def image_counts(folder: str | Path) -> tuple[int, int]:
    """(training, validation) images of a data set: as recorded when it was checked, else counted by
    listing its files once (a server's data set; nothing decoded), 80/20 without a validation split."""
    folder = Path(folder)
    try:
        counts = json.loads((folder / COUNTS).read_text())
        return int(counts["train"]), int(counts["val"])
    except (OSError, ValueError, KeyError, TypeError):
        return _listed_counts(str(folder))


@functools.lru_cache(maxsize=64)
def _listed_counts(folder: str) -> tuple[int, int]:
    root = data.resolve_root(Path(folder))
    train, val = data.find_split(root, "train"), data.find_split(root, "val")
    files = lambda split: sum(1 for _, entry in walk(split) if entry.is_file() and data.visible(Path(entry.path)))  # noqa: E731
    if train is not None and val is not None:
        return files(train), files(val)
    total = files(root if train is None else train)  # one split: 80/20, as data.discover splits it
    return total - total // 5, total // 5


def example_images(per_class: int = 2) -> list[str]:
    """A few validation images of the first server data set, else the project's own test card.

    Quick on purpose (it runs while the page is built): files are listed, not decoded; a broken
    one says so when it is clicked.
    """
    picks = []
    for folder in list(server_datasets().values())[:1]:
        root = data.resolve_root(folder)
        split = data.find_split(root, "val") or data.find_split(root, "train") or root
        for class_dir in data.subfolders(split):
            files = sorted(p for p in class_dir.iterdir() if p.is_file() and data.visible(p))
            picks += [str(p) for p in files[:per_class]]
    return picks or [str(ASSETS / "test_card.png")]


def public_error(error: BaseException) -> str:
    """An error message fit for a page: no server folders (trainer/public.py), the workspaces' included."""
    return public.text(str(error).replace(str(WORKSPACES_DIR), "…"))


def release_memory() -> None:
    """Give the heap that a request freed back to the system. glibc keeps freed memory in each
    thread's arena, so large decodes on gradio's worker threads stayed in the app's memory after
    the requests ended (48 images of 40 megapixels through /predict left 1.27 GB behind); trimmed,
    8 threads that each decoded six 39-megapixel images went from 451 MB back to 39 MB here."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to trim
        pass
