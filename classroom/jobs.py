"""The training queue of a whole server: runs wait in FIFO order, `max_runs` train at once, each
in its own process (classroom/worker.py), and every visitor sees and acts on their own run only.

    jobs = Jobs(workspaces, state_dir, max_runs=1)
    jobs.submit(space, config, person, units)  # queue a run; Busy, QueueFull, OverBudget, TooLong say why not
    jobs.view(space)             # its newest run: status, events, place in the queue, estimated start
    jobs.cancel(space)           # its own run: leaves the queue, or stops after the current batch
    jobs.schedule()              # start waiting runs while a slot is free (the app calls it every second)
    jobs.overview()              # what anybody may know: how many runs train and wait, and if it is paused

The teacher (ui/teacher_tab.py) may also stop any run (`stop_any`), pause the queue (`set_paused`:
nothing starts while it is paused; runs in training go on) and see every run's place (`places`).

Places are fair between persons (classroom/people.py): a person has at most `Budgets.runs` runs
waiting or training, and the next run to start is the oldest of the person whose last run started
longest ago (round robin), so one person's dozen runs do not keep a class waiting. A run costs
`units` (classroom/cost.py), estimated before it is queued; one estimated past the server's cap
(`AVP_MAX_RUN_MINUTES`) is refused, and one still training at the cap is told its time is up: it
ends after its current batch like a finished run, saving what it has trained.

Runs live in their workspace (`<workspace>/runs/<id>/`, classroom/runs.py). The
queue and the running runs are kept in `<state_dir>/queue.json`, written atomically, so a restarted
app finds them: a running run goes on in its own process (a new session, not the app's child) and
is recognised again by its pid; waiting runs start in order. No framework import.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

from classroom import cost, runs
from classroom.people import LOCAL, OverBudget
from classroom.pool import WarmPool, worker_env
from classroom.runs import append_event, latest, read_events, run_error, run_status, runs_of, worker_alive
from classroom.workspace import Workspace, Workspaces, remove_tree
from trainer.config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
STOP_GRACE_S = 120  # a run that has not stopped this long after Stop is killed
KEEP_RUNS = 5  # finished runs kept per workspace (the newest)
ACTIVE = ("queued", "starting", "running", "stopping")  # statuses of a run still waiting or going


class Busy(RuntimeError):
    """This workspace already has a run waiting or going."""


class QueueFull(RuntimeError):
    """Too many runs are waiting."""


class TooLong(ValueError):
    """A run estimated to take longer than the server lets one run take."""


@dataclass
class Entry:
    """A run in the queue or in training."""
    workspace: str
    run: str
    units: float  # its cost in image units (classroom/cost.py), for estimates
    queued_at: float
    started_at: float | None = None
    pid: int | None = None
    handed: int = 0  # times handed to a worker that ended before beginning it (a retiring warm one)
    person: str = LOCAL  # who queued it (classroom/people.py)
    time_up: bool = False  # told that the server's time for it is over

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
    by_teacher: bool = False  # stopped (or taken out of the queue) by the teacher

    @property
    def active(self) -> bool:
        return self.status in ACTIVE


def default_max_runs() -> int:
    """`AVP_MAX_RUNS`, else 1: on a CPU one run takes every core, and two would each go at half speed."""
    return max(1, int(os.environ.get("AVP_MAX_RUNS", 1)))


class Jobs:
    def __init__(self, workspaces: Workspaces, state_dir: str | Path, max_runs: int | None = None,
                 max_waiting: int | None = None, command: tuple[str, ...] = (sys.executable, "-m", "classroom.worker"),
                 warm: int | None = None, max_run_s: float | None = None):
        self.workspaces = workspaces
        self.state_file = Path(state_dir) / "queue.json"
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        self.max_runs = max_runs or default_max_runs()
        self.max_waiting = max_waiting or int(os.environ.get("AVP_MAX_QUEUE", 100))
        self.command = command  # the worker program; it is given the run folder
        self.max_run_s = max_run_s or cost.max_run_s()
        self.starts: dict[str, int] = {}  # person -> when their last run started (a counter): round robin
        self.started_count = 0
        workspaces.in_use = self.in_use  # the workspaces' sweep and eviction keep what a run needs
        self.lock = threading.RLock()
        # Warm workers (frameworks imported, waiting for a run): as many as runs may train at once.
        count = self.max_runs if warm is None else warm
        self.pool = WarmPool(command, count, self.state_file.parent / "warm-workers.log") if count else None
        self.processes: dict[tuple[str, str], subprocess.Popen] = {}  # (workspace, run) -> its worker
        self.waiting, self.running, self.unit_seconds, self.paused = self._load()

    # ------------------------------------------------------------ state on disk

    def _load(self) -> tuple[list[Entry], list[Entry], list[float], bool]:
        try:
            state = json.loads(self.state_file.read_text())
            return ([Entry(**e) for e in state["waiting"]], [Entry(**e) for e in state["running"]],
                    [float(s) for s in state.get("unit_cost_seconds", [])], state.get("paused") is True)
        except (OSError, ValueError, KeyError, TypeError):
            return [], [], [], False

    def _save(self) -> None:
        state = {"waiting": [asdict(e) for e in self.waiting], "running": [asdict(e) for e in self.running],
                 "unit_cost_seconds": self.unit_seconds[-20:], "paused": self.paused}
        temporary = self.state_file.with_suffix(".tmp")
        temporary.write_text(json.dumps(state))
        os.replace(temporary, self.state_file)

    def run_dir(self, entry: Entry) -> Path:
        return self.workspaces.root / entry.workspace / "runs" / entry.run

    # ------------------------------------------------------------ a visitor's actions

    def check(self, space: Workspace, person: str | None = None) -> None:
        """Refuse at once, before anything is decoded or measured, a run that could not be queued
        now: Busy (this workspace has one), QueueFull, OverBudget (this person has their runs)."""
        person = space.person if person is None else person
        with self.lock:
            self.schedule()  # a run that has just finished must not count as still going
            if self._entry_of(space.id):
                raise Busy("you already have a run waiting or training: stop it first, or wait for it to end")
            if len(self.waiting) >= self.max_waiting:
                raise QueueFull(f"the training queue is full ({len(self.waiting)} runs waiting): "
                                "try again in a few minutes")
            mine = sum(e.person == person for e in self.running + self.waiting)
            cap = self.workspaces.people.budgets.runs
            if mine >= cap:
                raise OverBudget(f"{mine} runs from your address (or account) are waiting or training, the "
                                 f"most one address may have at once ({cap}): wait until one of them ends")

    def check_cost(self, config: TrainConfig, units: float, train_images: int) -> float:
        """The run's estimated seconds; TooLong, with the numbers, past the server's cap."""
        seconds = self.estimate_units_s(units)
        if seconds > self.max_run_s:
            raise TooLong(cost.over_cap_message(config, train_images, seconds, self.max_run_s))
        return seconds

    def submit(self, space: Workspace, config: TrainConfig, person: str | None = None,
               units: float | None = None) -> str:
        """Queue a run of `config` for `space` (made by `person`, costing `units`); return its id."""
        config.validate()
        person = space.person if person is None else person
        units = len(config.frameworks) * config.epochs * 100.0 if units is None else units
        with self.lock:
            self.schedule()  # a run that has just finished must not count as still going
            self.check(space, person)
            self._forget_old_runs(space)
            run_id = datetime.now().strftime("%Y%m%d-%H%M%S-%f")
            run = space.runs / run_id
            runs.create(run, config)
            self.waiting.append(Entry(space.id, run_id, units, time.time(), person=person))
            self._save()
            self.schedule()
            return run_id

    def cancel(self, space: Workspace) -> str | None:
        """Take this workspace's run out of the queue, or ask it to stop after its current batch.
        Return "cancelled", "stopping", or None when it has no run waiting or going."""
        with self.lock:
            entry = self._entry_of(space.id)
            return None if entry is None else self._stop(entry)

    def stop_any(self, workspace_id: str, run_id: str) -> str | None:
        """The teacher's Stop: as `cancel`, for the run `run_id` of any workspace (its owner's page
        says the teacher stopped it)."""
        with self.lock:
            entry = next((e for e in self.running + self.waiting if e.key == (workspace_id, run_id)), None)
            return None if entry is None else self._stop(entry, by=runs.BY_TEACHER)

    def _stop(self, entry: Entry, by: str = "") -> str:
        run = self.run_dir(entry)
        if entry in self.waiting:
            self.waiting.remove(entry)
            self._save()
            append_event(run, {"type": "finished", "status": "cancelled", **({"by": by} if by else {})})
            return "cancelled"
        runs.request_stop(run, by)
        threading.Thread(target=self._kill_if_stuck, args=(entry,), daemon=True).start()
        return "stopping"

    def set_paused(self, paused: bool) -> None:
        """The teacher's pause: while paused no waiting run starts (those training go on)."""
        with self.lock:
            self.paused = bool(paused)
            self._save()
        self.schedule()

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
            remove_tree(run)

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
                        self._measure(entry)
                    changed = True
                elif self._past_cap(entry):
                    entry.time_up = changed = True
                    runs.request_time_up(self.run_dir(entry))
                    threading.Thread(target=self._kill_if_stuck, args=(entry,), daemon=True).start()
            while self.waiting and not self.paused and len(self.running) < self.max_runs:
                entry = self._order()[0]
                self.waiting.remove(entry)
                self.started_count += 1
                self.starts[entry.person] = self.started_count
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

    def _order(self) -> list[Entry]:
        """The waiting runs in the order they will start: round robin over persons, the person whose
        last run started longest ago (or never) first; each person's own runs first come first."""
        queues: dict[str, list[Entry]] = {}
        for entry in self.waiting:
            queues.setdefault(entry.person, []).append(entry)
        persons = sorted(queues, key=lambda p: self.starts.get(p, 0))  # stable: first queued first
        order = []
        for rank in range(max((len(q) for q in queues.values()), default=0)):
            order += [queues[p][rank] for p in persons if rank < len(queues[p])]
        return order

    def _past_cap(self, entry: Entry) -> bool:
        return (not entry.time_up and entry.started_at is not None
                and time.time() - entry.started_at > self.max_run_s)

    def _measure(self, entry: Entry) -> None:
        """A finished run's workspace is measured again (its models and events), for the totals."""
        space = self.workspaces.open(entry.workspace)
        if space is not None:
            space.used_bytes()

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
        finished = latest(events, "finished")
        if entry.started_at and finished.get("status") == "done" and not finished.get("time_up"):
            seconds = time.time() - entry.started_at - cost.START_UP_S
            self.unit_seconds.append(max(seconds, 0.1) / max(1.0, entry.units))

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

    def unit_s(self) -> float:
        """Seconds per image unit on this server: the median of the runs finished lately, else a
        default for this machine's kind (classroom/cost.py)."""
        recent = sorted(self.unit_seconds[-20:])
        return recent[len(recent) // 2] if recent else cost.DEFAULT_UNIT_S[cost.device_kind()]

    def estimate_units_s(self, units: float) -> float:
        return cost.estimate_s(units, self.unit_s())

    def estimate_s(self, entry: Entry) -> float:
        """Expected seconds a run takes (never past the cap: there it is stopped)."""
        return min(self.estimate_units_s(entry.units), self.max_run_s)

    def remaining_s(self, entry: Entry, now: float) -> float:
        """Seconds until a running run ends. Once it has trained a batch, from its own progress: the
        ETA of the framework training now, and each framework still to come at the pace this one has
        shown (a run's estimate before it starts can be off by a factor of two or three); before
        that, its estimate less the time it has run. Never past the server's cap."""
        run = self.run_dir(entry)
        events = read_events(run)
        elapsed = now - (entry.started_at or now)
        batch = latest(events, "batch")
        if not batch:
            remaining = self.estimate_s(entry) - elapsed
        else:
            try:
                planned = len(runs.read_config(run).frameworks)
            except (OSError, ValueError, TypeError):
                planned = 1
            later = max(planned - sum(e["type"] == "end" for e in events) - 1, 0)
            eta = float(batch.get("eta_s", 0))
            remaining = eta + later * (float(batch.get("elapsed_s", 0)) + eta)
        return max(min(remaining, self.max_run_s - elapsed), 1.0)

    def _starts_in(self, now: float) -> dict[tuple[str, str], float]:
        """(workspace, run) -> estimated seconds until each waiting run starts, slot by slot, in order."""
        free_at = [self.remaining_s(entry, now) for entry in self.running]
        free_at += [0.0] * (self.max_runs - len(free_at))
        starts = {}
        for entry in self._order():
            slot = min(range(len(free_at)), key=free_at.__getitem__)
            starts[entry.key] = free_at[slot]
            free_at[slot] += self.estimate_s(entry)
        return starts

    def overview(self) -> dict:
        """The only thing any visitor learns of other visitors' runs."""
        with self.lock:
            return {"training": len(self.running), "waiting": len(self.waiting), "slots": self.max_runs,
                    "paused": self.paused}

    def places(self) -> dict[tuple[str, str], int]:
        """(workspace, run) -> its place: 0 for a run in training, 1 for the next to start, ... (the
        teacher's board; no visitor sees another's)."""
        with self.lock:
            return {**{e.key: 0 for e in self.running}, **{e.key: n for n, e in enumerate(self._order(), 1)}}

    def view(self, space: Workspace) -> RunView:
        """This workspace's newest run."""
        with self.lock:
            folders = runs_of(space)
            if not folders:
                return RunView("", "none")
            run = folders[-1]
            events, key = read_events(run), (space.id, run.name)
            waiting = [e.key for e in self._order()]
            if key in waiting:
                return RunView(run.name, "queued", events, position=waiting.index(key) + 1,
                               start_in_s=self._starts_in(time.time())[key])
            going = any(e.key == key for e in self.running)
            stopped = runs.stop_requested(run)
            by_teacher = (stopped and runs.stopped_by(run) == runs.BY_TEACHER
                          or latest(events, "finished").get("by") == runs.BY_TEACHER)
            return RunView(run.name, run_status(run, events, going), events, run_error(events, going or stopped),
                           by_teacher=by_teacher)

    def previous_events(self, space: Workspace) -> list[dict]:
        """Events of the run before the newest one that trained (the chart shows it faded)."""
        for run in reversed(runs_of(space)[:-1]):
            events = read_events(run)
            if any(e["type"] == "batch" for e in events):
                return events
        return []
