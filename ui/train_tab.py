"""Train tab: pick frameworks, data and settings; Start and Stop one server-wide run; watch it live.

The run itself happens in a separate process (trainer/jobs.py, trainer/worker.py). Every page polls
it with a gr.Timer, so a closed tab loses nothing and any user sees the run in progress.
"""

from __future__ import annotations

import shutil
import time
import warnings
from pathlib import Path

import gradio as gr

from trainer import archive, data, weights
from trainer.augment import AugmentConfig
from trainer.cli import HELP
from trainer.config import TrainConfig, default_data_dir
from trainer.jobs import Busy
from ui import charts, shared

POLL_S = 1.0
WEIGHTS_TEXT = {
    "cached": "ImageNet weights: **ready** (in the local cache).",
    "downloadable": "ImageNet weights: **downloaded on the first run** (about 100 MB).",
    "unavailable": ("ImageNet weights: **not available** (no cache and no internet). A run needs "
                    "*Allow random initialisation* or weights = none: it then learns from scratch "
                    "on a few hundred images, and accuracy stays near chance (about 50% here)."),
}


# ---------------------------------------------------------------- data set

def describe(dataset: data.DataSet, name: str) -> str:
    lines = [f"**{name}**: {len(dataset.classes)} classes: {', '.join(dataset.classes)}", ""]
    for split, label in (("train", "train"), ("val", "validation")):
        counts = ", ".join(f"{c} {n}" for c, n in dataset.counts(split).items())
        lines.append(f"- {label}: {len(getattr(dataset, split))} images ({counts})")
    lines += [f"- note: {note}" for note in dataset.notes]
    if dataset.skipped:
        lines.append(f"- skipped {len(dataset.skipped)} unreadable file(s): "
                     + ", ".join(f"`{p.name}` ({why})" for p, why in dataset.skipped[:10]))
    return "\n".join(lines)


def problems_text(name: str, error: data.DataError) -> str:
    return f"**{name} cannot be trained on:**\n" + "\n".join(
        f"- {shared.public_error(p)}" for p in error.problems)


def check_data(data_dir: str, uploaded: str | None) -> str:
    folder = uploaded or data_dir
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return describe(data.discover(folder), "uploaded data set" if uploaded else folder)
    except data.DataError as error:
        return problems_text("uploaded data set" if uploaded else folder, error) + (
            "\n\nUse **Download the AvP images**, or upload a .zip of class folders." if not uploaded else "")


def upload_zip(path: str | None, previous: str | None):
    """Unpack an uploaded .zip into a fresh folder of this session and check it."""
    remove_upload(previous)
    if not path:
        return None, "No upload: training uses the data folder."
    try:
        extracted = archive.extract_zip(path)
    except data.DataError as error:
        return None, problems_text(Path(path).name, error)
    skipped = "".join(f"\n- skipped zip entry `{entry}`: {why}" for entry, why in extracted.skipped[:10])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dataset = data.discover(extracted.root)
    except data.DataError as error:
        remove_upload(str(extracted.root))
        return None, problems_text(Path(path).name, error) + skipped
    return str(extracted.root), describe(dataset, Path(path).name) + skipped


def remove_upload(folder: str | None) -> None:
    if folder:
        shutil.rmtree(folder, ignore_errors=True)


def fetch_avp(data_dir: str, progress=gr.Progress(track_tqdm=True)) -> str:
    from trainer import fetch
    try:
        dataset = fetch.fetch(data_dir or default_data_dir())
    except (fetch.FetchError, data.DataError) as error:
        return f"**Download failed.** {shared.public_error(error)}"
    return describe(dataset, data_dir)


def weights_text(choice: str = "imagenet") -> str:
    if choice == "none":
        return "Weights: **none**: the backbone starts from random values (for comparison)."
    states = {fw: weights.status(fw) for fw in ("keras", "pytorch")}
    worst = "unavailable" if "unavailable" in states.values() else (
        "downloadable" if "downloadable" in states.values() else "cached")
    detail = ", ".join(f"{fw}: {state}" for fw, state in states.items())
    return f"{WEIGHTS_TEXT[worst]} ({detail})"


# ---------------------------------------------------------------- start and stop

def make_config(framework, data_dir, uploaded, epochs, batch_size, lr, image_size, head_units, limit,
                feature_cache, unfreeze, weights_choice, allow_random_init, seed, use_augment,
                shear, zoom_min, zoom_max, rotation, shift, hflip, vflip) -> TrainConfig:
    aug = AugmentConfig(enabled=bool(use_augment), shear_deg=float(shear), zoom_min=float(zoom_min),
                        zoom_max=float(zoom_max), rotation_deg=float(rotation), shift=float(shift),
                        hflip=bool(hflip), vflip=bool(vflip))
    return TrainConfig(
        framework=framework, data_dir=uploaded or data_dir, out_dir=str(shared.MODELS_DIR),
        epochs=int(epochs), batch_size=int(batch_size), lr=float(lr), image_size=int(image_size),
        head_units=int(head_units), limit=int(limit or 0), feature_cache=bool(feature_cache),
        unfreeze=int(unfreeze), weights=weights_choice, allow_random_init=bool(allow_random_init),
        seed=int(seed), augment=aug).validate()


def start(*values) -> str:
    try:
        config = make_config(*values)
    except ValueError as error:
        raise gr.Error(str(error)) from None
    if config.weights == "imagenet" and not config.allow_random_init:
        missing = [fw for fw in config.frameworks if weights.status(fw) == "unavailable"]
        if missing:
            raise gr.Error(f"ImageNet weights for {', '.join(missing)} are not available here (no cache, "
                           "no internet). Tick 'Allow random initialisation' or choose weights = none.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            data.discover(config.data_dir, config.seed)
    except data.DataError as error:
        raise gr.Error(shared.public_error(error)) from None
    try:
        run_id = shared.jobs().start(config)
    except Busy as error:
        gr.Warning(str(error))
        return "A run is already in progress: its progress is shown here."
    return f"Starting run {run_id} ..."


def stop() -> str:
    if shared.jobs().stop():
        return "Stopping after the current batch ..."
    return "No run is in progress."


# ---------------------------------------------------------------- live view

def fmt_seconds(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


def progress_text(view) -> str:
    if view.status == "none":
        return "No run yet. Choose settings and press **Start**."
    events = view.events
    title = {"starting": "Starting (loading libraries and images) ...", "running": "Running",
             "stopping": "Stopping after the current batch ...", "done": "Finished",
             "stopped": "Stopped by Stop: the models saved before this run are unchanged",
             "failed": "Failed"}[view.status]
    lines = [f"**{title}** (run {view.run_id})"]
    batch = next((e for e in reversed(events) if e["type"] == "batch"), None)
    if batch:
        started = next((e for e in reversed(events) if e["type"] == "start" and e["framework"] == batch["framework"]), {})
        lines.append(
            f"{batch['framework']} on {started.get('device', '?')}: epoch {batch['epoch']}/{batch['epochs']}, "
            f"batch {batch['batch']}/{batch['batches']} | {batch['images_per_s']:.1f} images/s | "
            f"elapsed {fmt_seconds(batch['elapsed_s'])} | ETA {fmt_seconds(batch['eta_s'])}")
    if view.error:
        lines.append(f"**Error:** {view.error}")
    return "\n\n".join(lines)


def log_text(events: list[dict]) -> str:
    lines = []
    for e in events:
        if e["type"] == "warning":
            lines.append(f"warning: {e['message']}")
        elif e["type"] == "error":
            lines.append(f"error: {e['message']}")
        elif e["type"] == "start":
            lines.append(f"{e['framework']}: {e['train_images']} train / {e['val_images']} validation images, "
                         f"{e['device']}, {e.get('precision', 'float32')}, pretrained={e['pretrained']}, augmentation={'on' if e['augment'] else 'off'}"
                         + (", feature cache" if e["feature_cache"] else ""))
        elif e["type"] == "epoch":
            lines.append(f"{e['framework']} epoch {e['epoch']}/{e['epochs']}: train loss {e['train_loss']:.3f}, "
                         f"validation loss {e['val_loss']:.3f}, accuracy {e['val_accuracy']:.3f} ({e['seconds']:.1f} s)")
        elif e["type"] == "stopped":
            lines.append(f"{e['framework']}: stopped at epoch {e['epoch']}, batch {e['batch']}; not saved")
        elif e["type"] == "end" and e.get("saved_to"):
            lines.append(f"{e['framework']}: saved; the Predict tab now uses it")
    return "\n".join(lines)


def summary_rows(ends: list[dict]) -> list[list]:
    return [[e["framework"], len(e["history"]), round(e.get("seconds_per_epoch", 0), 1),
             round(e.get("images_per_s", 0), 1), round(e.get("best_val_accuracy", 0), 3),
             "yes" if e["pretrained"] else "NO (random init)", e["device"]]
            for e in ends if e["history"]]


def mistakes_gallery(ends: list[dict]) -> list:
    items = []
    for e in ends:
        for m in e.get("misclassified", [])[:24]:
            try:
                image = data.load_rgb(m["path"])
            except data.ImageError:
                continue
            image.thumbnail((160, 160))
            items.append((image, f"{e['framework']}: {m['true']} → {m['predicted']} ({m['probability']:.2f})"))
    return items


def chart_update(events: list[dict], previous: list[dict]):
    points = sum(e["type"] in ("batch", "epoch") for e in events)
    return gr.Plot(charts.training_figure(events, previous), label=f"Loss and accuracy: {points} points")


def poll(seen: str):
    """Everything the page shows of the newest run; skipped when nothing changed."""
    jobs = shared.jobs()
    view = jobs.view()
    key = f"{view.run_id}:{len(view.events)}:{view.status}"
    if key == seen:
        return [gr.skip()] * 8
    ends = [e for e in view.events if e["type"] == "end"]
    previous = jobs.events(jobs.previous_run()) if jobs.previous_run() else []
    finished = not view.active
    return [
        key, progress_text(view), chart_update(view.events, previous), log_text(view.events),
        summary_rows(ends) if finished else gr.skip(),
        charts.confusion_figure(ends) if finished else gr.skip(),
        mistakes_gallery(ends) if finished else gr.skip(),
        gr.Button(interactive=view.active),
    ]


# ---------------------------------------------------------------- layout

def build(augment_controls: list) -> None:
    d = TrainConfig(data_dir="")
    weights_md = gr.Markdown()
    with gr.Row():
        with gr.Column(scale=1, min_width=320):
            framework = gr.Radio(["keras", "pytorch", "both"], value="both", label="Framework", info=HELP["framework"], elem_id="framework")
            data_dir = gr.Textbox(default_data_dir(), label="Data folder", info=HELP["data_dir"])
            upload = gr.File(file_types=[".zip"], type="filepath", label="... or upload a .zip of class folders")
            with gr.Row():
                check_button = gr.Button("Check data", size="sm")
                fetch_button = gr.Button("Download the AvP images", size="sm")
            data_md = gr.Markdown()
            with gr.Accordion("Settings", open=True):
                epochs = gr.Slider(1, 20, d.epochs, step=1, label="Epochs", info=HELP["epochs"], elem_id="epochs")
                batch_size = gr.Slider(1, 128, d.batch_size, step=1, label="Batch size", info=HELP["batch_size"], elem_id="batch-size")
                lr = gr.Number(d.lr, label="Learning rate", info=HELP["lr"])
                image_size = gr.Slider(32, 448, d.image_size, step=32, label="Image size", info=HELP["image_size"], elem_id="image-size")
                head_units = gr.Slider(8, 1024, d.head_units, step=8, label="Head units", info=HELP["head_units"], elem_id="head-units")
                limit = gr.Number(d.limit, precision=0, minimum=0, label="Limit images per split", info=HELP["limit"])
                use_augment = gr.Checkbox(True, label="Augmentation (settings of the Augment tab)")
                feature_cache = gr.Checkbox(False, label="Fast mode: feature cache", info=HELP["feature_cache"])
                unfreeze = gr.Slider(0, 4, 0, step=1, label="Unfreeze last stages", info=HELP["unfreeze"])
                weights_choice = gr.Radio(["imagenet", "none"], value="imagenet", label="Weights", info=HELP["weights"], elem_id="weights")
                allow_random_init = gr.Checkbox(False, label="Allow random initialisation", info=HELP["allow_random_init"])
                seed = gr.Number(d.seed, precision=0, label="Seed", info=HELP["seed"])
                gr.Markdown("The backbone stays in inference mode while training: its batch-norm statistics "
                            "keep their ImageNet values instead of drifting with each small batch (the seed "
                            "notebook's PyTorch loop let them drift).")
        with gr.Column(scale=2):
            with gr.Row():
                start_button = gr.Button("Start", variant="primary")
                stop_button = gr.Button("Stop", variant="stop", interactive=False)
            progress_md = gr.Markdown("No run yet.", elem_id="train-progress")
            chart = gr.Plot(label="Loss and accuracy", elem_id="train-chart")
            log = gr.Textbox(label="Log", lines=6, max_lines=14, interactive=False, elem_id="train-log")
            summary = gr.Dataframe(headers=["framework", "epochs", "s/epoch", "images/s", "best val acc",
                                            "pretrained", "device"], label="Summary", interactive=False)
            confusion = gr.Plot(label="Confusion matrices (validation)")
            mistakes = gr.Gallery(label="Misclassified validation images", columns=6, height=260)
    uploaded = gr.State(None, time_to_live=6 * 3600, delete_callback=remove_upload)
    seen = gr.State("")
    timer = gr.Timer(POLL_S)

    settings = [framework, data_dir, uploaded, epochs, batch_size, lr, image_size, head_units, limit,
                feature_cache, unfreeze, weights_choice, allow_random_init, seed, use_augment, *augment_controls]
    upload.change(upload_zip, [upload, uploaded], [uploaded, data_md], api_name="upload_data")
    check_button.click(check_data, [data_dir, uploaded], data_md, api_name="check_data")
    fetch_button.click(fetch_avp, data_dir, data_md, api_name="fetch_data", concurrency_limit=1)
    weights_choice.change(weights_text, weights_choice, weights_md, api_visibility="private")
    start_button.click(start, settings, progress_md, api_name="start", concurrency_limit=1,
                       concurrency_id="train").then(lambda: "", None, seen, api_visibility="private")
    stop_button.click(stop, None, progress_md, api_name="stop", concurrency_limit=None)
    outputs = [seen, progress_md, chart, log, summary, confusion, mistakes, stop_button]
    timer.tick(poll, seen, outputs, api_visibility="private", concurrency_limit=None)
    return [(weights_text, None, weights_md), (check_data, [data_dir, uploaded], data_md), (poll, seen, outputs)]


def status_api() -> dict:
    """The newest run, for API clients: status, error, last batch and epoch events, summaries."""
    view = shared.jobs().view()
    pick = lambda kind: [e for e in view.events if e["type"] == kind]
    return {"run_id": view.run_id, "status": view.status, "error": view.error,
            "batches": len(pick("batch")), "epochs": pick("epoch"),
            "summaries": [{k: v for k, v in e.items() if k not in ("misclassified", "history", "config")}
                          for e in pick("end")], "time": time.time()}
