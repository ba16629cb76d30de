"""Unpack an uploaded or downloaded data-set .zip safely into a fresh folder (no framework import).

One code path for the app's upload, `check-data x.zip` and `fetch-data`. Limits are checked before
anything is written; entries that would land outside the folder (absolute paths, `..`), symlinks
and special files are skipped and reported; macOS `__MACOSX` and hidden files are left out.
"""

from __future__ import annotations

import shutil
import stat
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from trainer.data import DataError

MAX_ZIP_BYTES = 200 * 2**20  # the archive itself
MAX_TOTAL_BYTES = 1 * 2**30  # everything it unpacks to
MAX_ENTRIES = 20_000
CHUNK = 2**20


@dataclass
class Extracted:
    root: Path
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (entry, why)


def extract_zip(zip_path: str | Path, dest_parent: str | Path | None = None,
                max_zip_bytes: int = MAX_ZIP_BYTES, max_total_bytes: int = MAX_TOTAL_BYTES,
                max_entries: int = MAX_ENTRIES) -> Extracted:
    """Unpack into a new folder under `dest_parent`; raise DataError when the zip is refused."""
    zip_path = Path(zip_path)
    name = zip_path.name
    size = zip_path.stat().st_size
    if size > max_zip_bytes:
        raise DataError([f"{name}: {size / 2**20:.0f} MB, more than the {max_zip_bytes / 2**20:.0f} MB allowed"])
    try:
        archive = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError) as error:
        raise DataError([f"{name}: not a valid zip archive ({error})"]) from None
    with archive:
        infos = archive.infolist()
        if len(infos) > max_entries:
            raise DataError([f"{name}: {len(infos)} entries, more than the {max_entries} allowed"])
        total = sum(info.file_size for info in infos)
        if total > max_total_bytes:
            raise DataError([f"{name}: unpacks to {total / 2**20:.0f} MB, more than the "
                             f"{max_total_bytes / 2**20:.0f} MB allowed"])
        root = Path(tempfile.mkdtemp(prefix="dataset-", dir=dest_parent))
        result = Extracted(root)
        try:
            budget = max_total_bytes
            for info in infos:
                why = refuse_reason(info)
                if why:
                    if why != "hidden":
                        result.skipped.append((info.filename, why))
                    continue
                budget -= copy_entry(archive, info, root, budget, name)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as error:
            shutil.rmtree(root, ignore_errors=True)
            raise DataError([f"{name}: damaged archive ({error})"]) from None
        except DataError:
            shutil.rmtree(root, ignore_errors=True)
            raise
    return result


def refuse_reason(info: zipfile.ZipInfo) -> str | None:
    """Why an entry is not unpacked ("hidden" ones silently), or None to unpack it."""
    path = PurePosixPath(info.filename.replace("\\", "/"))
    mode = info.external_attr >> 16
    if info.filename.startswith(("/", "\\")) or (path.parts and ":" in path.parts[0]):
        return "absolute path"
    if ".." in path.parts:
        return "path leads outside the folder"
    if stat.S_ISLNK(mode):
        return "symbolic link"
    if info.is_dir():
        return "hidden"  # folders are made as their files need them
    if stat.S_IFMT(mode) not in (0, stat.S_IFREG):  # no type bits: a zip made without Unix modes
        return "special file"
    if any(part.startswith(".") or part == "__MACOSX" for part in path.parts):
        return "hidden"
    return None


def copy_entry(archive: zipfile.ZipFile, info: zipfile.ZipInfo, root: Path, budget: int, name: str) -> int:
    """Stream one entry to disk, counting real bytes (headers can lie); return bytes written."""
    target = root.joinpath(*PurePosixPath(info.filename.replace("\\", "/")).parts)
    if root.resolve() not in target.resolve().parents:
        raise DataError([f"{name}: entry {info.filename!r} leads outside the folder"])
    target.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with archive.open(info) as source, open(target, "wb") as sink:
        while chunk := source.read(CHUNK):
            written += len(chunk)
            if written > budget:
                raise DataError([f"{name}: unpacks to more than the allowed size"])
            sink.write(chunk)
    return written
