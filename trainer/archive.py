"""Unpack an uploaded or downloaded data-set .zip safely into a fresh folder (no framework import).

One code path for the app's upload, `check-data x.zip` and `fetch-data`. Limits are checked before
anything is written: the zip's size, what it unpacks to, its entries and how deep its folders go
(a deep tree is cheap to send and costly for everything that walks it later); names that collide
once letter case and Unicode forms are set aside ("Alien" and "alien", "café" in its two forms:
one folder on some disks, two look-alike classes on others) and entries that appear twice are
refused, naming them. Entries that would land outside the folder (absolute paths, `..`), symlinks
and special files are skipped and reported; macOS `__MACOSX` and hidden files are left out.
"""

from __future__ import annotations

import shutil
import stat
import tempfile
import unicodedata
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from trainer.data import DataError

MAX_ZIP_BYTES = 200 * 2**20  # the archive itself
MAX_TOTAL_BYTES = 1 * 2**30  # everything it unpacks to
MAX_ENTRIES = 10_000  # files and folders (each costs a disk block, whatever its size)
MAX_DEPTH = 8  # path parts of an entry: wrapper/train/class/sub/file fits, a nested bomb does not
CHUNK = 2**20
BLOCK = 4096  # a file takes at least this much disk, whatever its size: budgets count it so


def disk_bytes(size: int) -> int:
    return max(BLOCK, -(-size // BLOCK) * BLOCK)


@dataclass
class Extracted:
    root: Path
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (entry, why)


def extract_zip(zip_path: str | Path, dest_parent: str | Path | None = None,
                max_zip_bytes: int = MAX_ZIP_BYTES, max_total_bytes: int = MAX_TOTAL_BYTES,
                max_entries: int = MAX_ENTRIES) -> Extracted:
    """Unpack into a new folder under `dest_parent` (the caller's, e.g. a visitor's uploads folder).

    `max_total_bytes` bounds what is written (set it from the visitor's remaining disk quota).
    Raises DataError when the zip is refused or fails part-way; the new folder is then removed,
    whatever the failure. Messages name the zip and its own entry names, never server paths.
    """
    zip_path = Path(zip_path)
    name = zip_path.name
    size = zip_path.stat().st_size
    if size > max_zip_bytes:
        raise DataError([f"{name}: {megabytes(size)}, more than the {megabytes(max_zip_bytes)} allowed"])
    try:
        archive = zipfile.ZipFile(zip_path)
    except Exception as error:  # noqa: BLE001 - whatever the bytes are, they are not a usable zip
        detail = f" ({error})" if isinstance(error, zipfile.BadZipFile) else ""
        raise DataError([f"{name}: not a valid zip archive{detail}"]) from None
    with archive:
        infos = archive.infolist()
        if len(infos) > max_entries:
            raise DataError([f"{name}: {len(infos)} entries, more than the {max_entries} allowed"])
        problems = shape_problems(infos, name)
        if problems:
            raise DataError(problems)
        total = sum(disk_bytes(info.file_size) for info in infos if not refuse_reason(info))
        if total > max_total_bytes:
            raise DataError([f"{name}: unpacks to {megabytes(total)}, more than the "
                             f"{megabytes(max_total_bytes)} allowed"])
        root = Path(tempfile.mkdtemp(prefix="dataset-", dir=dest_parent))
        try:
            return Extracted(root, unpack(archive, infos, root, max_total_bytes, name))
        except BaseException:  # a refusal, a damaged entry, a full disk, even an interrupt
            shutil.rmtree(root, ignore_errors=True)
            raise


def unpack(archive: zipfile.ZipFile, infos: list, root: Path, max_total_bytes: int, name: str) -> list:
    """Write every entry that is not refused; return the skipped ones as (entry, why)."""
    skipped, left = [], max_total_bytes
    for info in infos:
        why = refuse_reason(info)
        if why:
            if why != "hidden":
                skipped.append((info.filename, why))
            continue
        target = root.joinpath(*PurePosixPath(info.filename.replace("\\", "/")).parts)
        if root.resolve() not in target.resolve().parents:
            raise DataError([f"{name}: entry {info.filename!r} leads outside the folder"])
        try:
            left -= disk_bytes(copy_entry(archive, info, target, left))
        except Exception as error:  # noqa: BLE001 - one entry the zip cannot give: refuse the zip
            raise DataError([f"{name}: entry {info.filename!r} {why_unreadable(error)}"]) from None
        if left < 0:  # headers can lie: the bytes really written count
            raise DataError([f"{name}: unpacks to more than the {megabytes(max_total_bytes)} allowed"])
    return skipped


def folded(part: str) -> str:
    """A name as a case-insensitive or normalising disk (or a person) sees it."""
    return unicodedata.normalize("NFC", part).casefold()


def shape_problems(infos: list, name: str, max_depth: int = MAX_DEPTH, shown: int = 5) -> list[str]:
    """Entries nested deeper than `max_depth`, entries that appear twice, and names (of folders and
    files alike) that differ only in letter case or Unicode form: every problem, named."""
    too_deep, files, folders, exact, problems = None, {}, {}, set(), []

    def collide(first: str, other: str) -> None:
        problems.append(f"{name}: {first[:120]!r} and {other[:120]!r} differ only in letter case or "
                        "Unicode form: rename one")

    for info in infos:
        if refuse_reason(info):
            continue
        parts = PurePosixPath(info.filename.replace("\\", "/")).parts
        if len(parts) > max_depth and too_deep is None:
            too_deep = (f"{name}: entry {info.filename[:120]!r} is {len(parts)} folders deep, more than "
                        f"the {max_depth} allowed")
        for end in range(1, len(parts)):
            original = "/".join(parts[:end])
            first = folders.setdefault(tuple(folded(p) for p in parts[:end]), original)
            if first != original:
                collide(first, original)
        full = "/".join(parts)
        first = files.setdefault(tuple(folded(p) for p in parts), full)
        if full in exact:
            problems.append(f"{name}: entry {full[:120]!r} appears twice (the second would replace the first)")
        elif first != full:
            collide(first, full)
        exact.add(full)
    unique = list(dict.fromkeys(problems))
    return ([too_deep] if too_deep else []) + unique[:shown] + (
        [f"{name}: and {len(unique) - shown} more such names"] if len(unique) > shown else [])


def why_unreadable(error: Exception) -> str:
    """Plain words for an entry that failed, without the server paths OSErrors carry."""
    if isinstance(error, RuntimeError) and "encrypted" in str(error):
        return "is encrypted (password-protected zips cannot be used)"
    if isinstance(error, NotImplementedError):
        return "uses a compression method that cannot be read here"
    if isinstance(error, (zipfile.BadZipFile, zlib.error, EOFError)):
        return f"is damaged ({error})"
    if isinstance(error, OSError):
        return f"cannot be written ({error.strerror or type(error).__name__})"
    return f"cannot be unpacked ({type(error).__name__})"


def megabytes(size: int) -> str:
    return f"{size / 2**20:.0f} MB" if size >= 10 * 2**20 else f"{size / 2**20:.1f} MB"


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


def copy_entry(archive: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, limit: int) -> int:
    """Stream one entry to disk, stopping once past `limit` bytes; return the bytes it gave."""
    target.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with archive.open(info) as source, open(target, "wb") as sink:
        while chunk := source.read(CHUNK):
            written += len(chunk)
            if written > limit:
                break
            sink.write(chunk)
    return written
