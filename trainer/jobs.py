"""One training at a time for a whole server, run in its own process (trainer/worker.py).

`Jobs.start(config)` starts a run unless one is going; `Jobs.view()` says what the newest run is
doing (any page, any user, also after the tab that started it was closed); `Jobs.stop()` asks the
run to stop after its current batch. Runs live in `<runs>/<id>/` (config, events, log), so a
restarted server still shows the last run. No framework import.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from trainer import worker
from trainer.config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
STOP_GRACE_S = 120  # after this long without stopping, the run is killed


class Busy(RuntimeError):
    """A run is already going."""


ACTIVE = ("starting", "running", "stopping")  # statuses of a run still going


@dataclass
class RunView:
    """What a page shows of a run."""
    run_id: str
    status: str  # starting, running, stopping, done, stopped, failed
    events: list[dict] = field(default_factory=list)
    error: str | None = None

    @property
    def active(self) -> bool:
        return self.status in ACTIVE


class Jobs:
    def __init__(self, runs_dir: str | Path):
        self.runs_dir = Path(runs_dir)
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        self.lock = threading.Lock()
        self.process: subprocess.Popen | None = None
        self.run_dir: Path | None = self.newest_run()
        self._cache: tuple[tuple, list] = ((), [])

    def runs(self) -> list[Path]:
        """Run folders, oldest first (their names are start times)."""
        return sorted(p for p in self.runs_dir.iterdir() if (p / worker.CONFIG).is_file())

    def newest_run(self) -> Path | None:
        return (self.runs() or [None])[-1]

    def previous_run(self) -> Path | None:
        runs = self.runs()
        return runs[-2] if len(runs) > 1 else None

    def start(self, config: TrainConfig) -> str:
        config.validate()
        with self.lock:
            if self.view().active:
                raise Busy("a training run is in progress; watch it here, or wait for it to end")
            run_id = datetime.now().strftime("%Y%m%d-%H%M%S-%f")
            run = self.runs_dir / run_id
            run.mkdir()
            (run / worker.CONFIG).write_text(config.to_json())
            log = open(run / worker.LOG, "w")
            env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}
            self.process = subprocess.Popen(
                [sys.executable, "-m", "trainer.worker", str(run)], cwd=ROOT, env=env,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            log.close()
            self.run_dir = run
            return run_id

    def stop(self) -> bool:
        """Ask the newest run to stop after its current batch; False when none is going."""
        view = self.view()
        if not view.active or self.run_dir is None:
            return False
        (self.run_dir / worker.STOP).touch()
        threading.Thread(target=self._kill_if_stuck, args=(self.process,), daemon=True).start()
        return True

    def _kill_if_stuck(self, process: subprocess.Popen | None) -> None:
        if process is None:
            return
        try:
            process.wait(STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)

    def events(self, run: Path | None = None) -> list[dict]:
        run = run or self.run_dir
        path = run / worker.EVENTS if run else None
        if not path or not path.is_file():
            return []
        stat = path.stat()
        key = (str(path), stat.st_size, stat.st_mtime_ns)
        if self._cache[0] != key:
            lines = path.read_text().splitlines()
            events = []
            for line in lines:
                try:
                    events.append(json.loads(line))
                except json.JSONDecodeError:  # a line being written right now
                    break
            self._cache = (key, events)
        return self._cache[1]

    def view(self) -> RunView:
        """The newest run's status, events and error."""
        if self.run_dir is None:
            return RunView("", "none")
        events = self.events()
        finished = next((e for e in reversed(events) if e["type"] == "finished"), None)
        error = next((e["message"] for e in events if e["type"] == "error"), None)
        if finished:
            status = finished["status"]
        elif self._alive():
            status = "stopping" if (self.run_dir / worker.STOP).exists() else (
                "running" if events else "starting")
        else:
            status = "failed"
            error = error or ("the training process ended unexpectedly (killed, or out of memory); "
                              "saved models are unchanged")
        return RunView(self.run_dir.name, status, events, error)

    def _alive(self) -> bool:
        if self.process is not None and self.run_dir is not None and str(self.run_dir) in self.process.args:
            return self.process.poll() is None
        begin = next((e for e in self.events() if e["type"] == "begin"), None)
        return bool(begin) and pid_alive(begin["pid"]) and time.time() - (self.run_dir / worker.EVENTS).stat().st_mtime < 600


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False
