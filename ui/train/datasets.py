"""Train tab: data sets and uploads: check one, unpack an uploaded .zip into the visitor's
workspace, delete it, download the AvP images for the server; and whether ImageNet weights can be had.
"""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from classroom.people import OverBudget, person_of
from classroom.workspace import BLOCK, INCOMING, QuotaExceeded, Workspace
from trainer import archive, data, frameworks, weights
from ui import shared, text
from ui.train.progress import for_page
from ui.train.run import page_workspace

WEIGHTS_TEXT = {
    "cached": "ImageNet weights: **ready** (in the local cache).",
    "downloadable": "ImageNet weights: **downloaded on the first run** (about 100 MB).",
    "unavailable": ("ImageNet weights: **not available** (no cache and no internet). A run needs "
                    "*Allow random initialisation* or weights = none: it then learns from scratch "
                    "on a few hundred images, and accuracy stays near chance (about 50% here)."),
}


def describe(dataset: data.DataSet, name: str) -> str:
    lines = [f"**{text.md(name)}**: {len(dataset.classes)} classes: {text.md_list(dataset.classes)}", ""]
    for split, label in (("train", "train"), ("val", "validation")):
        counts = ", ".join(f"{text.md(c, 60)} {n}" for c, n in dataset.counts(split).items())
        lines.append(f"- {label}: {len(getattr(dataset, split))} images ({counts})")
    lines += [f"- note: {text.md(note)}" for note in dataset.notes]
    if dataset.skipped:
        names = ", ".join(f"{text.md(relative(p, dataset.root), 80)} ({text.md(why)})"
                          for p, why in dataset.skipped[:10])
        lines.append(f"- skipped {len(dataset.skipped)} unreadable file(s): {names}")
    return "\n".join(lines)


def relative(path: Path, root: Path) -> str:
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return Path(path).name


def problems_text(name: str, error: data.DataError, folder: Path | None = None) -> str:
    """Every problem, with the data set's folder named as the visitor knows it (by `name`)."""
    named = lambda problem: problem.replace(str(folder), name) if folder else problem  # noqa: E731
    return f"**{text.md(name)} cannot be trained on:**\n" + "\n".join(
        f"- {text.md(for_page(named(p)), 400)}" for p in error.problems)


def check_data(workspace_id: str | None, dataset: str | None) -> str:
    space = page_workspace(workspace_id)
    if not dataset:
        return "No data set yet: upload a .zip of class folders, or use **Download the AvP images**."
    folder = None
    try:
        folder = shared.dataset_path(dataset, space)
        return describe(data.discover(folder), dataset.partition("/")[2])
    except ValueError as error:
        problems = error if isinstance(error, data.DataError) else data.DataError([str(error)])
        return problems_text(dataset.partition("/")[2], problems, folder)


def upload_zip(workspace_id: str | None, path: str | None, request: gr.Request | None = None):
    """Unpack an uploaded .zip into the visitor's workspace, check it, and select it. One upload at a
    time per workspace (two at once could both pass the same free space); each counts against its
    person's uploads per hour, refused ones too."""
    space = page_workspace(workspace_id)
    if not path:
        return gr.skip(), "No file."
    name = Path(path).name
    try:
        shared.workspaces().people.allow(person_of(request), "upload")
    except OverBudget as error:
        return gr.skip(), problems_text(name, data.DataError([str(error)]))
    with space.lock():
        return checked_upload(space, Path(path), name)


def checked_upload(space: Workspace, path: Path, name: str):
    try:
        folder, skipped = unpack(space, path)
    except (data.DataError, QuotaExceeded) as error:
        problems = error if isinstance(error, data.DataError) else data.DataError([str(error)])
        return gr.skip(), problems_text(name, problems)
    # Gradio's copy of the upload stays for its hourly cache cleaning: it is stored by content, so
    # another visitor who uploads the same file at the same moment is handed the same copy.
    try:
        dataset = data.discover(folder)
    except data.DataError as error:
        space.remove_upload(folder.name)
        return gr.skip(), problems_text(name, error, folder) + skipped
    shared.record_counts(folder, dataset)
    space.used_bytes()  # the totals of the workspace, its person and the server, kept up to date
    value = f"upload/{folder.name}"
    return gr.Dropdown(choices=shared.dataset_choices(space), value=value), describe(dataset, name) + skipped


def unpack(space: Workspace, zip_path: Path) -> tuple[Path, str]:
    """Extract into the workspace within its free quota; (folder, text listing skipped entries)."""
    incoming = space.uploads / INCOMING
    incoming.mkdir(parents=True, exist_ok=True)
    budget = min(archive.MAX_TOTAL_BYTES, space.free_bytes())
    # Entries cost a disk block each at least: the budget in bytes bounds how many there can be too.
    entries = max(1, min(archive.MAX_ENTRIES, budget // BLOCK))
    try:
        extracted = archive.extract_zip(zip_path, incoming, max_total_bytes=budget, max_entries=entries)
    except data.DataError as error:
        if budget < archive.MAX_TOTAL_BYTES and any("allowed" in p for p in error.problems):
            raise data.DataError([*error.problems, space.tightest_limit()]) from None
        raise
    folder = space.upload_folder(zip_path.name)
    extracted.root.replace(folder)
    skipped = "".join(f"\n- skipped zip entry {text.md(entry, 80)}: {text.md(why)}"
                      for entry, why in extracted.skipped[:10])
    return folder, skipped


def delete_upload(workspace_id: str | None, dataset: str | None):
    space = page_workspace(workspace_id)
    kind, _, name = (dataset or "").partition("/")
    if kind != "upload" or not space.remove_upload(name):
        return gr.skip(), "Only your own uploads can be deleted: choose one first."
    return gr.Dropdown(choices=shared.dataset_choices(space), value=None), f"Deleted {text.md(name)}."


def fetch_avp(progress=gr.Progress(track_tqdm=True)):  # noqa: B008 - gradio's way to ask for a progress bar
    """Download the AvP images into the server's data folder (the same images for everybody)."""
    from trainer import fetch
    from trainer.config import default_data_dir
    target = Path(default_data_dir())
    if shared.server_datasets():
        return gr.skip(), "The server already has a data set: choose it above."
    try:
        fetch.fetch(str(target))
    except (fetch.FetchError, data.DataError) as error:
        return gr.skip(), f"**Download failed.** {text.md(for_page(str(error)), 400)}"
    return gr.Dropdown(choices=shared.dataset_choices(None)), "Downloaded: choose it above."


def weights_text(choice: str = "imagenet") -> str:
    states = {fw: weights.status(fw) for fw in frameworks.NAMES}
    worst = "unavailable" if "unavailable" in states.values() else (
        "downloadable" if "downloadable" in states.values() else "cached")
    if choice == "none":
        if worst == "unavailable":
            return ("Weights: **none**, because ImageNet weights cannot be had on this server (no cache and no "
                    "internet): the backbone starts from random values, so accuracy stays near chance "
                    "(about 50% here).")
        return "Weights: **none**: the backbone starts from random values (for comparison)."
    detail = ", ".join(f"{fw}: {state}" for fw, state in states.items())
    return f"{WEIGHTS_TEXT[worst]} ({detail})"
