"""Train tab: choose a data set and settings, queue a run, watch it live, stop it.

Each visitor acts on their own workspace (ui/shared.py): their uploads, their one run waiting or
going, their models. Runs wait in a server-wide queue (classroom/jobs.py) and train in separate
processes; the page polls its own run with a gr.Timer, so a closed tab loses nothing. Other
visitors' runs show only as "the trainer is busy" and the length of the queue.

Settings travel by name: every setting widget is passed to the handlers as a keyword argument
named after its TrainConfig field (`augment.<field>` for the augmentation), and the API takes the
same names as one JSON object.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import OrderedDict
from pathlib import Path

import gradio as gr

from classroom import jobs
from classroom.jobs import Busy, QueueFull, RunView
from classroom.workspace import INCOMING, QuotaExceeded, Workspace, folder_bytes
from trainer import archive, data, weights
from trainer.cli import HELP
from trainer.config import TrainConfig
from ui import charts, shared, text

POLL_S = 1.0
MODEL_BYTES = 100 * 2**20  # a saved ResNet-50 (either framework), for the quota check before a run
SERVER_CHOSEN = ("data_dir", "out_dir", "device", "precision")  # settings the app decides, not visitors
WEIGHTS_TEXT = {
    "cached": "ImageNet weights: **ready** (in the local cache).",
    "downloadable": "ImageNet weights: **downloaded on the first run** (about 100 MB).",
    "unavailable": ("ImageNet weights: **not available** (no cache and no internet). A run needs "
                    "*Allow random initialisation* or weights = none: it then learns from scratch "
                    "on a few hundred images, and accuracy stays near chance (about 50% here)."),
}
RESULTS = ("results", "confusion", "mistakes", "disagreements", "disagree_box")  # the last finished run's
VIEW = ("progress", "queue", "chart", "accuracy", "log", *RESULTS, "stop")  # poll's outputs, in order
NAMES = {"keras": "Keras", "pytorch": "PyTorch"}
CHART_KEY = ("Loss per batch; darker: validation loss per epoch; paler: your previous run. "
             "Point at a line for its values.")
MAX_DISAGREEMENTS = 48


class PageError(gr.Error):
    """A refusal shown to the visitor as a pop-up."""


# ---------------------------------------------------------------- workspace and settings

def open_workspace(workspace_id: str | None):
    """On page load: the visitor's workspace (a new one if theirs expired), their data sets and the
    settings of their last Start. Returns the id to keep in the browser, then the widgets' values."""
    space = shared.workspaces().open_or_create(workspace_id)
    saved = load_settings(space)
    choices = shared.dataset_choices(space)
    values = [c[1] for c in choices]
    dataset = saved.get("dataset") if saved.get("dataset") in values else (values[0] if values else None)
    form = {**flatten(saved), "dataset": gr.Dropdown(choices=choices, value=dataset)}
    return space.id, form


def load_settings(space: Workspace) -> dict:
    try:
        saved = json.loads(space.settings_file.read_text())
        return saved if isinstance(saved, dict) else {}
    except (OSError, ValueError):
        return {}


def nest(values: dict) -> dict:
    """{"epochs": 3, "augment.shear_deg": 10} -> {"epochs": 3, "augment": {"shear_deg": 10}}."""
    settings: dict = {}
    for key, value in values.items():
        group, _, name = key.rpartition(".")
        (settings.setdefault(group, {}) if group else settings)[name] = value
    return settings


def flatten(settings: dict) -> dict:
    """The inverse of `nest`."""
    flat = {}
    for key, value in settings.items():
        if isinstance(value, dict):
            flat.update({f"{key}.{name}": v for name, v in value.items()})
        else:
            flat[key] = value
    return flat


def config_for(space: Workspace, settings: dict) -> TrainConfig:
    """A visitor's named settings (page or API) -> a validated TrainConfig for their workspace.
    Folders are the server's choice: the data set is named, the models go to the workspace."""
    if not isinstance(settings, dict):
        raise ValueError("settings must be a JSON object of TrainConfig fields by name")
    values = dict(settings)
    named = [key for key in SERVER_CHOSEN if key in values]
    if named:
        raise ValueError(f"{', '.join(named)} cannot be set here: name a data set with 'dataset'")
    if values.get("weights", "imagenet") not in ("imagenet", "none"):
        raise ValueError("weights must be imagenet or none")
    folder = shared.dataset_path(values.pop("dataset", None), space)
    return TrainConfig.from_dict({**values, "data_dir": str(folder), "out_dir": str(space.models)}).validate()


def submit(space: Workspace, settings: dict) -> RunView:
    """Check everything a run needs, then queue it. Raises PageError saying what is wrong."""
    try:
        config = config_for(space, settings)
        if config.weights == "imagenet" and not config.allow_random_init:
            missing = [fw for fw in config.frameworks if weights.status(fw) == "unavailable"]
            if missing:
                raise ValueError(f"ImageNet weights for {', '.join(missing)} are not available here (no "
                                 "cache, no internet): tick 'Allow random initialisation' or choose weights none")
        data.discover(config.data_dir, config.seed)
        kept = folder_bytes(space.models)  # the models this run replaces
        space.require_free(MODEL_BYTES * len(config.frameworks) - kept, "saving the trained models")
        shared.jobs().submit(space, config)
    except (ValueError, TypeError, Busy, QueueFull, QuotaExceeded) as error:
        raise PageError(for_page(str(error))) from None
    return shared.jobs().view(space)


def page_workspace(workspace_id: str | None) -> Workspace:
    try:
        return shared.workspace(workspace_id)
    except shared.NoWorkspace as error:
        raise PageError(str(error)) from None


def start_pressed(workspace_id: str | None, **values) -> str:
    """Start pressed: keep the settings (a reload brings them back), then queue the run."""
    space = page_workspace(workspace_id)
    settings = nest(values)
    space.settings_file.write_text(json.dumps(settings))
    view = submit(space, settings)
    return progress_text(view, shared.jobs().overview())


def stop_pressed(workspace_id: str | None) -> str:
    outcome = shared.jobs().cancel(page_workspace(workspace_id))
    return {"cancelled": "Taken out of the queue.", "stopping": "Stopping after the current batch ...",
            None: "You have no run waiting or training."}[outcome]


# ---------------------------------------------------------------- data sets

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


def upload_zip(workspace_id: str | None, path: str | None):
    """Unpack an uploaded .zip into the visitor's workspace, check it, and select it."""
    space = page_workspace(workspace_id)
    if not path:
        return gr.skip(), "No file."
    name = Path(path).name
    try:
        folder, skipped = unpack(space, Path(path))
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
    value = f"upload/{folder.name}"
    return gr.Dropdown(choices=shared.dataset_choices(space), value=value), describe(dataset, name) + skipped


def unpack(space: Workspace, zip_path: Path) -> tuple[Path, str]:
    """Extract into the workspace within its free quota; (folder, text listing skipped entries)."""
    incoming = space.uploads / INCOMING
    incoming.mkdir(parents=True, exist_ok=True)
    budget = min(archive.MAX_TOTAL_BYTES, space.free_bytes())
    extracted = archive.extract_zip(zip_path, incoming, max_total_bytes=budget)
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
    if choice == "none":
        return "Weights: **none**: the backbone starts from random values (for comparison)."
    states = {fw: weights.status(fw) for fw in ("keras", "pytorch")}
    worst = "unavailable" if "unavailable" in states.values() else (
        "downloadable" if "downloadable" in states.values() else "cached")
    detail = ", ".join(f"{fw}: {state}" for fw, state in states.items())
    return f"{WEIGHTS_TEXT[worst]} ({detail})"


# ---------------------------------------------------------------- live view

def fmt_seconds(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


def queue_text(overview: dict) -> str:
    busy = overview["training"]
    if not busy and not overview["waiting"]:
        return "The trainer is free."
    return (f"The trainer is busy: {busy} of {overview['slots']} slot(s) training, "
            f"{overview['waiting']} run(s) waiting.")


def progress_text(view: RunView, overview: dict) -> str:
    if view.status == "none":
        return "No run yet. Choose settings and press **Start**."
    if view.status == "queued":
        return (f"**Waiting in the queue: number {view.position}.** Estimated start in about "
                f"{fmt_seconds(view.start_in_s or 0)} ({queue_text(overview)})")
    title = {"starting": "Starting (loading libraries and images) ...", "running": "Running",
             "stopping": "Stopping after the current batch ...", "done": "Finished",
             "stopped": "Stopped by Stop", "failed": "Failed", "cancelled": "Cancelled before it started"}[view.status]
    lines = [f"**{title}**"]
    lines += [f"**⚠ {text.md(e['message'], 300)}**" for e in view.events if e["type"] == "warning" and e.get("loud")]
    batch = next((e for e in reversed(view.events) if e["type"] == "batch"), None)
    if batch and view.active:
        started = next((e for e in reversed(view.events)
                        if e["type"] == "start" and e["framework"] == batch["framework"]), {})
        lines.append(
            f"{batch['framework']} on {started.get('device', '?')}: epoch {batch['epoch']}/{batch['epochs']}, "
            f"batch {batch['batch']}/{batch['batches']} | {batch['images_per_s']:.1f} images/s | "
            f"elapsed {fmt_seconds(batch['elapsed_s'])} | ETA {fmt_seconds(batch['eta_s'])}")
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


# ---------------------------------------------------------------- results of the last finished run

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
    for run in reversed(jobs.runs_of(space)):
        ends = finished_ends(jobs.read_events(run))
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
        row("backbone engine", lambda e: text.md(f"{e.get('engine') or 'eager'}, {e.get('precision', 'float32')}", 80)),
    ]
    return "\n".join(rows)


def validation_paths(config: dict) -> list[str]:
    """The run's validation images in the order it predicted them (the split and subset are seeded)."""
    try:
        dataset = data.discover(config["data_dir"], config["seed"])
        return [str(s.path) for s in data.limit_samples(dataset.val, config["limit"], config["seed"])]
    except (KeyError, ValueError, OSError):
        return []


def disagreements(ends: list[dict]) -> tuple[int, int, list]:
    """(images both models predicted, how many they agree on, gallery items of the others)."""
    both = {e["framework"]: e for e in ends if e.get("val_predicted")}
    if len(both) < 2:
        return 0, 0, []
    keras, pytorch = both["keras"], both["pytorch"]
    paths = validation_paths(keras["config"])
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
        **(results_parts(space, view) if with_results else dict.fromkeys(RESULTS, gr.skip())),
    }
    with _rendered_lock:
        _rendered[key] = parts
        while len(_rendered) > 16:  # a view holds plots and galleries: keep few
            _rendered.popitem(last=False)
    return parts


def poll(workspace_id: str | None, seen: str):
    """The page's timer: this visitor's run and the queue's length; skipped when nothing changed."""
    space = shared.workspaces().open(workspace_id)
    if space is None:
        return gr.skip()
    view, overview = shared.jobs().view(space), shared.jobs().overview()
    key = f"{view.run_id}:{len(view.events)}:{view.status}:{view.position}:{round(view.start_in_s or 0)}:{overview}"
    if key == seen:
        return gr.skip()
    parts = render(space, view, overview, with_results=not (view.active and seen))
    return [key, *(parts[name] for name in VIEW)]


# ---------------------------------------------------------------- API (gradio_client)

def workspace_api(workspace: str = "") -> str:
    """Your workspace id: the one given if it is still valid, else a new one. Keep it, and pass it
    to every other call: it is the key to your data sets, runs and models."""
    return shared.workspaces().open_or_create(workspace).id


def datasets_api(workspace: str) -> list[str]:
    """The data sets you may train on, by the name /start takes ('server/...' or 'upload/...')."""
    return [value for _, value in shared.dataset_choices(page_workspace(workspace))]


def start_api(workspace: str, settings: dict) -> dict:
    """Queue a training run. `settings`: TrainConfig fields by name, e.g.
    {"dataset": "server/avp", "framework": "pytorch", "epochs": 1, "image_size": 64,
    "feature_cache": true, "augment": {"enabled": false}}; omitted fields keep their defaults.
    Returns the run's status (as /training_status)."""
    submit(page_workspace(workspace), settings)
    return status_api(workspace)


def stop_api(workspace: str) -> str:
    """Stop your own run (or take it out of the queue)."""
    return stop_pressed(workspace)


def status_api(workspace: str) -> dict:
    """Your newest run: status, queue position and estimated start, batches, epochs, summaries."""
    space = page_workspace(workspace)
    view = shared.jobs().view(space)
    pick = lambda kind: [e for e in view.events if e["type"] == kind]  # noqa: E731
    public = ("framework", "val_accuracy", "best_val_accuracy", "seconds_per_epoch", "images_per_s",
              "pretrained", "device", "precision", "engine", "stopped", "classes")
    return {"run_id": view.run_id, "status": view.status, "position": view.position,
            "error": for_page(view.error) if view.error else None,
            "start_in_s": view.start_in_s, "queue": shared.jobs().overview(), "batches": len(pick("batch")),
            "epochs": pick("epoch"), "time": time.time(),
            "summaries": [{**{k: e[k] for k in public if k in e}, "saved": bool(e.get("saved_to"))}
                          for e in pick("end")]}


# ---------------------------------------------------------------- layout

def settings_form(d: TrainConfig) -> dict[str, gr.components.Component]:
    """The training settings' widgets, by TrainConfig field."""
    form = {
        "epochs": gr.Slider(1, 20, d.epochs, step=1, label="Epochs", info=HELP["epochs"], elem_id="epochs"),
        "batch_size": gr.Slider(1, 128, d.batch_size, step=1, label="Batch size", info=HELP["batch_size"],
                                elem_id="batch-size"),
        "lr": gr.Number(d.lr, label="Learning rate", info=HELP["lr"]),
        "image_size": gr.Slider(32, 448, d.image_size, step=32, label="Image size",
                                info=HELP["image_size"], elem_id="image-size"),
        "head_units": gr.Slider(8, 1024, d.head_units, step=8, label="Head units",
                                info=HELP["head_units"], elem_id="head-units"),
        "limit": gr.Number(d.limit, precision=0, minimum=0, label="Limit images per split",
                           info=HELP["limit"]),
        "augment.enabled": gr.Checkbox(True, label="Augmentation (settings of the Augment tab)"),
        "feature_cache": gr.Checkbox(False, label="Fast mode: feature cache", info=HELP["feature_cache"]),
        "unfreeze": gr.Slider(0, 4, 0, step=1, label="Unfreeze last stages", info=HELP["unfreeze"]),
        "weights": gr.Radio(["imagenet", "none"], value="imagenet", label="Weights",
                            info="imagenet (downloaded once) or none (random initialisation)",
                            elem_id="weights"),
        "allow_random_init": gr.Checkbox(False, label="Allow random initialisation",
                                         info=HELP["allow_random_init"], elem_id="allow-random-init"),
        "seed": gr.Number(d.seed, precision=0, label="Seed", info=HELP["seed"], elem_id="seed"),
    }
    gr.Markdown("The backbone stays in inference mode while training: its batch-norm statistics "
                "keep their ImageNet values instead of drifting with each small batch (the seed "
                "notebook's PyTorch loop let them drift).")
    return form


def build(browser: gr.BrowserState, augment_controls: dict[str, gr.components.Component]) -> list:
    """Build the tab; return its load events (fn, inputs, outputs). Start, the run's progress and its
    chart come first, so that on a phone they fill the first screen; settings and results follow."""
    d = TrainConfig(data_dir="")
    with gr.Row():
        start_button = gr.Button("Start", variant="primary", min_width=120)
        stop_button = gr.Button("Stop", variant="stop", interactive=False, min_width=120)
    progress_md = gr.Markdown("No run yet.", elem_id="train-progress")
    with gr.Row():
        chart = gr.LinePlot(x="epoch", y="loss", color="series", color_title="", label="Loss",
                            y_title="loss (cross-entropy)", elem_id="train-chart",
                            min_width=300)
        accuracy = gr.ScatterPlot(x="epoch", y="accuracy", color="series", color_title="",
                                  label="Validation accuracy per epoch", y_lim=[0, 1],
                                  elem_id="train-accuracy", min_width=300)
    gr.Markdown(CHART_KEY)
    queue_md = gr.Markdown(elem_id="train-queue")
    with gr.Row():
        with gr.Column(scale=1, min_width=320):
            framework = gr.Radio(["keras", "pytorch", "both"], value="both", label="Framework",
                                 info=HELP["framework"], elem_id="framework")
            dataset = gr.Dropdown([], label="Data set", info="the server's data sets and your own uploads",
                                  elem_id="dataset")
            upload = gr.File(file_types=[".zip"], type="filepath", label="Upload a .zip of class folders",
                             elem_id="upload-zip", height=120)
            with gr.Row():
                check_button = gr.Button("Check data", size="sm")
                delete_button = gr.Button("Delete this upload", size="sm")
                fetch_button = gr.Button("Download the AvP images", size="sm")
            data_md = gr.Markdown(elem_id="data-check")
            weights_md = gr.Markdown()
            with gr.Accordion("Settings", open=True):
                form = settings_form(d)
        with gr.Column(scale=2, min_width=320):
            log = gr.Textbox(label="Log (newest first)", lines=6, max_lines=14, interactive=False,
                             elem_id="train-log")
            results_md = gr.Markdown("Results appear here when a run finishes.", elem_id="train-results")
            with gr.Accordion("The validation images the two models disagree on", open=False, visible=False,
                              elem_id="disagree-box") as disagree_box:
                disagreements = gr.Gallery(label="Disagreements (validation)", columns=3, height=300,
                                           elem_id="disagreements")
            confusion = gr.Plot(label="Confusion matrices (validation)")
            mistakes = gr.Gallery(label="Misclassified validation images", columns=3, height=300)
    seen = gr.State("")
    timer = gr.Timer(POLL_S)

    settings = {"framework": framework, "dataset": dataset, **form,
                **{f"augment.{name}": c for name, c in augment_controls.items()}}
    restorable = list(settings.values())
    upload.upload(upload_zip, [browser, upload], [dataset, data_md], api_name="upload_data")
    check_button.click(check_data, [browser, dataset], data_md, api_visibility="private")
    delete_button.click(delete_upload, [browser, dataset], [dataset, data_md], api_visibility="private")
    fetch_button.click(fetch_avp, None, [dataset, data_md], api_visibility="private", concurrency_limit=1)
    form["weights"].change(weights_text, form["weights"], weights_md, api_visibility="private")
    start_button.click(start_pressed, [browser], progress_md, inputs_kwargs=settings, api_visibility="private",
                       concurrency_limit=4, concurrency_id="start").then(
        lambda: "", None, seen, api_visibility="private")
    stop_button.click(stop_pressed, browser, progress_md, api_visibility="private", concurrency_limit=None)
    outputs = [seen, progress_md, queue_md, chart, accuracy, log, results_md, confusion, mistakes, disagreements,
               disagree_box, stop_button]
    timer.tick(poll, [browser, seen], outputs, api_visibility="private", concurrency_limit=None)
    for fn, name in ((workspace_api, "workspace"), (datasets_api, "datasets"), (start_api, "start"),
                     (stop_api, "stop"), (status_api, "training_status")):
        gr.api(fn, api_name=name, concurrency_limit=None if name != "start" else 4)

    def restore(workspace_id):
        space_id, values = open_workspace(workspace_id)
        return [space_id, *(values.get(name, gr.skip()) for name in settings)]

    return [(weights_text, None, weights_md), (restore, browser, [browser, *restorable]),
            (poll, [browser, seen], outputs)]
