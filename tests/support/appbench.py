"""The app's figures for the whole bench (tests/bench_app.py): start-up, first chart point, peak memory.

Drives a live app over HTTP (gradio_client), as a visitor's browser would, through the one launcher
(tests/support/launch.py). Lives beside the tests because it needs the repository's app.py and the
test tools, not the trainer library.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from support.launch import App, start_app
from support.visitor import Visitor
from trainer.augment import AugmentConfig
from trainer.config import TrainConfig

APP_STARTS = 3  # the app's start-up is the median of this many starts
PAGE_POLL_S = 1.0  # how often an open Train tab asks for the run's progress (ui/train/page.py POLL_S)


def app_figures(models: str, config: TrainConfig) -> dict:
    """The app's figures, in seconds and MB:
    - app_ready_each_s: from `python app.py` to the page answering, each of APP_STARTS starts;
    - warm_worker_ready_s: from `python app.py` to its warm worker ready (frameworks imported,
      backbone compiled for the defaults);
    - first_chart_point_s: from Start at the Train tab's defaults (both frameworks, 224 px, every
      image, augmentation on; weights none, which trains the same network) to the first chart point,
      the warm worker ready (as when a lesson starts); first_chart_point_at_start_s: the same, Start
      pressed the moment the page first answers (the warm worker still starting);
    - first_run_s: Start -> finished for such a default run, the feature bank cold;
    - first_point_warm_s, second_run_s: Start -> first chart point and -> finished for an identical
      second run (a warm worker, the bank warm);
    - peak_rss_mb: the app's peak memory after those, a feature-cache run, and predictions with both."""
    figures = {}
    with tempfile.TemporaryDirectory() as workspaces, tempfile.TemporaryDirectory() as bank:
        folders = {"models_dir": models, "workspaces_dir": workspaces, "data_dir": config.data_dir,
                   "env": {"AVP_CACHE_DIR": bank, "AVP_PRECISION": config.precision}}
        ready = []
        for start in range(APP_STARTS - 1):
            app = start_app(**folders)
            if not start:  # a Start the moment the page answers: the warm worker still importing
                visitor = Visitor(app.url)
                figures["first_chart_point_at_start_s"] = first_chart_point(visitor, visitor.datasets()[0])
            app.stop()
            ready.append(app.ready_s)
        app = start_app(**folders)
        figures["app_ready_each_s"] = [*ready, app.ready_s]
        try:
            figures["warm_worker_ready_s"] = app.ready_s + warm_worker_ready(Path(workspaces))
            visitor = Visitor(app.url)
            dataset = visitor.datasets()[0]
            figures["first_chart_point_s"] = first_chart_point(visitor, dataset)
            figures["first_run_s"], _ = timed_run(visitor, dataset)
            figures["second_run_s"], figures["first_point_warm_s"] = timed_run(visitor, dataset)
            visitor.start(defaults().with_changes(epochs=1, image_size=config.image_size, limit=config.limit,
                                                  feature_cache=True, augment=AugmentConfig(enabled=False)), dataset)
            visitor.wait(timeout_s=1800)
            predict_and_preview(visitor, next(Path(config.data_dir).rglob("*.jpg")))
            figures["peak_rss_mb"] = peak_rss_mb(app)
        finally:
            app.stop()
    return figures


def warm_worker_ready(workspaces: Path, timeout_s: float = 600) -> float:
    """Seconds from now until the app's warm worker says it is ready (frameworks imported, backbone
    compiled): when a class's first student arrives, a Space has long been up."""
    log = workspaces / ".keep-queue" / "warm-workers.log"
    started = time.perf_counter()
    while time.perf_counter() - started < timeout_s:
        if log.is_file() and ": ready" in log.read_text(errors="replace"):
            return time.perf_counter() - started
        time.sleep(0.1)
    raise TimeoutError(f"no warm worker was ready after {timeout_s:.0f} s: {log}")


def timed_run(visitor: Visitor, dataset: str) -> tuple[float, float]:
    """A default run to its end: (seconds Start -> finished, seconds Start -> first chart point)."""
    started = time.perf_counter()
    visitor.start(defaults(), dataset)
    visitor.wait(lambda status: status["batches"] > 0, timeout_s=1800, every_s=0.05)
    first_point = time.perf_counter() - started
    # Then at the Train tab's own pace (ui/train/page.py POLL_S): asking five times a second took
    # the 2-core machine's CPU from the run it was timing.
    status = visitor.wait(timeout_s=1800, every_s=PAGE_POLL_S)
    assert status["status"] == "done", status
    return time.perf_counter() - started, first_point


def defaults() -> TrainConfig:
    """The Train tab's defaults (TrainConfig's), with weights none: the same network, offline."""
    return TrainConfig(data_dir="", weights="none", allow_random_init=True)


def predict_and_preview(visitor: Visitor, image_path: Path) -> None:
    """What a visitor does after training: three predictions with both models, one augmentation preview."""
    for _ in range(3):
        visitor.predict(image_path)
    visitor.preview(image_path, AugmentConfig(shear_deg=10, zoom_min=0.8, zoom_max=1.2), seed=1)


def first_chart_point(visitor: Visitor, dataset: str, timeout_s: float = 300) -> float:
    """Start at the default settings, wait for the first batch's loss (the chart's first point), Stop."""
    started = time.perf_counter()
    visitor.start(defaults(), dataset)
    visitor.wait(lambda status: status["batches"] > 0, timeout_s=timeout_s, every_s=0.1)
    seconds = time.perf_counter() - started
    visitor.stop()
    visitor.wait(timeout_s=600)
    return seconds


def peak_rss_mb(app: App) -> float:
    """The app process's peak resident memory so far (Linux /proc), in MB; NaN where unknown."""
    for line in Path(f"/proc/{app.process.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")
