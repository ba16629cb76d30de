"""One visitor of a live app, as an API client (gradio_client) with a workspace of its own: what the
API tests, the classroom load test and the bench drive the app with.

    student = Visitor(app.url)
    student.start(TrainConfig(epochs=1, weights="none"), dataset="server/avp")
    student.wait(lambda status: status["status"] == "done")
    student.predict("alien.jpg")
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from gradio_client import Client, handle_file

from classroom.jobs import ACTIVE
from trainer.augment import AugmentConfig
from trainer.config import TrainConfig

SERVER_CHOSEN = ("data_dir", "out_dir", "device", "precision")  # the app decides these


def settings(config: TrainConfig, dataset: str) -> dict:
    """The one settings object /start takes: a TrainConfig's fields by name, the data set by name."""
    return {**{k: v for k, v in config.to_dict().items() if k not in SERVER_CHOSEN}, "dataset": dataset}


class Visitor:
    def __init__(self, url: str, workspace: str = ""):
        self.client = Client(url, verbose=False)
        self.workspace = self.client.predict(workspace, api_name="/workspace")

    def call(self, *args, api_name: str):
        return self.client.predict(self.workspace, *args, api_name=api_name)

    def start(self, config: TrainConfig, dataset: str) -> dict:
        return self.call(settings(config, dataset), api_name="/start")

    def status(self) -> dict:
        return self.call(api_name="/training_status")

    def stop(self) -> str:
        return self.call(api_name="/stop")

    def datasets(self) -> list[str]:
        return self.call(api_name="/datasets")

    def upload(self, zip_path: str | Path) -> tuple[str | None, str]:
        """Upload a .zip data set; (its name for /start or None when refused, the page's text)."""
        chosen, text = self.call(handle_file(str(zip_path)), api_name="/upload_data")
        return (chosen.get("value") if isinstance(chosen, dict) else None), text

    def predict(self, *images: str | Path) -> list[dict]:
        return self.call([handle_file(str(image)) for image in images], api_name="/predict")

    def preview(self, image: str | Path, augmentation: AugmentConfig | None = None, seed: int = 0) -> tuple:
        """The Augment tab's answer (needs no workspace): both sides' samples, views and code."""
        named = (augmentation or AugmentConfig()).to_dict()
        return self.client.predict(handle_file(str(image)), named, seed, api_name="/preview")

    def wait(self, condition: Callable[[dict], bool] = lambda s: s["status"] not in ACTIVE,
             timeout_s: float = 600, every_s: float = 0.3) -> dict:
        """Poll the visitor's run until `condition(status)` (default: it ended); TimeoutError after
        `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while True:
            status = self.status()
            if condition(status):
                return status
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout_s} s; last status: {status}")
            time.sleep(every_s)
