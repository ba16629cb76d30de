"""Train tab: the API (gradio_client): a workspace, its data sets, and starting, stopping and
following a run. Each call names the caller's workspace; see the README's API section.
"""

from __future__ import annotations

import time

import gradio as gr

from classroom.people import person_of
from ui import shared
from ui.train.progress import for_page
from ui.train.run import open_or_create, page_workspace, stop_pressed, submit


def workspace_api(request: gr.Request, workspace: str = "") -> str:
    """Your workspace id: the one given if it is still valid, else a new one. Keep it, and pass it
    to every other call: it is the key to your data sets, runs and models."""
    return open_or_create(workspace, request).id


def datasets_api(workspace: str) -> list[str]:
    """The data sets you may train on, by the name /start takes ('server/...' or 'upload/...')."""
    return [value for _, value in shared.dataset_choices(page_workspace(workspace))]


def start_api(request: gr.Request, workspace: str, settings: dict) -> dict:
    """Queue a training run. `settings`: TrainConfig fields by name, e.g.
    {"dataset": "server/avp", "framework": "pytorch", "epochs": 1, "image_size": 64,
    "feature_cache": true, "augment": {"enabled": false}}; omitted fields keep their defaults.
    Returns the run's status (as /training_status)."""
    submit(page_workspace(workspace), settings, person_of(request))
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
