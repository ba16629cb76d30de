"""Warm training workers: processes with both frameworks imported, waiting for a run.

`python -m classroom.worker --warm` imports torch and TensorFlow once, then trains the run whose
folder it reads from its standard input, one per line (classroom/worker.py `serve`). The queue
(classroom/jobs.py) hands each run to an idle one, or starts a worker of its own for it when none is
ready. No framework import here.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def worker_env() -> dict:
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}


class WarmPool:
    """Worker processes with both frameworks imported, waiting for a run on their standard input
    (`python -m classroom.worker --warm`). A busy one is given back when its run has finished; a dead
    or retired one is replaced; each is a process of its own, so a crash takes only its run down and
    its memory goes back when it exits."""

    def __init__(self, command: tuple[str, ...], size: int, log: Path):
        self.command, self.size, self.log = command, size, log
        log.write_text("")  # this app's warm workers' output only (frameworks' own logging)
        self.idle: list[subprocess.Popen] = []
        self.busy = 0

    def fill(self) -> None:
        self.idle = [p for p in self.idle if p.poll() is None]
        while len(self.idle) + self.busy < self.size:
            with open(self.log, "a") as log:
                self.idle.append(subprocess.Popen(
                    [*self.command, "--warm"], cwd=ROOT, env=worker_env(), stdin=subprocess.PIPE,
                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True, text=True))

    def take(self, run: Path) -> subprocess.Popen | None:
        """A warm worker now training `run`, or None when none is ready."""
        self.idle = [p for p in self.idle if p.poll() is None]
        while self.idle:
            process = self.idle.pop(0)
            try:
                process.stdin.write(f"{run}\n")
                process.stdin.flush()
            except OSError:  # it died since the check
                continue
            self.busy += 1
            return process
        return None

    def give_back(self, process: subprocess.Popen) -> None:
        if "--warm" not in process.args:
            return  # a worker of the run's own: it has exited
        self.busy = max(0, self.busy - 1)
        if process.poll() is None:
            self.idle.append(process)

    def close(self) -> None:
        """Let the idle workers go: their input ends, and they exit."""
        for process in self.idle:
            with contextlib.suppress(OSError):
                process.stdin.close()
        self.idle = []
