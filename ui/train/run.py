"""Train tab: the visitor's workspace and settings, and starting and stopping their run.

Settings travel by name: every setting widget reaches `start_pressed` as a keyword argument named
after its TrainConfig field (`augment.<field>` for the augmentation), and the API's /start takes the
same names as one JSON object (`config_for`).
"""

from __future__ import annotations

import json

import gradio as gr

from classroom.jobs import Busy, QueueFull, RunView
from classroom.workspace import QuotaExceeded, Workspace, folder_bytes
from trainer import data, weights
from trainer.config import TrainConfig
from ui import shared
from ui.train.progress import for_page, progress_text

MODEL_BYTES = 100 * 2**20  # a saved ResNet-50 (either framework), for the quota check before a run
SERVER_CHOSEN = ("data_dir", "out_dir", "device", "precision")  # settings the app decides, not visitors


class PageError(gr.Error):
    """A refusal shown to the visitor as a pop-up."""


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
