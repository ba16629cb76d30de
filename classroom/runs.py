"""A run folder: what one training run keeps on disk, and the one place that reads and writes it.

    <workspace>/runs/<run id>/
        config.json    the run's TrainConfig (written when it is queued)
        events.jsonl   one JSON event per line, appended by the worker (trainer/loop.py's events)
        stop           exists once its owner (or the server) asked it to stop
        worker.log     the worker's output and tracebacks (never shown on a page)

The queue (classroom/jobs.py), the worker (classroom/worker.py) and the Train tab read a run only
through these functions. No framework import.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from classroom.workspace import Workspace
from trainer.config import TrainConfig

EVENTS, CONFIG, STOP, LOG = "events.jsonl", "config.json", "stop", "worker.log"


def create(run: Path, config: TrainConfig) -> None:
    """A new run folder holding its settings."""
    run.mkdir(parents=True)
    (run / CONFIG).write_text(config.to_json())


def read_config(run: Path) -> TrainConfig:
    return TrainConfig.from_json((run / CONFIG).read_text())


def request_stop(run: Path) -> None:
    (run / STOP).touch()


def stop_requested(run: Path) -> bool:
    return (run / STOP).exists()


def runs_of(space: Workspace) -> list[Path]:
    """Run folders of a workspace, oldest first (their names are start times)."""
    if not space.runs.is_dir():
        return []
    return sorted(p for p in space.runs.iterdir() if (p / CONFIG).is_file())


def run_status(run: Path, events: list[dict], going: bool) -> str:
    finished = latest(events, "finished")
    if finished:
        return finished["status"]
    if going:
        if stop_requested(run):
            return "stopping"
        return "running" if any(e["type"] == "start" for e in events) else "starting"
    return "stopped" if stop_requested(run) else "failed"  # killed after Stop: still a stop


def run_error(events: list[dict], going: bool) -> str | None:
    error = next((e["message"] for e in events if e["type"] == "error"), None)
    if error or going or latest(events, "finished"):
        return error
    return "the training process ended unexpectedly (killed, or out of memory)"


def latest(events: list[dict], kind: str) -> dict:
    """The newest event of a kind ({} when there is none)."""
    return next((e for e in reversed(events) if e["type"] == kind), {})


def append_event(run: Path, event: dict) -> None:
    with open(run / EVENTS, "a") as sink:
        sink.write(json.dumps(event) + "\n")


def read_events(run: Path) -> list[dict]:
    """A run's events so far; a line being written right now is left for the next read."""
    path = run / EVENTS
    try:
        stat = path.stat()
    except OSError:
        return []
    return list(_parse_events(str(path), stat.st_size, stat.st_mtime_ns))


@lru_cache(maxsize=256)
def _parse_events(path: str, size: int, mtime_ns: int) -> tuple[dict, ...]:
    events = []
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        return ()
    for line in lines:
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return tuple(events)


def worker_alive(pid: int, run: Path) -> bool:
    """True when `pid` is still the worker of `run` (not a later process that reused the pid): its
    own worker, or a warm worker whose begin event for this run names that pid."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    if str(run).encode() in command:
        return True
    return b"--warm" in command and latest(read_events(run), "begin").get("pid") == pid
