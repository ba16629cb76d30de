"""The teacher of a class: one key unlocks the Teacher tab, and the class's settings it keeps.

The key is `AVP_TEACHER_KEY` (a Space secret). Entered once on the Teacher tab, it is exchanged for
a token (an HMAC of the key under the server's secret), which the browser keeps like the workspace
id; every teacher action, on the page and over the API, presents the token and is refused without
it. Neither the key nor the token is ever written to a page, an API answer, a log or a URL; both
are compared in constant time. Without the variable there is no teacher: every action is refused.

    teacher.token_for(key, secret)      # the token for the right key, else NotTeacher
    teacher.require(token, secret)      # NotTeacher unless the token is the teacher's
    ClassSettings(state_dir).defaults() # what pre-fills every student's Train tab (TrainConfig fields)
    narrow(RANGES, settings.caps())     # the page's ranges within the class's caps
    board(workspaces, jobs, roster, since, defaults)  # every run of the lesson, as the board shows it

The board reads each run's summary only (classroom/runs.py `summary`: settings, state, results);
a run's settings and results appear once its owner published it, its state and queue place always
(the teacher steers by them). A student is "Student 7" (a number the Roster keeps per workspace)
or the name they chose for the board; never a workspace id. No framework import.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import statistics
import threading
import time
from datetime import datetime
from pathlib import Path

from classroom import runs
from trainer.config import TrainConfig

KEY_ENV = "AVP_TEACHER_KEY"
HOW_TO_ENABLE = (f"The Teacher tab is off on this server. To turn it on, set the secret {KEY_ENV} "
                 "(on a Space: Settings, Variables and secrets, New secret) and restart the app.")


class NotTeacher(PermissionError):
    """An action only the teacher may take, asked without the teacher's key."""


def enabled() -> bool:
    return bool(os.environ.get(KEY_ENV, ""))


def _token(key: str, secret: str) -> str:
    return hmac.new(secret.encode(), b"avp-teacher:" + key.encode(), hashlib.sha256).hexdigest()


def token_for(key: object, secret: str) -> str:
    """The browser's token for the right key; NotTeacher (saying nothing of the key) otherwise."""
    expected = os.environ.get(KEY_ENV, "")
    if not expected:
        raise NotTeacher(HOW_TO_ENABLE)
    if not isinstance(key, str) or not hmac.compare_digest(key.encode(), expected.encode()):
        raise NotTeacher("that is not the teacher's key")
    return _token(expected, secret)


def is_teacher(token: object, secret: str) -> bool:
    expected = os.environ.get(KEY_ENV, "")
    if not expected or not isinstance(token, str) or not token:
        return False
    return hmac.compare_digest(token.encode(), _token(expected, secret).encode())


def require(token: object, secret: str) -> None:
    """NotTeacher unless `token` is the teacher's (the first line of every teacher action)."""
    if not is_teacher(token, secret):
        raise NotTeacher(HOW_TO_ENABLE if not enabled() else
                         "only the teacher may do this: enter the teacher's key on the Teacher tab")


class ClassSettings:
    """The class's defaults (TrainConfig fields by name, `augment` nested: what pre-fills a new
    student's Train tab; a student's own saved settings win) and caps (the most a student's run may
    ask for), kept in `<state_dir>/class.json`, written atomically."""

    def __init__(self, state_dir: str | Path):
        self.file = Path(state_dir) / "class.json"

    def _read(self) -> dict:
        try:
            state = json.loads(self.file.read_text())
            return state if isinstance(state, dict) else {}
        except (OSError, ValueError):
            return {}

    def _write(self, state: dict) -> None:
        self.file.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.file.with_suffix(".tmp")
        temporary.write_text(json.dumps(state))
        os.replace(temporary, self.file)

    def defaults(self) -> dict:
        return dict(self._read().get("defaults", {}))

    def caps(self) -> dict:
        return dict(self._read().get("caps", {}))

    def set_defaults(self, defaults: dict) -> None:
        self._write({**self._read(), "defaults": defaults})

    def set_caps(self, caps: dict) -> None:
        self._write({**self._read(), "caps": caps})


CAPPED = ("epochs", "image_size", "unfreeze", "batch_size")  # the settings a teacher may cap


def narrow(ranges: dict[str, tuple[int, int]], caps: dict) -> dict[str, tuple[int, int]]:
    """`ranges` (name -> (low, high)) within the class's caps (name -> [low, high])."""
    narrowed = dict(ranges)
    for name, (low, high) in ranges.items():
        cap = caps.get(name)
        if isinstance(cap, list) and len(cap) == 2 and all(isinstance(v, int) for v in cap):
            narrowed[name] = (max(low, cap[0]), min(high, cap[1]))
    return narrowed


def checked_caps(caps: object, ranges: dict[str, tuple[int, int]]) -> dict[str, list[int]]:
    """The teacher's caps, {"epochs": 5} (the most) or {"batch_size": [8, 64]} (a range) for each of
    CAPPED, as name -> [low, high] within `ranges`; ValueError listing every problem."""
    if not isinstance(caps, dict):
        raise ValueError("caps must be an object: setting name -> the most, or [least, most]")
    checked, problems = {}, []
    for name, cap in caps.items():
        if name not in CAPPED:
            problems.append(f"{str(name)[:40]!r} cannot be capped (only {', '.join(CAPPED)})")
            continue
        low, high = ranges[name]
        pair = [low, cap] if not isinstance(cap, list) else cap
        if (len(pair) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in pair)
                or not low <= pair[0] <= pair[1] <= high):
            problems.append(f"the cap of {name} must be whole numbers from {low} to {high}, least first, "
                            f"got {str(cap)[:40]}")
            continue
        checked[name] = pair
    if problems:
        raise ValueError("; ".join(problems))
    return checked


KEEP_NUMBERS = 5000


class Roster:
    """Each student's number on the class board ("Student 7"): given the first time the board shows
    one of their runs, kept in `<state_dir>/students.json` (workspace id -> number; never shown)."""

    def __init__(self, state_dir: str | Path):
        self.file = Path(state_dir) / "students.json"
        self.lock = threading.Lock()

    def _read(self) -> dict:
        try:
            state = json.loads(self.file.read_text())
            return state if isinstance(state, dict) and isinstance(state.get("numbers"), dict) else {}
        except (OSError, ValueError):
            return {}

    def numbers(self, workspace_ids: list[str]) -> dict[str, int]:
        """workspace id -> number, new numbers given in the order of `workspace_ids`. The file keeps
        the newest KEEP_NUMBERS (a number is never given twice)."""
        with self.lock:
            state = self._read()
            numbers, last = state.get("numbers", {}), int(state.get("last", 0))
            new = [w for w in dict.fromkeys(workspace_ids) if w not in numbers]
            for workspace_id in new:
                last += 1
                numbers[workspace_id] = last
            if new:
                current = set(workspace_ids)
                kept = {w: n for w, n in numbers.items() if w in current or n > last - KEEP_NUMBERS}
                self.file.parent.mkdir(parents=True, exist_ok=True)
                temporary = self.file.with_suffix(".tmp")
                temporary.write_text(json.dumps({"numbers": kept, "last": last}))
                os.replace(temporary, self.file)
            return {w: numbers[w] for w in workspace_ids}

    def workspace_of(self, number: int) -> str | None:
        with self.lock:
            return next((w for w, n in self._read().get("numbers", {}).items() if n == number), None)


SERVER_SETTINGS = ("data_dir", "out_dir", "device", "precision")  # neither the teacher's nor a student's


def class_config(defaults: dict) -> TrainConfig:
    """The class's default settings as a TrainConfig (TrainConfig's own where the teacher set none)."""
    values = {k: v for k, v in defaults.items() if k != "dataset" and k not in SERVER_SETTINGS}
    try:
        return TrainConfig.from_dict({**values, "data_dir": ""}).validate()
    except (ValueError, TypeError):
        return TrainConfig(data_dir="")


def flat_settings(config: TrainConfig) -> dict:
    values = {k: v for k, v in config.to_dict().items() if k not in SERVER_SETTINGS}
    augment = values.pop("augment")
    return {**values, **{f"augment.{k}": v for k, v in augment.items()}}


def differences(config: TrainConfig, base: TrainConfig) -> dict:
    """The settings of `config` that differ from `base`, by name ("augment.<field>" nested)."""
    mine, theirs = flat_settings(config), flat_settings(base)
    return {k: v for k, v in mine.items() if theirs.get(k) != v}


def run_time(run: Path) -> float:
    """When a run was queued: its name is the time (classroom/jobs.py), else its settings file's."""
    try:
        return datetime.strptime(run.name, "%Y%m%d-%H%M%S-%f").timestamp()
    except ValueError:
        try:
            return (run / runs.CONFIG).stat().st_mtime
        except OSError:
            return 0.0


def board(workspaces, jobs, roster: Roster, since: float, defaults: dict) -> list[dict]:
    """Every run queued since `since` (a time), oldest first, as the class board shows it:
    {"student", "run" (the handle the teacher's Stop takes), "frameworks", "state", "place" (1 = next
    to start), "published", "queued_at"} and, once published, "settings" (those differing from the
    class defaults), "config", "results" (framework -> RESULT_FIELDS) and "agreement"."""
    places, base, found = jobs.places(), class_config(defaults), []
    for space in workspaces.all():
        for run in runs.runs_of(space):
            queued_at = run_time(run)
            if queued_at >= since:
                found.append((queued_at, space, run))
    found.sort(key=lambda item: item[0])
    numbers = roster.numbers([space.id for _, space, _ in found])
    rows = []
    for queued_at, space, run in found:
        place = places.get((space.id, run.name))
        summary = runs.summary(run, going=place == 0)
        if not summary:
            continue
        number = numbers[space.id]
        row = {"student": space.board_name or f"Student {number}", "run": f"{number}/{run.name}",
               "frameworks": list(summary["config"].frameworks), "queued_at": queued_at,
               "state": "queued" if place else summary["status"], "place": place or None,
               "published": summary["published"]}
        if summary["published"]:
            agreed = summary["agreement"]
            row.update(settings=differences(summary["config"], base), config=flat_settings(summary["config"]),
                       results=summary["results"], agreement=agreed[0] / agreed[1] if agreed else None)
        rows.append(row)
    return rows


def figures(rows: list[dict]) -> dict:
    """The class's figures from its published runs: per framework the runs, median seconds per epoch
    and median validation accuracy; and how often the two frameworks agreed (median over the runs
    that trained both)."""
    out: dict = {}
    published = [r for r in rows if r.get("results")]
    for name in sorted({f for r in published for f in r["results"]}):
        results = [r["results"][name] for r in published if name in r["results"]]
        out[name] = {"runs": len(results), "seconds_per_epoch": median_of(results, "seconds_per_epoch"),
                     "val_accuracy": median_of(results, "val_accuracy")}
    agreed = [r["agreement"] for r in published if r.get("agreement") is not None]
    out["agreement"] = {"runs": len(agreed), "median": statistics.median(agreed) if agreed else None}
    return out


def median_of(results: list[dict], key: str) -> float | None:
    values = [v[key] for v in results if key in v]
    return statistics.median(values) if values else None


def since_hours_ago(hours: object) -> float:
    """The time `hours` ago (3 when not a positive number, a week at most)."""
    value = hours if isinstance(hours, (int, float)) and not isinstance(hours, bool) and hours > 0 else 3
    return time.time() - min(float(value), 24 * 7) * 3600
