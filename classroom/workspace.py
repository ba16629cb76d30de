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
import shutil
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ID_PATTERN = re.compile(r"[0-9a-f]{32}")
SEEN = ".seen"  # its modification time is the workspace's last visit
INCOMING = ".incoming"  # uploads being unpacked (not offered until complete)
UPLOAD_NAME = re.compile(r"[^A-Za-z0-9._-]+")


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


def folder_bytes(folder: Path) -> int:
    """Bytes of the regular files under `folder` (links not followed). Other visitors' folders
    come and go meanwhile: what vanishes is skipped (os.walk ignores such errors)."""
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            try:
                info = os.lstat(os.path.join(root, name))
            except OSError:
                continue
            total += info.st_size if stat.S_ISREG(info.st_mode) else 0
    return total


class Workspace:
    def __init__(self, root: Path, limits: Limits):
        self.root = root
        self.id = root.name
        self.limits = limits

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

    def touch(self) -> None:
        """Record a visit: the idle clock starts again."""
        (self.root / SEEN).touch()

    def used_bytes(self) -> int:
        return folder_bytes(self.root)

    def free_bytes(self) -> int:
        """What this workspace may still write: its own quota, and what all workspaces have left."""
        own = self.limits.quota_bytes - self.used_bytes()
        shared = self.limits.total_bytes - folder_bytes(self.root.parent)
        return max(0, min(own, shared))

    def require_free(self, needed: int, what: str) -> None:
        """Raise QuotaExceeded unless `needed` more bytes fit, saying which limit stops it."""
        own = self.limits.quota_bytes - self.used_bytes()
        if needed > own:
            raise QuotaExceeded(
                f"{what} needs about {needed / 2**20:.0f} MB, but your workspace has "
                f"{max(0, own) / 2**20:.0f} MB of its {self.limits.quota_bytes / 2**20:.0f} MB left: "
                "delete an upload first")
        if needed > self.free_bytes():
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
        shutil.rmtree(path, ignore_errors=True)
        return True


class Workspaces:
    """Every visitor's workspace under one folder."""

    def __init__(self, root: str | Path, limits: Limits | None = None):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.limits = limits or Limits.from_env()

    def create(self) -> Workspace:
        if len(self.all()) >= self.limits.max_workspaces:
            self.sweep()
            if len(self.all()) >= self.limits.max_workspaces:
                raise QuotaExceeded("the server has as many visitors' workspaces as it can keep: try again later")
        space = Workspace(self.root / secrets.token_hex(16), self.limits)
        for folder in (space.root, space.uploads, space.runs, space.models):
            folder.mkdir(exist_ok=True)
        space.touch()
        return space

    def open(self, workspace_id: object) -> Workspace | None:
        """The workspace with this id, visited now; None for a malformed, unknown or expired id."""
        if not isinstance(workspace_id, str) or not ID_PATTERN.fullmatch(workspace_id):
            return None
        root = self.root / workspace_id
        if not root.is_dir() or self._expired(root, time.time()):
            return None
        space = Workspace(root, self.limits)
        space.touch()
        return space

    def open_or_create(self, workspace_id: object) -> Workspace:
        return self.open(workspace_id) or self.create()

    def all(self) -> list[Workspace]:
        return [Workspace(p, self.limits) for p in sorted(self.root.iterdir())
                if p.is_dir() and ID_PATTERN.fullmatch(p.name)]

    def _expired(self, root: Path, now: float) -> bool:
        try:
            seen = (root / SEEN).stat().st_mtime
        except OSError:  # being made right now, or half-made by a crash long ago
            with contextlib.suppress(OSError):
                return now - root.stat().st_mtime > 3600
            return True
        return now - seen > self.limits.idle_s

    def sweep(self, in_use: Callable[[str], bool] = lambda workspace_id: False,
              now: float | None = None) -> list[str]:
        """Remove expired workspaces (unless `in_use(id)`: a queued or running run) and anything
        in the root that is not a workspace (a crash's leftovers). Return what was removed."""
        now = time.time() if now is None else now
        removed = []
        for path in sorted(self.root.iterdir()):
            is_workspace = path.is_dir() and ID_PATTERN.fullmatch(path.name)
            if is_workspace and (not self._expired(path, now) or in_use(path.name)):
                removed += self._sweep_unfinished_uploads(path, now)
                continue
            if path.name.startswith(".keep"):  # the app's own files (its browser-state secret)
                continue
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
            removed.append(path.name)
        return removed

    def _sweep_unfinished_uploads(self, root: Path, now: float) -> list[str]:
        """Uploads still being unpacked an hour later were cut off by a crash."""
        removed = []
        incoming = root / "uploads" / INCOMING
        for path in sorted(incoming.iterdir()) if incoming.is_dir() else ():
            if now - path.stat().st_mtime > 3600:
                shutil.rmtree(path, ignore_errors=True)
                removed.append(f"{root.name}/uploads/{INCOMING}/{path.name}")
        return removed

    def secret(self) -> str:
        """A secret kept across restarts (the browser's encrypted workspace id needs the same key)."""
        path = self.root / ".keep-secret"
        if not path.is_file():
            temporary = path.with_suffix(".tmp")
            temporary.write_text(secrets.token_urlsafe(32))
            os.replace(temporary, path)
        return path.read_text().strip()
