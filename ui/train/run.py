"""Train tab: the visitor's workspace and settings, and starting and stopping their run.

Settings travel by name: every setting widget reaches `start_pressed` as a keyword argument named
after its TrainConfig field (`augment.<field>` for the augmentation), and the API's /start takes the
same names as one JSON object (`config_for`), within the same ranges as the page's sliders (RANGES),
narrowed by the teacher's caps for the class (`allowed_ranges`; the page's sliders show them too). A
new student's form starts from the class defaults the teacher set; their own saved settings win.

Every handler here is told who is asking (`gr.Request`, classroom/people.py): budgets are per person.
Start refuses first what needs no data (a malformed setting, an unknown data set, a busy workspace,
a full queue, a person's runs, a run past the server's cap, the disk), and only then checks the
data set's images.
"""

from __future__ import annotations

import json

import gradio as gr

from classroom import cost, teacher
from classroom.jobs import Busy, QueueFull, RunView, TooLong
from classroom.people import OverBudget, person_of
from classroom.workspace import QuotaExceeded, Workspace, folder_bytes
from trainer import data, weights
from trainer.config import TrainConfig, server_precision
from ui import shared
from ui.train.progress import for_page, progress_text

MODEL_BYTES = 100 * 2**20  # a saved ResNet-50 (either framework), for the quota check before a run
SERVER_CHOSEN = ("data_dir", "out_dir", "device", "precision")  # settings the app decides, not visitors
# The page's slider ranges, which the API keeps too (TrainConfig alone allows more, for the CLI); what
# is past the server's cap for one run within them is refused with the estimate (classroom/cost.py).
RANGES = {"epochs": (1, 20), "batch_size": (1, 128), "image_size": (32, 448), "head_units": (8, 1024),
          "unfreeze": (0, 4)}
REFUSALS = (ValueError, TypeError, Busy, QueueFull, QuotaExceeded, OverBudget, TooLong)


class PageError(gr.Error):
    """A refusal shown to the visitor as a pop-up."""


def open_workspace(workspace_id: str | None, request: gr.Request | None = None):
    """On page load: the visitor's workspace (a new one if theirs expired), their data sets and the
    settings of their last Start (else the class defaults). Returns the id to keep in the browser,
    then the widgets' values by name, the capped sliders' ranges and the caps' sentence ("caps")."""
    space = open_or_create(workspace_id, request)
    saved = {**flatten(shared.class_settings().defaults()), **flatten(load_settings(space))}
    choices = shared.dataset_choices(space)
    values = [c[1] for c in choices]
    dataset = saved.get("dataset") if saved.get("dataset") in values else (values[0] if values else None)
    form = {**starting_weights(), **saved, "dataset": gr.Dropdown(choices=choices, value=dataset)}
    ranges = allowed_ranges()
    for name in (name for name in teacher.CAPPED if ranges[name] != RANGES[name]):  # the sliders stop at a cap
        low, high = ranges[name]
        value = saved.get(name)
        kept = {"value": min(max(value, low), high)} if isinstance(value, (int, float)) else {}
        form[name] = (gr.Slider(value=low, interactive=False) if low == high  # capped to one value: fixed
                      else gr.Slider(minimum=low, maximum=high, interactive=True, **kept))
    form["caps"] = caps_text(ranges)
    return space.id, form


def allowed_ranges() -> dict[str, tuple[int, int]]:
    """The settings' ranges for a student here: the page's, within the teacher's caps."""
    return teacher.narrow(RANGES, shared.class_settings().caps())


def caps_text(ranges: dict[str, tuple[int, int]]) -> str:
    capped = [f"{name.replace('_', ' ')} {low}–{high}" for name, (low, high) in ranges.items()
              if (low, high) != RANGES[name]]
    return f"The teacher caps this class's runs: {', '.join(capped)}." if capped else ""


def starting_weights() -> dict:
    """The Weights choice a visitor starts with, unless their saved settings say otherwise: none
    with random initialisation allowed where ImageNet weights cannot be had (a first Start would
    be refused; the page says why, datasets.weights_text); else the form's own (imagenet)."""
    if weights.default_choice() == "none":  # what the warm workers compile for (trainer/runner.py)
        return {"weights": "none", "allow_random_init": True}
    return {}


def open_or_create(workspace_id: object, request: gr.Request | None) -> Workspace:
    """The visitor's workspace, or a new one for whoever is asking; PageError saying what to do when
    their budget of new workspaces is spent (or the server is full)."""
    try:
        return shared.workspaces().open_or_create(workspace_id, person_of(request))
    except (OverBudget, QuotaExceeded) as error:
        raise PageError(for_page(str(error))) from None


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
    config = TrainConfig.from_dict({**values, "data_dir": str(folder), "out_dir": str(space.models),
                                     "precision": server_precision()}).validate()
    ranges = allowed_ranges()
    outside = [f"{name} must be from {low} to {high} here"
               + (" (the teacher's cap for this class)" if (low, high) != RANGES[name] else "")
               + f", got {getattr(config, name)}"
               for name, (low, high) in ranges.items() if not low <= getattr(config, name) <= high]
    if outside:
        raise ValueError("invalid training settings: " + "; ".join(outside))
    return config


def estimate(config: TrainConfig) -> tuple[float, float, int]:
    """(cost units, estimated seconds on this server, training images) of a run, from the data set's
    image counts (kept when it was checked: nothing decoded)."""
    train_images, val_images = shared.image_counts(config.data_dir)
    units = cost.cost_units(config, train_images, val_images)
    return units, shared.jobs().estimate_units_s(units), train_images


def submit(space: Workspace, settings: dict, person: str | None = None) -> RunView:
    """Check everything a run needs, the cheap refusals first, then queue it. Raises PageError
    saying what is wrong."""
    person = space.person if person is None else person
    try:
        config = config_for(space, settings)  # malformed settings, an unknown data set: no data read
        shared.jobs().check(space, person)  # busy, the queue full, this person's runs
        units, _, train_images = estimate(config)
        shared.jobs().check_cost(config, units, train_images)  # past the server's cap for one run
        kept = folder_bytes(space.models)  # the models this run replaces (this workspace's own folder)
        space.require_free(MODEL_BYTES * len(config.frameworks) - kept, "saving the trained models")
        if config.weights == "imagenet" and not config.allow_random_init:
            missing = [fw for fw in config.frameworks if weights.status(fw) == "unavailable"]
            if missing:
                raise ValueError(f"ImageNet weights for {', '.join(missing)} are not available here (no "
                                 "cache, no internet): tick 'Allow random initialisation' or choose weights none")
        data.discover(config.data_dir, config.seed)  # the images themselves, last
        shared.jobs().submit(space, config, person, units)
    except REFUSALS as error:
        raise PageError(for_page(str(error))) from None
    return shared.jobs().view(space)


def estimate_text(workspace_id: str | None, **values) -> tuple:
    """How long a run of these settings would take here, or why it could not start: in short on the
    Start button ("Start (~4 min)"), and in a sentence."""
    space = shared.workspaces().open(workspace_id)
    if space is None:
        return gr.Button(value="Start"), ""
    try:
        config = config_for(space, nest(values))
        units, seconds, train_images = estimate(config)
    except (ValueError, TypeError):
        return gr.Button(value="Start"), ""
    minutes = round(seconds / 60)
    button = gr.Button(value=f"Start (~{minutes} min)" if minutes else "Start (<1 min)")  # one line on a phone
    if seconds > shared.jobs().max_run_s:
        return button, (f"**Too long for this server:** {cost.minutes_text(seconds)} (the most is "
                        f"{shared.jobs().max_run_s / 60:.0f} minutes)")
    return button, f"{cost.minutes_text(seconds).capitalize()} on this server ({cost.describe(config, train_images)})"


def page_workspace(workspace_id: str | None) -> Workspace:
    try:
        return shared.workspace(workspace_id)
    except shared.NoWorkspace as error:
        raise PageError(str(error)) from None


def start_pressed(workspace_id: str | None, request: gr.Request | None = None, **values) -> str:
    """Start pressed: keep the settings (a reload brings them back), then queue the run."""
    space = page_workspace(workspace_id)
    settings = nest(values)
    space.settings_file.write_text(json.dumps(settings)[:100_000])
    view = submit(space, settings, person_of(request))
    return progress_text(view, shared.jobs().overview())


def stop_pressed(workspace_id: str | None) -> str:
    outcome = shared.jobs().cancel(page_workspace(workspace_id))
    return {"cancelled": "Taken out of the queue.", "stopping": "Stopping after the current batch ...",
            None: "You have no run waiting or training."}[outcome]
