"""Train tab: choose a data set and settings, queue a run, watch it live, stop it.

Each visitor acts on their own workspace (ui/shared.py): their uploads, their one run waiting or
going, their models. Runs wait in a server-wide queue (classroom/jobs.py) and train in separate
processes; the page polls its own run with a gr.Timer, so a closed tab loses nothing. Other
visitors' runs show only as "the trainer is busy" and the length of the queue.

One module per part of the tab: `page` (the layout, `build`), `run` (workspace and settings,
starting and stopping), `datasets` (data sets and uploads), `progress` (the live view and the
poll), `results` (the last finished run) and `api` (the gradio_client API).
"""

from ui.train.datasets import check_data, delete_upload, upload_zip, weights_text
from ui.train.page import build
from ui.train.progress import LOG_CHARS, for_page, log_text, progress_text, render, saved_text
from ui.train.run import open_workspace, start_pressed

__all__ = ["LOG_CHARS", "build", "check_data", "delete_upload", "for_page", "log_text", "open_workspace",
           "progress_text", "render", "saved_text", "start_pressed", "upload_zip", "weights_text"]
