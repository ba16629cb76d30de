"""Start the app as a visitor meets it (`python app.py`) on a free localhost port, and stop it.

The one launcher for everything that drives a live app: the API and browser tests, the load test
and the app timings of `python -m trainer bench` (tests/support/appbench.py). Each launch gets its
own reference-models and workspaces folders, so nothing touches the repository's models/ or
workspaces/.

    app = start_app(models_dir=tmp / "models", workspaces_dir=tmp / "workspaces", data_dir=data)
    try:
        Client(app.url).predict(...)
    finally:
        app.stop()
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A localhost TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class App:
    process: subprocess.Popen
    url: str  # http://127.0.0.1:<port>/
    ready_s: float  # seconds from the start of the process until its page answered

    def stop(self, timeout_s: float = 30) -> None:
        """Ask the app to end (SIGTERM); kill it if it has not ended within `timeout_s`."""
        self.process.terminate()
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout_s)


def start_app(models_dir: str | Path, workspaces_dir: str | Path, data_dir: str | Path | None = None,
              log: str | Path | None = None, env: dict[str, str] | None = None, timeout_s: float = 120) -> App:
    """`python app.py` from the repository root; returns once its page answers (else TimeoutError).

    `env` adds variables to this process's environment; `log` receives the app's output (default:
    discarded).
    """
    port = free_port()
    variables = {**os.environ, **(env or {}), "GRADIO_SERVER_PORT": str(port),
                 "AVP_MODELS_DIR": str(models_dir), "AVP_WORKSPACES_DIR": str(workspaces_dir)}
    if data_dir is not None:
        variables["AVP_DATA_DIR"] = str(data_dir)
    output = open(log, "w") if log else subprocess.DEVNULL
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=variables, stdout=output,
                               stderr=subprocess.STDOUT)
    if log:
        output.close()  # the child has its own copy
    app = App(process, f"http://127.0.0.1:{port}/", float("nan"))
    try:
        app.ready_s = wait_for_page(app.url, started, timeout_s, process)
    except BaseException:
        app.stop()
        raise
    return app


def wait_for_page(url: str, started: float, timeout_s: float = 120, process: subprocess.Popen | None = None) -> float:
    """Seconds from `started` (a perf_counter reading) until `url` answers 200.

    TimeoutError after `timeout_s`; RuntimeError at once if `process` (the server) has ended.
    """
    while time.perf_counter() - started < timeout_s:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the app ended (exit status {process.returncode}) before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return time.perf_counter() - started
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"{url} did not answer within {timeout_s} s")


def toy_app(base: Path, per_class: tuple[int, int] = (24, 4), reference: str | None = "pytorch",
            env: dict[str, str] | None = None) -> tuple[App, Path]:
    """The app on generated images (the server data set `toy`), with reference models of
    `reference` ("keras", "pytorch", "both" or None) trained as the CLI trains them (random init,
    tiny), its output in `base / "app.log"`: (the running app, the data set's folder)."""
    from conftest import make_dataset
    from trainer import runner
    from trainer.config import TrainConfig
    data = make_dataset(base / "data" / "toy", per_class=per_class, size=40)
    if reference:
        runner.train(TrainConfig(framework=reference, data_dir=str(data), out_dir=str(base / "reference"), epochs=1,
                                 batch_size=8, image_size=32, head_units=16, weights="none"))
    app = start_app(base / "reference", base / "workspaces", data_dir=base / "data", log=base / "app.log", env=env)
    return app, data
