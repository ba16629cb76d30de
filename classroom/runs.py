"""A run folder: what one training run keeps on disk, and the one place that reads and writes it.

    <workspace>/runs/<run id>/
        config.json    the run's TrainConfig (written when it is queued)
        events.jsonl   one JSON event per line, appended by the worker (trainer/loop.py's events),
                       read by the app incrementally into a bounded list (EventLog)
        stop           exists once its owner (or the server) asked it to stop (nothing is saved);
                       it holds "teacher" when the teacher stopped it
        published      exists once its owner published it to the class board (ui/teacher_tab.py)
        time-up        exists once the run passed the server's cap (it ends, saving what it has)
        worker.log     the worker's output and tracebacks (never shown on a page)

The queue (classroom/jobs.py), the worker (classroom/worker.py) and the Train tab read a run only
through these functions; the teacher's class board reads only `summary` (its settings, state and
results), never a run's other files. No framework import.
"""

from __future__ import annotations

import json
import os
import threading
from collections import OrderedDict
from pathlib import Path

from classroom.workspace import Workspace
from trainer.config import TrainConfig

EVENTS, CONFIG, STOP, LOG, TIME_UP = "events.jsonl", "config.json", "stop", "worker.log", "time-up"
PUBLISHED = "published"
BY_TEACHER = "teacher"  # what the stop file holds when the teacher stopped the run


def create(run: Path, config: TrainConfig) -> None:
    """A new run folder holding its settings."""
    run.mkdir(parents=True)
    (run / CONFIG).write_text(config.to_json())


def read_config(run: Path) -> TrainConfig:
    return TrainConfig.from_json((run / CONFIG).read_text())


def request_stop(run: Path, by: str = "") -> None:
    """Ask the run to stop after its current batch; `by` ("teacher") is kept for its owner's page."""
    (run / STOP).write_text(by)


def stop_requested(run: Path) -> bool:
    return (run / STOP).exists()


def stopped_by(run: Path) -> str:
    """Who asked the run to stop ("teacher"), "" for its owner or nobody."""
    try:
        return (run / STOP).read_text(errors="replace")[:20].strip()
    except OSError:
        return ""


def publish(run: Path) -> None:
    """Its owner shows this run's name and results on the class board."""
    (run / PUBLISHED).touch()


def is_published(run: Path) -> bool:
    return (run / PUBLISHED).exists()


def request_time_up(run: Path) -> None:
    """The server's time for this run is over: it ends after its current batch, saving (worker.py)."""
    (run / TIME_UP).touch()


def time_is_up(run: Path) -> bool:
    return (run / TIME_UP).exists()


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


MAX_BATCH_EVENTS = 1200  # batch events the app keeps of one run (the trainer writes ~300 per framework)
MAX_OTHER_EVENTS = 400  # and other events (start, epoch, end, warnings: a few per epoch)
MAX_READ_BYTES = 16 * 2**20  # read per call at most; a longer line without its end is skipped
OPEN_LOGS = 512  # runs whose readers are kept (the runs polled lately)


class EventLog:
    """One run's events file, read incrementally: a read parses only the lines appended since the
    last one and keeps a bounded list (past MAX_BATCH_EVENTS, every other batch event is dropped,
    the newest kept), so what the app holds of a run is bounded whatever the file holds."""

    def __init__(self, path: Path):
        self.path, self.offset, self.identity = path, 0, None
        self.events: list[dict] = []
        self.batches = self.others = 0
        self.lock = threading.Lock()

    def read(self) -> list[dict]:
        with self.lock:
            self._catch_up()
            return list(self.events)

    def _catch_up(self) -> None:
        try:
            with open(self.path, "rb") as source:
                info = os.fstat(source.fileno())
                if (info.st_dev, info.st_ino) != self.identity or info.st_size < self.offset:
                    self.__init__(self.path)  # a new file (a run folder made again): start over
                    self.identity = (info.st_dev, info.st_ino)
                if info.st_size == self.offset:
                    return
                source.seek(self.offset)
                chunk = source.read(MAX_READ_BYTES)
        except OSError:
            return
        complete = chunk.rfind(b"\n") + 1  # a line being written right now is left for the next read
        if not complete:
            if len(chunk) == MAX_READ_BYTES:  # one line longer than anything a run writes: skip it
                self.offset += len(chunk)
            return
        self.offset += complete
        for line in chunk[:complete].splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict) and isinstance(event.get("type"), str):
                self._keep(event)

    def _keep(self, event: dict) -> None:
        if event["type"] == "batch":
            self.batches += 1
            if self.batches > MAX_BATCH_EVENTS:
                self._thin()
        else:
            self.others += 1
            if self.others > MAX_OTHER_EVENTS:  # a run that writes this many is broken: keep its newest
                index = next((i for i, e in enumerate(self.events)
                              if e["type"] not in ("batch", "begin", "start")), None)
                if index is None:
                    return
                del self.events[index]
                self.others -= 1
        self.events.append(event)

    def _thin(self) -> None:
        """Every other batch event goes (the chart's line keeps its shape)."""
        kept, n = [], 0
        for event in self.events:
            if event["type"] == "batch":
                n += 1
                if n % 2:
                    continue
            kept.append(event)
        self.events = kept
        self.batches = sum(e["type"] == "batch" for e in kept) + 1


_logs: OrderedDict[str, EventLog] = OrderedDict()
_logs_lock = threading.Lock()


def read_events(run: Path) -> list[dict]:
    """A run's events so far (bounded, see EventLog); a line being written right now is left for
    the next read. One reader per run file, the OPEN_LOGS used last kept."""
    key = str(run / EVENTS)
    with _logs_lock:
        log = _logs.get(key)
        if log is None:
            log = _logs[key] = EventLog(Path(key))
        _logs.move_to_end(key)
        while len(_logs) > OPEN_LOGS:
            _logs.popitem(last=False)
    return log.read()


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


RESULT_FIELDS = ("val_accuracy", "best_val_accuracy", "seconds_per_epoch", "images_per_s")


def summary(run: Path, going: bool = False) -> dict:
    """What the class board may know of a run, from its settings and its events only (read through
    the bounded EventLog): {"run", "config" (a TrainConfig), "status", "published", "results"
    (framework -> RESULT_FIELDS of its end event), "agreement" ((same predictions, images) of its two
    frameworks, or None)}; {} for a folder that is not a run."""
    try:
        config = read_config(run)
    except (OSError, ValueError, TypeError):
        return {}
    events = read_events(run)
    ends = {e["framework"]: e for e in events if e["type"] == "end" and isinstance(e.get("framework"), str)}
    results = {name: {k: e[k] for k in RESULT_FIELDS if isinstance(e.get(k), (int, float))}
               for name, e in ends.items()}
    return {"run": run.name, "config": config, "status": run_status(run, events, going),
            "published": is_published(run), "results": results, "agreement": agreement(list(ends.values()))}


def agreement(ends: list[dict]) -> tuple[int, int] | None:
    """(validation images two models predicted alike, images both predicted), from their end events."""
    predicted = [e.get("val_predicted") for e in ends]
    if len(predicted) != 2 or not all(isinstance(p, list) and p for p in predicted):
        return None
    first, second = predicted
    if len(first) != len(second):
        return None
    return sum(a == b for a, b in zip(first, second)), len(first)
