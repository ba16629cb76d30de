"""Train tab, the live view: a run's progress, the queue and the log as text, its charts, and the
page's poll, which renders all of them (and the last finished run's results) by output name.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict

import gradio as gr

from classroom import runs
from classroom.jobs import RunView
from classroom.workspace import Workspace
from ui import charts, shared, text
from ui.train.results import results_parts


def fmt_seconds(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


def runs_text(count: int) -> str:
    return f"{count} run{'' if count == 1 else 's'}"


def queue_text(overview: dict) -> str:
    """The queue in plain words: how many runs train and wait (the page's one queue sentence)."""
    training, waiting, at_once = overview["training"], overview["waiting"], overview["slots"]
    if not training and not waiting:
        return "The trainer is free."
    head = (f"The trainer is busy: {runs_text(training)} training" if at_once == 1 else
            f"{runs_text(training)} training ({at_once} can train at once)")
    return f"{head}, {waiting or 'none'} waiting."


PAUSED = "The teacher has paused the queue: your run starts when they resume it."


def progress_text(view: RunView, overview: dict) -> str:
    if view.status == "none":
        return "No run yet. Choose settings and press **Start**."
    if view.status == "queued" and overview.get("paused"):
        return f"**Waiting in the queue: number {view.position}.** {PAUSED}"
    if view.status == "queued":  # the queue's own sentence is under the charts, once
        return (f"**Waiting in the queue: number {view.position}.** Estimated start in about "
                f"{fmt_seconds(view.start_in_s or 0)}.")
    title = {"starting": "Starting (loading libraries and images) ...", "running": "Running",
             "stopping": "Stopping after the current batch ...", "done": "Finished",
             "stopped": "Stopped by Stop", "failed": "Failed", "cancelled": "Cancelled before it started"}[view.status]
    if view.by_teacher:
        title = {"stopping": "Stopping after the current batch: the teacher stopped it ...",
                 "stopped": "Stopped by the teacher",
                 "cancelled": "Taken out of the queue by the teacher"}.get(view.status, title)
    lines = [f"**{title}**"]
    lines += [f"**⚠ {text.md(e['message'], 300)}**" for e in view.events if e["type"] == "warning" and e.get("loud")]
    batch = runs.latest(view.events, "batch")
    if batch and view.active:
        started = next((e for e in reversed(view.events)
                        if e["type"] == "start" and e["framework"] == batch["framework"]), {})
        lines.append(
            f"{batch['framework']} on {started.get('device', '?')}: epoch {batch['epoch']}/{batch['epochs']}, "
            f"batch {batch['batch']}/{batch['batches']} | {batch['images_per_s']:.1f} images/s | "
            f"elapsed {fmt_seconds(batch['elapsed_s'])} | ETA {fmt_seconds(batch['eta_s'])}")
    if runs.latest(view.events, "finished").get("time_up"):
        lines.append("The server's time for one run was up: it ended early, like a finished run. "
                     + saved_text(view.events))
    if view.status in ("stopped", "failed"):
        lines.append(saved_text(view.events))
    if view.error:
        lines.append(f"**Error:** {text.md(for_page(view.error))}")
    return "\n\n".join(lines)


def saved_text(events: list[dict]) -> str:
    """What a stopped or failed run left: each framework saved before the stop, or nothing."""
    saved = [e["framework"] for e in events if e["type"] == "end" and e.get("saved_to")]
    if saved:
        return f"Saved before it ended: {', '.join(saved)} (your other models are unchanged)."
    return "Nothing was saved: your models are unchanged."


CLI_WORDS = (  # messages written for the command line, as the page says them
    (re.compile(r"\(?set --data or AVP_DATA_DIR[^)]*\)?"), "(ask whoever runs the server)"),
    (re.compile(r"or point AVP_DATA_DIR[^.]*"), "or ask whoever runs the server"),
    (re.compile(r"choose another --dest"), "choose another folder"),
    (re.compile(r"--weights none"), "Weights: none"),
    (re.compile(r"--limit"), "Limit images per split"),
    (re.compile(r"--fine-tune-lr"), "the fine-tune learning rate"),
)
LOG_CHARS = 160  # a warning's first line in the log; long ones are cut at a sentence


def for_page(message: str, chars: int = 600) -> str:
    """A trainer message as the page shows it: no server folders, no command-line words, plain text."""
    message = shared.public_error(Exception(message))
    for pattern, words in CLI_WORDS:
        message = pattern.sub(words, message)
    return text.plain(message, chars)


def short(message: str) -> str:
    """A long message cut at its last full sentence within LOG_CHARS (or its last word), so the log
    opens on what happened, not on advice."""
    if len(message) <= LOG_CHARS:
        return message
    cut = message[:LOG_CHARS]
    end = cut.rfind(". ")
    return (cut[:end + 1] if end > 0 else cut.rsplit(" ", 1)[0]) + " …"


def log_text(events: list[dict]) -> str:
    """The run's log, newest line first (the box shows its top: the latest news without scrolling)."""
    lines = []
    for e in events:
        if e["type"] in ("warning", "error"):
            lines.append(f"{e['type']}: {short(for_page(e['message']))}")
        elif e["type"] == "start":
            lines.append(f"{e['framework']}: {e['train_images']} train / {e['val_images']} validation images, "
                         f"{e['device']}, {e.get('precision', 'float32')}, backbone {e.get('engine', 'eager')}, "
                         f"{'pretrained' if e['pretrained'] else 'random initialisation'}, "
                         f"augmentation {'on' if e['augment'] else 'off'}"
                         + (", feature cache" if e["feature_cache"] else ""))
        elif e["type"] == "epoch":
            lines.append(f"{e['framework']} epoch {e['epoch']}/{e['epochs']}: train loss {e['train_loss']:.3f}, "
                         f"validation loss {e['val_loss']:.3f}, accuracy {e['val_accuracy']:.3f} "
                         f"({e['seconds']:.1f} s)")
        elif e["type"] == "bank":
            lines.append(f"{e['framework']}: {e['message']}")
        elif e["type"] == "stopped":
            lines.append(f"{e['framework']}: stopped at epoch {e['epoch']}, batch {e['batch']}; not saved")
        elif e["type"] == "end" and e.get("saved_to"):
            lines.append(f"{e['framework']}: saved; your Predict tab now uses it")
    return "\n".join(reversed(lines))


def max_epochs(events: list[dict]) -> int:
    """The run's epochs: the accuracy plot spans them, its points off the edges."""
    return max((e["epochs"] for e in events if e["type"] in ("batch", "epoch")), default=1)


def plot(kind, frame, **settings):
    """A plot's new data, with the colours and legend of the series it holds (charts.colour_map);
    no data for an empty frame (the browser's plot cannot lay out axes without a single value)."""
    return kind(None if frame.empty else frame, color_map=charts.colour_map(frame["series"]),
                colors_in_legend=charts.legend(frame["series"]), **settings)


_rendered: OrderedDict[tuple, dict] = OrderedDict()  # the last views rendered, by what they show
_rendered_lock = threading.Lock()


def render(space: Workspace, view: RunView, overview: dict, with_results: bool = True) -> dict:
    """Everything the page shows of a run, rendered once per new event and then served cached.
    Without results (a run going, the page already showing them) the last finished run's stay."""
    key = (space.id, view.run_id, len(view.events), view.status, view.position,
           round((view.start_in_s or 0) / 5), tuple(overview.values()), with_results)
    with _rendered_lock:  # polls of many visitors run at once
        cached = _rendered.get(key)
    if cached is not None:
        return cached
    points = sum(e["type"] in ("batch", "epoch") for e in view.events)
    loss, accuracy = charts.training_frames(view.events, shared.jobs().previous_events(space))
    parts = {
        "progress": progress_text(view, overview), "queue": queue_text(overview),
        "chart": plot(gr.LinePlot, loss, label=f"Loss: {points} points"),
        "accuracy": plot(gr.ScatterPlot, accuracy, x_lim=[0.5, max_epochs(view.events) + 0.5]),
        "log": log_text(view.events), "stop": gr.Button(interactive=view.active),
        **(results_parts(space, view) if with_results else {}),  # an output left out stays as it is
    }
    with _rendered_lock:
        _rendered[key] = parts
        while len(_rendered) > 16:  # a view holds plots and galleries: keep few
            _rendered.popitem(last=False)
    return parts


def poll(workspace_id: str | None, seen: str) -> dict:
    """The page's timer: this visitor's run and the queue's length, by output name, with "seen", the
    key of what it shows; {} when nothing changed."""
    space = shared.workspaces().open(workspace_id)
    if space is None:
        return {}
    view, overview = shared.jobs().view(space), shared.jobs().overview()
    key = f"{view.run_id}:{len(view.events)}:{view.status}:{view.position}:{round(view.start_in_s or 0)}:{overview}"
    if key == seen:
        return {}
    return {"seen": key, **render(space, view, overview, with_results=not (view.active and seen))}
