"""Teacher tab, the Warm-up: before class, one button trains the reference models at the class's
defaults and fills the feature bank for them (trainer/warm.py), so that the first student's default
run takes its backbone features from the bank: seconds, not minutes.

The warm-up is a run like a student's: it waits in the same queue and trains in a warm worker
(classroom/jobs.py), in a workspace kept for the teacher (its id in the app's state folder). When it
has finished, both frameworks complete, its models are installed as the reference models
(`AVP_MODELS_DIR`) all at once (trainer/store.py `install`), and the loaded reference models are
dropped so Predict shows the new ones: the one way the app writes reference models. A warm-up that
fails, is stopped or runs out of the server's time leaves the previous reference models as they were.

Every handler first asks for the teacher's token (classroom/teacher.py `require`) and shows a
refusal without it. Where ImageNet weights cannot be had, the warm-up needs the "Allow random
initialisation" tick, and its result says that the reference models are randomly initialised.

    warmup.build(token)     # inside a gr.Blocks: token is the gr.BrowserState with the teacher's token
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import gradio as gr

from classroom import cost, runs, teacher
from classroom.jobs import ACTIVE, STOP_GRACE_S, Busy, Jobs, QueueFull, RunView, TooLong
from classroom.people import OverBudget
from classroom.workspace import QuotaExceeded, Workspace
from trainer import warm, weights
from trainer.config import TrainConfig
from ui import shared, text
from ui.train import run
from ui.train.progress import fmt_seconds, for_page

PERSON = "teacher"  # who the warm-up's runs are queued for (budgets are per person)
SPACE_FILE = "teacher-workspace"  # in the app's state folder: the id of the teacher's workspace
INSTALLED = "installed.json"  # in a warm-up's run folder once it has been dealt with
POLL_S = 2.0
BAR = 20  # characters of the text progress bar
REFUSALS = (ValueError, TypeError, Busy, QueueFull, OverBudget, QuotaExceeded, TooLong, weights.WeightsUnavailable)
_install_lock = threading.Lock()


def state_dir() -> Path:
    """The app's own state folder (the queue's, beside the workspaces; never swept)."""
    return shared.WORKSPACES_DIR / ".keep-queue"


def refusal(token: object) -> str | None:
    """None for the teacher; otherwise the refusal, as the page shows it."""
    try:
        teacher.require(token, shared.workspaces().secret())
    except teacher.NotTeacher as error:
        return f"**{text.md(str(error), 300)}**"
    return None


def teacher_space() -> Workspace:
    """The workspace kept for the teacher's warm-ups (a new one when it expired)."""
    file = state_dir() / SPACE_FILE
    try:
        space = shared.workspaces().open(file.read_text().strip())
    except OSError:
        space = None
    if space is None:
        space = shared.workspaces().create(PERSON)
        space.set_board_name("Warm-up (the teacher)")  # its runs on the class board
        file.parent.mkdir(parents=True, exist_ok=True)
        temporary = file.with_suffix(".tmp")
        temporary.write_text(space.id)
        os.replace(temporary, file)
    return space


def warm_config(space: Workspace, allow_random_init: bool = False) -> TrainConfig:
    """The class defaults (classroom/teacher.py ClassSettings; empty: the Train tab's defaults on the
    server's first data set) as the settings of a warm-up, both frameworks. ValueError when they do
    not make a run (an unknown data set, say)."""
    settings = {k: v for k, v in teacher.ClassSettings(state_dir()).defaults().items() if k not in run.SERVER_CHOSEN}
    first = next(iter(shared.server_datasets()), None)
    if "dataset" not in settings and first is not None:
        settings["dataset"] = f"server/{first}"
    settings["framework"] = "both"
    if allow_random_init:
        settings["allow_random_init"] = True
    return run.config_for(space, settings)


# ---------------------------------------------------------------- handlers

def show(token: object) -> tuple:
    """The section's state: estimate, the random-init tick (shown where it is needed), progress,
    result, the button. Installs a finished warm-up's models if nobody has yet."""
    refused = refusal(token)
    if refused:
        return refused, gr.Checkbox(visible=False), "", "", gr.Button(interactive=False)
    space = teacher_space()
    view = shared.jobs().view(space)
    finish(space, view)
    try:
        config = warm_config(space)
        needs_tick = bool(warm.random_init_frameworks(config))
        estimate = estimate_text(config)
    except REFUSALS as error:
        needs_tick, estimate = False, f"**The class defaults cannot be trained:** {text.md(for_page(str(error)), 400)}"
    tick = gr.Checkbox(visible=needs_tick)
    return estimate, tick, progress_text(view), result_text(space, view), gr.Button(interactive=not view.active)


def start(token: object, allow_random_init: bool = False) -> str:
    """Warm up pressed: queue the warm-up (the cheap refusals first), or say why not."""
    refused = refusal(token)
    if refused:
        return refused
    space = teacher_space()
    try:
        config, _ = warm.prepare(warm_config(space, bool(allow_random_init)))
        shared.jobs().check(space, PERSON)  # a warm-up already waiting or going, a full queue
        train_images, val_images = shared.image_counts(config.data_dir)
        units = cost.cost_units(config, train_images, val_images)
        shared.jobs().check_cost(config, units, train_images)
        shutil.rmtree(space.models, ignore_errors=True)  # only this run's models are ever installed
        space.models.mkdir(exist_ok=True)
        shared.jobs().submit(space, config, PERSON, units)
    except REFUSALS as error:
        return f"**Not started:** {text.md(for_page(str(error)), 600)}"
    threading.Thread(target=watch, args=(space, shared.jobs(), shared.MODELS_DIR), daemon=True,
                     name="avp-warm-up").start()
    return progress_text(shared.jobs().view(space))


def stop(token: object) -> str:
    """Stop the warm-up (after its current batch) or take it out of the queue."""
    refused = refusal(token)
    if refused:
        return refused
    outcome = shared.jobs().cancel(teacher_space())
    return {"cancelled": "Taken out of the queue.", "stopping": "Stopping after the current batch ...",
            None: "No warm-up is waiting or going."}[outcome]


def watch(space: Workspace, jobs: Jobs, models: Path) -> None:
    """Install the warm-up's models as soon as it finishes, whether or not a page is polling."""
    deadline = time.monotonic() + jobs.max_run_s + STOP_GRACE_S + 3600  # its wait in the queue too
    while time.monotonic() < deadline:
        view = jobs.view(space)
        if view.status not in ACTIVE:
            finish(space, view, models)
            return
        time.sleep(POLL_S)


def finish(space: Workspace, view: RunView, models: Path | None = None) -> None:
    """A warm-up that has ended is dealt with once: complete, its models become the reference models
    (the loaded ones dropped); otherwise the reference models stay, and the reason is kept."""
    if not view.run_id or view.status in ACTIVE or view.status == "none":
        return
    folder = space.runs / view.run_id
    with _install_lock:
        if (folder / INSTALLED).exists():
            return
        config = runs.read_config(folder)
        ends = {e["framework"]: e for e in view.events if e["type"] == "end"}
        outcome = {"at": datetime.now(UTC).isoformat(timespec="seconds"), "installed": False}
        if view.status == "done" and warm.complete(ends, config):
            try:
                models = models or shared.MODELS_DIR
                warm.install({fw: space.models / fw for fw in config.frameworks}, models)
                shared.forget_predictor(models)
                outcome["installed"] = True
            except (OSError, ValueError) as error:
                outcome["reason"] = f"the models could not be installed: {type(error).__name__}"
        else:
            outcome["reason"] = {"stopped": "it was stopped", "cancelled": "it was cancelled",
                                 "failed": "it failed"}.get(view.status, "the server's time for one run was up")
        (folder / INSTALLED).write_text(json.dumps(outcome))


# ---------------------------------------------------------------- what the section says

def estimate_text(config: TrainConfig) -> str:
    train_images, val_images = shared.image_counts(config.data_dir)
    units = cost.cost_units(config, train_images, val_images)
    seconds = shared.jobs().estimate_units_s(units)
    return (f"Trains the reference models at the class defaults ({cost.describe(config, train_images)}) and "
            f"keeps their features for the students' runs: {cost.minutes_text(seconds)} on this server.")


def fraction_done(events: list[dict], config_frameworks: list[str]) -> tuple[float, dict]:
    """(share of the warm-up's batches done, the newest batch event)."""
    batch = runs.latest(events, "batch")
    done = sum(1 for e in events if e["type"] == "end")
    if not batch or not config_frameworks:
        return done / max(1, len(config_frameworks)), batch
    index = config_frameworks.index(batch["framework"]) if batch["framework"] in config_frameworks else done
    within = ((batch["epoch"] - 1) * batch["batches"] + batch["batch"]) / (batch["epochs"] * batch["batches"])
    return min(1.0, (index + within) / len(config_frameworks)), batch


def progress_text(view: RunView) -> str:
    if view.status == "none":
        return "No warm-up yet."
    if view.status == "queued":
        return (f"**Waiting in the queue: number {view.position}.** Starts in about "
                f"{fmt_seconds(view.start_in_s or 0)}.")
    if view.status == "starting":
        return "**Starting** (loading libraries and images) ..."
    if not view.active:
        return {"done": "**Finished.**", "stopped": "**Stopped.**", "cancelled": "**Cancelled before it started.**",
                "failed": "**Failed.**"}.get(view.status, "")
    begin = runs.latest(view.events, "begin")
    share, batch = fraction_done(view.events, begin.get("frameworks", []))
    filled = round(share * BAR)
    line = f"`{'█' * filled}{'░' * (BAR - filled)}` **{share:.0%}**"
    if batch:
        line += (f" · {batch['framework']}: epoch {batch['epoch']}/{batch['epochs']}, batch "
                 f"{batch['batch']}/{batch['batches']} · {batch['images_per_s']:.1f} images/s · "
                 f"{batch['framework']} done in about {fmt_seconds(batch['eta_s'])}")
    return ("**Stopping** after the current batch ... " if view.status == "stopping" else "**Warming up** ") + line


def result_text(space: Workspace, view: RunView) -> str:
    if not view.run_id or view.active:
        return ""
    try:
        outcome = json.loads((space.runs / view.run_id / INSTALLED).read_text())
    except (OSError, ValueError):
        return ""
    when = text.readable_time(outcome.get("at"))
    if not outcome.get("installed"):
        error = f" ({text.md(for_page(view.error), 300)})" if view.error else ""
        return (f"**The warm-up did not finish** ({text.md(outcome.get('reason', ''), 200)}){error}: the "
                f"reference models were left as they were ({when}).")
    ends = [e for e in view.events if e["type"] == "end"]
    accuracy = ", ".join(f"{e['framework']} {e.get('val_accuracy', 0):.1%}" for e in ends)
    bank = [f"{e['framework']}: {text.md(e['message'], 200)}" for e in view.events if e["type"] == "bank"]
    lines = [f"**Reference models installed** {when}: validation accuracy {accuracy}. Predict shows them now."]
    if any(not e.get("pretrained", True) for e in ends):
        lines.append(f"**Note:** {warm.RANDOM_INIT_NOTE}.")
    if bank:
        lines.append(f"Feature bank: {'; '.join(bank)}. A student's run at the class defaults takes its "
                     "features from the bank.")
    else:
        lines.append("The feature bank is off on this server (AVP_CACHE_DIR=off): students' runs are not faster.")
    return "\n\n".join(lines)


# ---------------------------------------------------------------- layout

def build(token: gr.BrowserState, timer: gr.Timer | None = None) -> None:
    """The Warm-up section, inside a gr.Blocks (the Teacher tab's); `token` holds the teacher's token;
    `timer`, when given, polls it (the Teacher tab's, on only while the teacher is signed in)."""
    gr.Markdown("### Warm-up before class")
    estimate = gr.Markdown(elem_id="warmup-estimate")
    allow = gr.Checkbox(False, label="Allow random initialisation",
                        info="ImageNet weights cannot be had on this server: the reference models would "
                             "start from random weights (they learn far less)", visible=False,
                        elem_id="warmup-allow-random-init")
    with gr.Row():
        button = gr.Button("Warm up", variant="primary", elem_id="warmup-start", min_width=120)
        stop_button = gr.Button("Stop warm-up", variant="stop", elem_id="warmup-stop", min_width=120)
    progress = gr.Markdown(elem_id="warmup-progress")
    result = gr.Markdown(elem_id="warmup-result")
    timer = timer or gr.Timer(POLL_S)
    outputs = [estimate, allow, progress, result, button]
    gr.on([token.change, timer.tick], show, token, outputs, api_visibility="private", concurrency_limit=None,
          show_progress="hidden")
    button.click(start, [token, allow], progress, api_visibility="private", concurrency_limit=1,
                 concurrency_id="warm-up")
    stop_button.click(stop, token, progress, api_visibility="private", concurrency_limit=None)
