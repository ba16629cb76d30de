"""A visitor's workspace: their uploaded data sets, their runs and their trained models.

    spaces = Workspaces("workspaces")          # limits from the environment (see Limits)
    space = spaces.open(visitor_id) or spaces.create()
    space.uploads, space.runs, space.models    # folders nobody else is given

This is the only module that turns a workspace id into a folder. Ids are 32 random hex characters
(`secrets.token_hex(16)`): anything else is refused, so no visitor-made string becomes a path, and
an id cannot be guessed. Knowing the id is owning the workspace: the app keeps it in the visitor's
browser and never shows it to anybody else.

A workspace expires after `idle_s` without a visit and holds at most `quota_bytes` on disk;
`Workspaces.sweep()` removes expired workspaces and the leftovers of crashed writes. No framework
import.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import stat
import threading
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from classroom.people import LOCAL, People

ID_PATTERN = re.compile(r"[0-9a-f]{32}")
SEEN = ".seen"  # its modification time is the workspace's last visit
OWNER = ".person"  # who made it (a hash, classroom/people.py)
INCOMING = ".incoming"  # uploads being unpacked (not offered until complete)
UPLOAD_NAME = re.compile(r"[^A-Za-z0-9._-]+")
BOARD_NAME = "board-name.txt"  # the name its owner chose for the class board (text, never HTML)
MAX_BOARD_NAME = 30


def clean_board_name(name: object) -> str:
    """A name for the class board: one line of printable characters, at most MAX_BOARD_NAME."""
    text = "".join(ch if unicodedata.category(ch)[0] != "C" else " " for ch in str(name or "")[:4 * MAX_BOARD_NAME])
    return " ".join(text.split())[:MAX_BOARD_NAME]


class QuotaExceeded(ValueError):
    """A write would take the workspace over its disk quota; the message says by how much."""


@dataclass(frozen=True)
class Limits:
    idle_s: float = 24 * 3600  # a workspace unvisited this long is removed
    quota_bytes: int = 2**30  # uploads + runs + models of one workspace
    total_bytes: int = 20 * 2**30  # all workspaces together (a Space's disk is 50 GB)
    max_workspaces: int = 2000  # visitors' workspaces at once (each page visit without one makes one)

    @classmethod
    def from_env(cls) -> Limits:
        """`AVP_WORKSPACE_IDLE_HOURS` (default 24), `AVP_WORKSPACE_QUOTA_MB` (default 1024) and
        `AVP_WORKSPACES_TOTAL_GB` (default 20)."""
        hours = float(os.environ.get("AVP_WORKSPACE_IDLE_HOURS", 24))
        megabytes = float(os.environ.get("AVP_WORKSPACE_QUOTA_MB", 1024))
        gigabytes = float(os.environ.get("AVP_WORKSPACES_TOTAL_GB", 20))
        count = int(os.environ.get("AVP_MAX_WORKSPACES", 2000))
        return cls(idle_s=hours * 3600, quota_bytes=int(megabytes * 2**20), total_bytes=int(gigabytes * 2**30),
                   max_workspaces=count)


BLOCK = 4096  # what a file or folder costs on disk at least, whatever its size
MAX_DEPTH = 12  # folders below a workspace's root that the code measures; a deeper tree is removed


@dataclass(frozen=True)
class Usage:
    """What a folder costs on disk: files and folders count at least a block each, so 20,000 tiny
    files cost 80 MB, not the 20 KB their bytes say."""
    bytes: int = 0
    files: int = 0
    folders: int = 0
    depth: int = 0  # the deepest folder below the one measured


def walk(folder: Path):
    """(depth, directory entry) of everything under `folder`, links not followed, with a stack of
    its own: no recursion, however deep the tree (os.walk, rglob and rmtree recurse in Python 3.11,
    and one 11 KB zip of nested folders made them fail for every visitor). What vanishes meanwhile
    is skipped."""
    stack = [(str(folder), 0)]
    while stack:
        path, depth = stack.pop()
        try:
            with os.scandir(path) as entries:
                for entry in entries:
                    yield depth + 1, entry
                    with contextlib.suppress(OSError):
                        if entry.is_dir(follow_symlinks=False):
                            stack.append((entry.path, depth + 1))
        except OSError:
            continue


def measure(folder: Path) -> Usage:
    """The disk `folder` takes, counting every file and folder as at least a block."""
    size = files = folders = deepest = 0
    for depth, entry in walk(folder):
        try:
            info = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        deepest = max(deepest, depth)
        if stat.S_ISDIR(info.st_mode):
            folders += 1
            size += BLOCK
        else:
            files += 1
            size += max(BLOCK, -(-info.st_size // BLOCK) * BLOCK)
    return Usage(size, files, folders, deepest)


def folder_bytes(folder: Path) -> int:
    return measure(folder).bytes


def remove_tree(path: Path) -> None:
    """Remove a folder and everything in it without recursion (shutil.rmtree recurses in Python 3.11:
    a deep enough tree raised RecursionError, which ignore_errors does not catch). Errors are ignored."""
    folders = [str(path)]
    for _, entry in walk(path):
        with contextlib.suppress(OSError):
            if entry.is_dir(follow_symlinks=False):
                folders.append(entry.path)
            else:
                os.unlink(entry.path)
    for folder in reversed(folders):  # walk lists a folder before anything below it
        with contextlib.suppress(OSError):
            os.rmdir(folder)
    with contextlib.suppress(OSError):
        if not path.is_dir():
            path.unlink()


class Workspace:
    def __init__(self, root: Path, limits: Limits, home: Workspaces | None = None):
        self.root = root
        self.id = root.name
        self.limits = limits
        self.home = home  # the Workspaces it belongs to: totals over all visitors, owners, locks

    @property
    def uploads(self) -> Path:
        return self.root / "uploads"

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def settings_file(self) -> Path:
        return self.root / "settings.json"

    @property
    def board_name(self) -> str:
        """The name its owner chose for the class board; "" when none."""
        try:
            return clean_board_name((self.root / BOARD_NAME).read_text(errors="replace")[:400])
        except OSError:
            return ""

    def set_board_name(self, name: object) -> str:
        """Keep a name for the class board (cleaned, at most MAX_BOARD_NAME; "" removes it)."""
        cleaned = clean_board_name(name)
        (self.root / BOARD_NAME).write_text(cleaned)
        return cleaned

    @property
    def person(self) -> str:
        """Who made this workspace (classroom/people.py: a hash, never an address)."""
        return self.home.owner(self.id) if self.home else LOCAL

    def lock(self) -> threading.Lock:
        """Held while an upload is checked against the quota and unpacked: two uploads at once
        cannot both pass the same free space."""
        return self.home.lock_of(self.id) if self.home else threading.Lock()

    def touch(self) -> None:
        """Record a visit: the idle clock starts again."""
        (self.root / SEEN).touch()

    def used_bytes(self) -> int:
        """Measured now (this workspace's own folders only), and kept for the totals."""
        used = measure(self.root).bytes
        if self.home:
            self.home.record_usage(self.id, used)
        return used

    def free_bytes(self) -> int:
        """What this workspace may still write: its own quota, its person's disk, and what all
        workspaces have left (those two from totals kept as workspaces change: no other visitor's
        folder is walked)."""
        return max(0, min(self._free_by_limit(self.used_bytes())))

    def _free_by_limit(self, used: int) -> tuple[int, ...]:
        own = self.limits.quota_bytes - used
        if not self.home:
            return (own,)
        person = self.home.people.budgets.disk_bytes - self.home.person_bytes(self.person)
        return own, person, self.limits.total_bytes - self.home.total_bytes()

    def tightest_limit(self) -> str:
        """Which limit leaves this workspace the least, and what to do about it."""
        left = self._free_by_limit(self.used_bytes())
        return ["what is left of your workspace's quota: delete an upload first",
                "what is left of the disk for your address (or account): delete uploads you no longer need",
                "what is left of the server's disk for visitors: try again later"][left.index(min(left))]

    def require_free(self, needed: int, what: str) -> None:
        """Raise QuotaExceeded unless `needed` more bytes fit, saying which limit stops it."""
        own, *others = self._free_by_limit(self.used_bytes())
        if needed > own:
            raise QuotaExceeded(
                f"{what} needs about {needed / 2**20:.0f} MB, but your workspace has "
                f"{max(0, own) / 2**20:.0f} MB of its {self.limits.quota_bytes / 2**20:.0f} MB left: "
                "delete an upload first")
        if others and needed > others[0]:
            raise QuotaExceeded(
                f"{what} needs about {needed / 2**20:.0f} MB, but the workspaces made from your address "
                f"(or account) already use the {self.home.people.budgets.disk_bytes / 2**30:.1f} GB one "
                "address may: delete uploads you no longer need (any of your workspaces)")
        if others and needed > others[1]:
            raise QuotaExceeded(f"{what} needs about {needed / 2**20:.0f} MB, but the server's disk for "
                                "visitors is full: try again later")

    def upload_folder(self, file_name: str) -> Path:
        """A new, empty folder for an upload, named after the visitor's file (made safe)."""
        stem = UPLOAD_NAME.sub("_", Path(file_name).stem).strip("._")[:40] or "upload"
        self.uploads.mkdir(parents=True, exist_ok=True)
        for n in range(1, 1000):
            candidate = self.uploads / (stem if n == 1 else f"{stem}_{n}")
            try:
                candidate.mkdir()
                return candidate
            except FileExistsError:
                continue
        raise QuotaExceeded("too many uploads in this workspace: delete some first")

    def upload_names(self) -> list[str]:
        """The visitor's uploaded data sets, by name (their folder names under uploads/)."""
        if not self.uploads.is_dir():
            return []
        return sorted(p.name for p in self.uploads.iterdir() if p.is_dir() and not p.name.startswith("."))

    def upload_path(self, name: str) -> Path | None:
        """The folder of the upload called `name`, found by listing (never by joining the name)."""
        return next((self.uploads / n for n in self.upload_names() if n == name), None)

    def remove_upload(self, name: str) -> bool:
        path = self.upload_path(name)
        if path is None:
            return False
        remove_tree(path)
        self.used_bytes()
        return True

    def is_empty(self) -> bool:
        """Nothing uploaded, run or trained: removing it loses nothing but the id."""
        return not any(any(folder.iterdir()) for folder in (self.uploads, self.runs, self.models)
                       if folder.is_dir())


class Workspaces:
    """Every visitor's workspace under one folder, who made each (a person, classroom/people.py),
    and the disk each takes (kept as workspaces change, so totals need no walk of anyone's folders)."""

    def __init__(self, root: str | Path, limits: Limits | None = None, people: People | None = None):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.limits = limits or Limits.from_env()
        self.people = people or People()
        self.in_use: Callable[[str], bool] = lambda workspace_id: False  # the queue sets it
        self._lock = threading.RLock()
        self._locks: dict[str, threading.Lock] = {}
        self._owners: dict[str, str] = {}  # workspace id -> person
        self._usage: dict[str, int] = {}  # workspace id -> bytes, as last measured
        for path in self.root.iterdir():  # once, at start-up: the totals every request reads
            if path.is_dir() and ID_PATTERN.fullmatch(path.name):
                self._index(path)

    def _index(self, root: Path) -> None:
        try:
            owner = (root / OWNER).read_text().strip() or LOCAL
        except OSError:
            owner = LOCAL
        with self._lock:
            self._owners[root.name] = owner
            self._usage[root.name] = measure(root).bytes

    # ------------------------------------------------------------ totals

    def owner(self, workspace_id: str) -> str:
        with self._lock:
            return self._owners.get(workspace_id, LOCAL)

    def record_usage(self, workspace_id: str, used: int) -> None:
        with self._lock:
            if workspace_id in self._owners:
                self._usage[workspace_id] = used

    def total_bytes(self) -> int:
        with self._lock:
            return sum(self._usage.values())

    def person_bytes(self, person: str) -> int:
        with self._lock:
            return sum(self._usage.get(w, 0) for w, p in self._owners.items() if p == person)

    def lock_of(self, workspace_id: str) -> threading.Lock:
        with self._lock:
            return self._locks.setdefault(workspace_id, threading.Lock())

    def count(self) -> int:
        with self._lock:
            return len(self._owners)

    def _forget(self, workspace_id: str) -> None:
        with self._lock:
            for table in (self._owners, self._usage, self._locks):
                table.pop(workspace_id, None)

    # ------------------------------------------------------------ making and finding

    def create(self, person: str = LOCAL) -> Workspace:
        """A new workspace for `person`. OverBudget past their hourly count; when the server holds
        as many workspaces as it may, the heaviest person's empty workspaces go first (least
        recently visited first), so a new visitor is not refused because somebody else flooded."""
        self.people.allow(person, "workspace")
        with self._lock:
            if self.count() >= self.limits.max_workspaces and not self._make_room():
                raise QuotaExceeded("the server has as many visitors' workspaces as it can keep, none of them "
                                    "unused: try again later")
            space = Workspace(self.root / secrets.token_hex(16), self.limits, self)
            for folder in (space.root, space.uploads, space.runs, space.models):
                folder.mkdir(exist_ok=True)
            (space.root / OWNER).write_text(person)
            space.touch()
            self._owners[space.id], self._usage[space.id] = person, measure(space.root).bytes
        return space

    def _make_room(self) -> bool:
        """Remove one empty, unused workspace of the person holding the most (the least recently
        visited of theirs); after that, the expiry sweep. True when there is room."""
        by_person: dict[str, list[str]] = {}
        for workspace_id, person in self._owners.items():
            by_person.setdefault(person, []).append(workspace_id)
        for person in sorted(by_person, key=lambda p: -len(by_person[p])):
            spaces = [Workspace(self.root / w, self.limits, self) for w in by_person[person]]
            empty = [s for s in spaces if not self.in_use(s.id) and s.is_empty()]
            if empty:
                oldest = min(empty, key=lambda s: self._seen(s.root))
                self._remove(oldest.root)
                return True
        self.sweep(self.in_use)
        return self.count() < self.limits.max_workspaces

    def _seen(self, root: Path) -> float:
        try:
            return (root / SEEN).stat().st_mtime
        except OSError:
            return 0.0

    def _remove(self, root: Path) -> None:
        remove_tree(root)
        self._forget(root.name)

    def open(self, workspace_id: object) -> Workspace | None:
        """The workspace with this id, visited now; None for a malformed, unknown or expired id."""
        if not isinstance(workspace_id, str) or not ID_PATTERN.fullmatch(workspace_id):
            return None
        root = self.root / workspace_id
        if not root.is_dir() or self._expired(root, time.time()):
            return None
        space = Workspace(root, self.limits, self)
        if workspace_id not in self._owners:  # made by another process (a test) since start-up
            self._index(root)
        space.touch()
        return space

    def open_or_create(self, workspace_id: object, person: str = LOCAL) -> Workspace:
        return self.open(workspace_id) or self.create(person)

    def all(self) -> list[Workspace]:
        return [Workspace(p, self.limits, self) for p in sorted(self.root.iterdir())
                if p.is_dir() and ID_PATTERN.fullmatch(p.name)]

    def _expired(self, root: Path, now: float) -> bool:
        try:
            seen = (root / SEEN).stat().st_mtime
        except OSError:  # being made right now, or half-made by a crash long ago
            with contextlib.suppress(OSError):
                return now - root.stat().st_mtime > 3600
            return True
        return now - seen > self.limits.idle_s

    def sweep(self, in_use: Callable[[str], bool] | None = None, now: float | None = None) -> list[str]:
        """Remove expired workspaces (unless `in_use(id)`: a queued or running run), anything in the
        root that is not a workspace (a crash's leftovers), and in the others what cannot be
        measured (uploads deeper than MAX_DEPTH); measure the rest again. Return what was removed."""
        in_use = in_use or self.in_use
        now = time.time() if now is None else now
        removed = []
        for path in sorted(self.root.iterdir()):
            is_workspace = path.is_dir() and ID_PATTERN.fullmatch(path.name)
            if is_workspace and (not self._expired(path, now) or in_use(path.name)):
                removed += self._sweep_unfinished_uploads(path, now) + self._sweep_too_deep(path)
                with self._lock:
                    if path.name in self._owners:
                        self._usage[path.name] = measure(path).bytes
                continue
            if path.name.startswith(".keep"):  # the app's own files (its browser-state secret)
                continue
            remove_tree(path)
            self._forget(path.name)
            removed.append(path.name)
        return removed

    def _sweep_unfinished_uploads(self, root: Path, now: float) -> list[str]:
        """Uploads still being unpacked an hour later were cut off by a crash."""
        removed = []
        incoming = root / "uploads" / INCOMING
        for path in sorted(incoming.iterdir()) if incoming.is_dir() else ():
            if now - path.stat().st_mtime > 3600:
                remove_tree(path)
                removed.append(f"{root.name}/uploads/{INCOMING}/{path.name}")
        return removed

    def _sweep_too_deep(self, root: Path) -> list[str]:
        """Folders of a workspace nested deeper than MAX_DEPTH (no upload makes them: trainer/archive.py
        refuses deep zips) are removed whole: nothing that walks them can be trusted to finish."""
        removed = []
        for top in (root / "uploads", root / "runs", root / "models"):
            for path in sorted(top.iterdir()) if top.is_dir() else ():
                if path.is_dir() and measure(path).depth > MAX_DEPTH:
                    remove_tree(path)
                    removed.append(f"{root.name}/{top.name}/{path.name}")
        return removed

    def secret(self) -> str:
        """A secret kept across restarts (the browser's encrypted workspace id needs the same key)."""
        path = self.root / ".keep-secret"
        if not path.is_file():
            temporary = path.with_suffix(".tmp")
            temporary.write_text(secrets.token_urlsafe(32))
            os.replace(temporary, path)
        return path.read_text().strip()
