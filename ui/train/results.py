"""Train tab: the results of the visitor's last finished run: a table per framework, how often the
two models agree, confusion matrices, misclassified images and the images the two disagree on.
"""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from classroom import runs
from classroom.jobs import RunView
from classroom.workspace import Workspace, folder_bytes
from trainer import data, frameworks
from ui import charts, text

NAMES = frameworks.DISPLAY  # display names, for the page

MAX_DISAGREEMENTS = 48


def finished_ends(events: list[dict]) -> list[dict]:
    """The end events of a run that trained every framework to its last epoch ([] otherwise)."""
    ends = [e for e in events if e["type"] == "end"]
    if not ends or any(e.get("stopped") or not e.get("history") for e in ends):
        return []
    return [] if any(e["type"] in ("stopped", "error") for e in events) else ends


def last_finished(space: Workspace, view: RunView) -> list[dict]:
    """The end events of this workspace's newest finished run: the results stay on the page while
    a newer run waits, trains, is stopped or fails."""
    if finished_ends(view.events):
        return finished_ends(view.events)
    for run in reversed(runs.runs_of(space)):
        ends = finished_ends(runs.read_events(run))
        if ends:
            return ends
    return []


def file_size(folder: str | None) -> str:
    """A saved model's size on disk, e.g. "94.3 MB" ("not saved" without one)."""
    size = folder_bytes(Path(folder)) if folder else 0
    return f"{size / 1e6:.1f} MB" if size else "not saved"


def millions(count: int | None) -> str:
    return "?" if count is None else (f"{count / 1e6:.1f} M" if count >= 1e6 else f"{count:,}")


def results_table(ends: list[dict]) -> str:
    """A Markdown table, one column per framework: a table of rows never truncates its headers."""
    def row(name, value):
        return f"| {name} | " + " | ".join(value(e) for e in ends) + " |"
    last = lambda key, digits: lambda e: f"{e['history'][-1][key]:.{digits}f}"  # noqa: E731
    rows = [
        "| | " + " | ".join(NAMES.get(e["framework"], e["framework"]) for e in ends) + " |",
        "|---|" + "---:|" * len(ends),
        row("validation accuracy", last("val_accuracy", 3)),
        row("validation loss", last("val_loss", 3)),
        row("best validation accuracy", lambda e: f"{e.get('best_val_accuracy', 0):.3f}"),
        row("epochs", lambda e: str(len(e["history"]))),
        row("seconds per epoch", lambda e: f"{e.get('seconds_per_epoch', 0):.1f}"),
        row("training images per second", lambda e: f"{e.get('images_per_s', 0):.1f}"),
        row("one prediction (one image)", lambda e: f"{e['predict_seconds'] * 1000:.0f} ms"
            if e.get("predict_seconds") else "?"),
        row("parameters: trainable / total", lambda e: f"{millions(e.get('trainable_params'))} / "
            f"{millions(e.get('total_params'))}"),
        row("model file size", lambda e: file_size(e.get("saved_to"))),
        row("pretrained", lambda e: "yes (ImageNet)" if e["pretrained"] else "**no** (random initialisation)"),
        row("device", lambda e: text.md(e["device"], 80)),
    ]
    return "\n".join(rows)


def disagreements(ends: list[dict]) -> tuple[int, int, list]:
    """(images both models predicted, how many they agree on, gallery items of the others)."""
    both = {e["framework"]: e for e in ends if e.get("val_predicted")}
    if len(both) < 2:
        return 0, 0, []
    keras, pytorch = both["keras"], both["pytorch"]
    paths = keras.get("val_paths", [])  # the runner's, in the order both models predicted them
    if len(paths) != len(keras["val_predicted"]) or len(paths) != len(pytorch["val_predicted"]):
        return 0, 0, []
    classes = keras["classes"]
    differ = [i for i, (k, p) in enumerate(zip(keras["val_predicted"], pytorch["val_predicted"])) if k != p]
    items = []
    for i in differ[:MAX_DISAGREEMENTS]:
        caption = f"Keras: {classes[keras['val_predicted'][i]]}, PyTorch: {classes[pytorch['val_predicted'][i]]}"
        items.append((thumbnail(paths[i]), text.plain(caption, 120)))
    return len(paths), len(paths) - len(differ), [item for item in items if item[0] is not None]


def thumbnail(path: str):
    try:
        image = data.load_rgb(path, max_side=160)
    except data.ImageError:
        return None
    image.thumbnail((160, 160))
    return image


def mistakes_gallery(ends: list[dict]) -> list:
    items = []
    for e in ends:
        for m in e.get("misclassified", [])[:24]:
            image = thumbnail(m["path"])
            if image is not None:
                items.append((image, text.plain(f"{e['framework']}: {m['true']} → {m['predicted']} "
                                                f"({m['probability']:.2f})", 120)))
    return items


def results_parts(space: Workspace, view: RunView) -> dict:
    """The last finished run's results: its table, the comparison of the two frameworks, confusion
    matrices, mistakes and the images the two models disagree on."""
    ends = last_finished(space, view)
    if not ends:
        return {"results": "Results appear here when a run finishes.", "confusion": None, "mistakes": [],
                "disagreements": [], "disagree_box": gr.Accordion(visible=False)}
    own = bool(finished_ends(view.events))
    lines = [f"### Results of {'this' if own else 'your last finished'} run "
             f"(finished {text.readable_time(ends[-1].get('trained_at'))})", "", results_table(ends)]
    total, agree, differ = disagreements(ends)
    if total:
        lines += ["", f"**The two models agree on {agree} of {total} validation images "
                      f"({agree / total:.0%}).**"]
    devices = {e["device"] for e in ends}
    if len(devices) > 1:
        lines += ["", "They trained on different devices: their speeds do not compare."]
    label = f"The {total - agree} validation images the two models disagree on" + (
        f" (the first {MAX_DISAGREEMENTS})" if total - agree > MAX_DISAGREEMENTS else "")
    return {"results": "\n".join(lines), "confusion": charts.confusion_figure(ends),
            "mistakes": mistakes_gallery(ends), "disagreements": differ,
            "disagree_box": gr.Accordion(label=label, visible=bool(differ))}
