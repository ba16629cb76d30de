"""The training queue of a whole server: runs wait in FIFO order, `max_runs` train at once, each
in its own process (classroom/worker.py), and every visitor sees and acts on their own run only.

    jobs = Jobs(workspaces, state_dir, max_runs=1)
    jobs.submit(space, config)   # queue a run; Busy if this workspace already has one waiting or going
    jobs.view(space)             # its newest run: status, events, place in the queue, estimated start
    jobs.cancel(space)           # its own run: leaves the queue, or stops after the current batch
    jobs.schedule()              # start waiting runs while a slot is free (the app calls it every second)
    jobs.overview()              # what anybody may know: how many runs train and how many wait

Runs live in their workspace (`<workspace>/runs/<id>/`, classroom/runs.py). The
queue and the running runs are kept in `<state_dir>/queue.json`, written atomically, so a restarted
app finds them: a running run goes on in its own process (a new session, not the app's child) and
is recognised again by its pid; waiting runs start in order. No framework import.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

from classroom import runs
from classroom.pool import WarmPool, worker_env
from classroom.runs import append_event, latest, read_events, run_error, run_status, runs_of, worker_alive
from classroom.workspace import Workspace, Workspaces
from trainer.config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
STOP_GRACE_S = 120  # a run that has not stopped this long after Stop is killed
KEEP_RUNS = 5  # finished runs kept per workspace (the newest)
DEFAULT_UNIT_S = 60.0  # seconds per framework-epoch assumed before any run has finished
START_UP_S = 10.0  # a worker's start-up: imports, decoding
ACTIVE = ("queued", "starting", "running", "stopping")  # statuses of a run still waiting or going


class Busy(RuntimeError):
    """This workspace already has a run waiting or going."""


class QueueFull(RuntimeError):
    """Too many runs are waiting."""


@dataclass
class Entry:
    """A run in the queue or in training."""
    workspace: str
    run: str
    units: int  # framework-epochs, for estimates
    queued_at: float
    started_at: float | None = None
    pid: int | None = None
    handed: int = 0  # times handed to a worker that ended before beginning it (a retiring warm one)

    @property
    def key(self) -> tuple[str, str]:
        return self.workspace, self.run


@dataclass
class RunView:
    """What a run's owner sees of it."""
    run_id: str
    status: str  # none, queued, starting, running, stopping, done, stopped, failed, cancelled
    events: list[dict] = field(default_factory=list)
    error: str | None = None
    position: int | None = None  # 1 = next to start
    start_in_s: float | None = None  # estimated seconds until it starts

    @property
    def active(self) -> bool:
        return self.status in ACTIVE


def default_max_runs() -> int:
    """`AVP_MAX_RUNS`, else 1: on a CPU one run takes every core, and two would each go at half speed."""
    return max(1, int(os.environ.get("AVP_MAX_RUNS", 1)))


class Jobs:
    def __init__(self, workspaces: Workspaces, state_dir: str | Path, max_runs: int | None = None,
                 max_waiting: int | None = None, command: tuple[str, ...] = (sys.executable, "-m", "classroom.worker"),
                 warm: int | None = None):
        self.workspaces = workspaces
        self.state_file = Path(state_dir) / "queue.json"
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        self.max_runs = max_runs or default_max_runs()
        self.max_waiting = max_waiting or int(os.environ.get("AVP_MAX_QUEUE", 100))
        self.command = command  # the worker program; it is given the run folder
        self.lock = threading.RLock()
        # Warm workers (frameworks imported, waiting for a run): as many as runs may train at once.
        count = self.max_runs if warm is None else warm
        self.pool = WarmPool(command, count, self.state_file.parent / "warm-workers.log") if count else None
        self.processes: dict[tuple[str, str], subprocess.Popen] = {}  # (workspace, run) -> its worker
        self.waiting, self.running, self.unit_seconds = self._load()

    # ------------------------------------------------------------ state on disk

    def _load(self) -> tuple[list[Entry], list[Entry], list[float]]:
        try:
            state = json.loads(self.state_file.read_text())
            return ([Entry(**e) for e in state["waiting"]], [Entry(**e) for e in state["running"]],
                    [float(s) for s in state.get("unit_seconds", [])])
        except (OSError, ValueError, KeyError, TypeError):
            return [], [], []

    def _save(self) -> None:
        state = {"waiting": [asdict(e) for e in self.waiting], "running": [asdict(e) for e in self.running],
                 "unit_seconds": self.unit_seconds[-20:]}
        temporary = self.state_file.with_suffix(".tmp")
        temporary.write_text(json.dumps(state))
        os.replace(temporary, self.state_file)

    def run_dir(self, entry: Entry) -> Path:
        return self.workspaces.root / entry.workspace / "runs" / entry.run

    # ------------------------------------------------------------ a visitor's actions

    def submit(self, space: Workspace, config: TrainConfig) -> str:
        """Queue a run of `config` for `space`; return its id."""
        config.validate()
        with self.lock:
            self.schedule()  # a run that has just finished must not count as still going
            if self._entry_of(space.id):
                raise Busy("you already have a run waiting or training: stop it first, or wait for it to end")
            if len(self.waiting) >= self.max_waiting:
                raise QueueFull(f"the training queue is full ({len(self.waiting)} runs waiting): "
                                "try again in a few minutes")
            self._forget_old_runs(space)
            run_id = datetime.now().strftime("%Y%m%d-%H%M%S-%f")
            run = space.runs / run_id
            runs.create(run, config)
            units = len(config.frameworks) * config.epochs
            self.waiting.append(Entry(space.id, run_id, units, time.time()))
            self._save()
            self.schedule()
            return run_id

    def cancel(self, space: Workspace) -> str | None:
        """Take this workspace's run out of the queue, or ask it to stop after its current batch.
        Return "cancelled", "stopping", or None when it has no run waiting or going."""
        with self.lock:
            entry = self._entry_of(space.id)
            if entry is None:
                return None
            run = self.run_dir(entry)
            if entry in self.waiting:
                self.waiting.remove(entry)
                self._save()
                append_event(run, {"type": "finished", "status": "cancelled"})
                return "cancelled"
            runs.request_stop(run)
            threading.Thread(target=self._kill_if_stuck, args=(entry,), daemon=True).start()
            return "stopping"

    def close(self) -> None:
        """Let the idle warm workers go (runs in training go on in their processes)."""
        if self.pool:
            self.pool.close()

    def _entry_of(self, workspace_id: str) -> Entry | None:
        return next((e for e in self.running + self.waiting if e.workspace == workspace_id), None)

    def in_use(self, workspace_id: str) -> bool:
        """True while the workspace has a run waiting or going (the sweep must keep it)."""
        with self.lock:
            return self._entry_of(workspace_id) is not None

    def _forget_old_runs(self, space: Workspace) -> None:
        for run in runs_of(space)[:-(KEEP_RUNS - 1)]:
            shutil.rmtree(run, ignore_errors=True)

    # ------------------------------------------------------------ the scheduler

    def schedule(self) -> None:
        """Retire finished runs and start waiting ones while fewer than `max_runs` train."""
        with self.lock:
            changed = False
            for entry in list(self.running):
                if not self._alive(entry):
                    self.running.remove(entry)
                    process = self.processes.pop(entry.key, None)
                    if self.pool and process is not None:
                        self.pool.give_back(process)
                    if self._never_began(entry):  # a warm worker retired with this run in its input
                        entry.started_at, entry.pid, entry.handed = None, None, entry.handed + 1
                        self.waiting.insert(0, entry)
                    else:
                        self._record_duration(entry)
                    changed = True
            while self.waiting and len(self.running) < self.max_runs:
                entry = self.waiting.pop(0)
                changed = True
                if not self.run_dir(entry).is_dir():  # its workspace was removed meanwhile
                    continue
                try:
                    self._launch(entry)
                except OSError as error:  # no process could be started (memory, process limits)
                    append_event(self.run_dir(entry), {"type": "error", "message": f"could not start: {error}"})
                    append_event(self.run_dir(entry), {"type": "finished", "status": "failed"})
                    continue
                self.running.append(entry)
            if changed:
                self._save()
            if self.pool:
                self.pool.fill()

    def _launch(self, entry: Entry) -> None:
        """Hand the run to a warm worker, or start a worker of its own when none is ready."""
        run = self.run_dir(entry)
        process = self.pool.take(run) if self.pool else None
        if process is None:
            with open(run / runs.LOG, "w") as log:
                process = subprocess.Popen([*self.command, str(run)], cwd=ROOT, env=worker_env(), stdout=log,
                                           stderr=subprocess.STDOUT, start_new_session=True)
        entry.started_at, entry.pid = time.time(), process.pid
        self.processes[entry.key] = process

    def _alive(self, entry: Entry) -> bool:
        run = self.run_dir(entry)
        if any(e["type"] == "finished" for e in read_events(run)):
            return False
        process = self.processes.get(entry.key)
        if process is not None:
            return process.poll() is None
        return entry.pid is not None and worker_alive(entry.pid, run)

    def _record_duration(self, entry: Entry) -> None:
        events = read_events(self.run_dir(entry))
        if entry.started_at and any(e.get("status") == "done" for e in events if e["type"] == "finished"):
            self.unit_seconds.append((time.time() - entry.started_at) / max(1, entry.units))

    def _never_began(self, entry: Entry) -> bool:
        """A run handed to a worker that ended without beginning it: it goes back to the queue's
        head (twice at most: a worker that cannot begin anything fails the run instead)."""
        events = read_events(self.run_dir(entry))
        return entry.handed < 2 and not events and self.run_dir(entry).is_dir()

    def _kill_if_stuck(self, entry: Entry) -> None:
        deadline = time.monotonic() + STOP_GRACE_S
        while time.monotonic() < deadline:
            with self.lock:
                if entry not in self.running or not self._alive(entry):
                    return
            time.sleep(1)
        with self.lock:  # still this run's worker? (a warm one may have moved on to another run)
            if entry in self.running and self._alive(entry) and entry.pid:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(entry.pid, signal.SIGKILL)

    # ------------------------------------------------------------ what the pages show

    def estimate_s(self, entry: Entry) -> float:
        """Expected seconds a run takes, from the runs finished lately (per framework-epoch)."""
        recent = sorted(self.unit_seconds[-20:])
        unit = recent[len(recent) // 2] if recent else DEFAULT_UNIT_S
        return START_UP_S + unit * entry.units

    def _starts_in(self, now: float) -> dict[tuple[str, str], float]:
        """(workspace, run) -> estimated seconds until each waiting run starts, slot by slot, in order."""
        free_at = []
        for entry in self.running:
            elapsed = now - (entry.started_at or now)
            eta = latest(read_events(self.run_dir(entry)), "batch").get("eta_s", 0)
            free_at.append(max(self.estimate_s(entry) - elapsed, eta, 1.0))
        free_at += [0.0] * (self.max_runs - len(free_at))
        starts = {}
        for entry in self.waiting:
            slot = min(range(len(free_at)), key=free_at.__getitem__)
            starts[entry.key] = free_at[slot]
            free_at[slot] += self.estimate_s(entry)
        return starts

    def overview(self) -> dict:
        """The only thing any visitor learns of other visitors' runs."""
        with self.lock:
            return {"training": len(self.running), "waiting": len(self.waiting), "slots": self.max_runs}

    def view(self, space: Workspace) -> RunView:
        """This workspace's newest run."""
        with self.lock:
            folders = runs_of(space)
            if not folders:
                return RunView("", "none")
            run = folders[-1]
            events, key = read_events(run), (space.id, run.name)
            waiting = [e.key for e in self.waiting]
            if key in waiting:
                return RunView(run.name, "queued", events, position=waiting.index(key) + 1,
                               start_in_s=self._starts_in(time.time())[key])
            going = any(e.key == key for e in self.running)
            stopped = runs.stop_requested(run)
            return RunView(run.name, run_status(run, events, going), events, run_error(events, going or stopped))

    def previous_events(self, space: Workspace) -> list[dict]:
        """Events of the run before the newest one that trained (the chart shows it faded)."""
        for run in reversed(runs_of(space)[:-1]):
            events = read_events(run)
            if any(e["type"] == "batch" for e in events):
                return events
        return []
