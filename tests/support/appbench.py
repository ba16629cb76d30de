"""The app's figures for `python -m trainer bench`: start-up, first chart point, peak memory.

Drives a live app over HTTP (gradio_client), as a visitor's browser would, through the one launcher
(tests/support/launch.py). Lives beside the tests because it needs the repository's app.py and the
test tools, not the trainer library; trainer/bench.py imports it when run from a checkout.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from gradio_client import Client, handle_file

from support.launch import App, start_app
from trainer.augment import AugmentConfig
from trainer.config import TrainConfig
from trainer.jobs import ACTIVE

APP_STARTS = 3  # the app's start-up is the median of this many starts


def app_figures(models: str, config: TrainConfig) -> tuple[list[float], float, float]:
    """Seconds from `python app.py` to the page answering (each start); seconds from Start at the
    default settings (both frameworks, 224 px, every image, augmentation on; weights none, which
    trains the same network) to the first chart point; the app's peak memory (MB) after a training
    of both frameworks (feature cache) and predictions with both models."""
    with tempfile.TemporaryDirectory() as runs:
        folders = {"models_dir": models, "runs_dir": runs, "data_dir": config.data_dir}
        ready = []
        for _ in range(APP_STARTS - 1):
            app = start_app(**folders)
            app.stop()
            ready.append(app.ready_s)
        app = start_app(**folders)
        ready.append(app.ready_s)
        try:
            client = Client(app.url, verbose=False)
            first_point = first_chart_point(client, config.data_dir)
            start_run(client, config.data_dir, epochs=1, image_size=config.image_size, limit=config.limit,
                      feature_cache=True, augment=AugmentConfig(enabled=False))
            wait_until_done(client)
            predict_and_preview(client, next(Path(config.data_dir).rglob("*.jpg")))
            peak = peak_rss_mb(app)
        finally:
            app.stop()
    return ready, first_point, peak


def predict_and_preview(client, image_path: Path) -> None:
    """What a visitor does after training: three predictions with both models, one augmentation preview."""
    image = handle_file(str(image_path))
    for _ in range(3):
        client.predict([image], api_name="/predict")
    client.predict(image, 10, 0.8, 1.2, 0, 0, True, False, 1, api_name="/preview")


def start_run(client, data_dir: str, **changes) -> None:
    """Press Start through the API: the Train tab's defaults (TrainConfig's) unless changed, weights none."""
    c = TrainConfig(data_dir=data_dir, weights="none", allow_random_init=True).with_changes(**changes)
    a = c.augment
    client.predict(c.framework, c.data_dir, c.epochs, c.batch_size, c.lr, c.image_size, c.head_units, c.limit,
                   c.feature_cache, c.unfreeze, c.weights, c.allow_random_init, c.seed, a.enabled, a.shear_deg,
                   a.zoom_min, a.zoom_max, a.rotation_deg, a.shift, a.hflip, a.vflip, api_name="/start")


def first_chart_point(client, data_dir: str, timeout_s: float = 300) -> float:
    """Start at the default settings, wait for the first batch's loss (the chart's first point), Stop."""
    started = time.perf_counter()
    start_run(client, data_dir)
    while client.predict(api_name="/training_status")["batches"] == 0:
        if time.perf_counter() - started > timeout_s:
            raise TimeoutError(f"no chart point {timeout_s} s after Start")
        time.sleep(0.1)
    seconds = time.perf_counter() - started
    client.predict(api_name="/stop")
    wait_until_done(client)
    return seconds


def wait_until_done(client, timeout_s: float = 1800) -> None:
    """Until the run has ended (done, stopped or failed); TimeoutError after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while client.predict(api_name="/training_status")["status"] in ACTIVE:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the run had not ended {timeout_s} s after it was awaited")
        time.sleep(0.5)


def peak_rss_mb(app: App) -> float:
    """The app process's peak resident memory so far (Linux /proc), in MB; NaN where unknown."""
    for line in Path(f"/proc/{app.process.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")
