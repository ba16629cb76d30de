"""Zips that fail part-way leave nothing behind, and say why without server paths.

The zips are built here, then their headers patched: the encryption flag, an unsupported
compression method, a garbled or truncated deflate stream. A disk that fills up is simulated.
"""

import errno
import io
import os
import random
import struct
import zipfile

import pytest
from PIL import Image

from trainer import archive, data

BAD = "set/train/b/bad.jpg"


def image_bytes(value: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (12, 12), (value,) * 3).save(buffer, "JPEG")
    return buffer.getvalue()


def zip_with_bad_entry(path, bad_payload: bytes = None) -> bytes:
    """Six good images, then BAD (deflated), then more: a failure on BAD comes after files were written."""
    payload = bad_payload or random.Random(0).randbytes(60_000) + bytes(60_000)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zip_file:
        for i in range(6):
            zip_file.writestr(f"set/train/a/{i}.jpg", image_bytes(40))
        zip_file.writestr(BAD, payload)
        zip_file.writestr("set/train/b/after.jpg", image_bytes(200))
    return path.read_bytes()


def patch(path, name: str, local_offset: int, central_offset: int, value: bytes) -> None:
    """Overwrite a field of `name`'s local header and of its central directory record."""
    raw = bytearray(path.read_bytes())
    info = zipfile.ZipFile(path).getinfo(name)
    local = info.header_offset + local_offset
    raw[local:local + len(value)] = value
    central = raw.index(b"PK\x01\x02")
    while raw[central + 46:central + 46 + len(name)] != name.encode():
        central = raw.index(b"PK\x01\x02", central + 4)
    raw[central + central_offset:central + central_offset + len(value)] = value
    path.write_bytes(bytes(raw))


def encrypted(path):
    zip_with_bad_entry(path)
    flags = zipfile.ZipFile(path).getinfo(BAD).flag_bits | 0x1
    patch(path, BAD, 6, 8, struct.pack("<H", flags))


def unsupported_method(path):
    zip_with_bad_entry(path)
    patch(path, BAD, 8, 10, struct.pack("<H", 99))  # 99: WinZip AES


def garbled_deflate(path):
    zip_with_bad_entry(path)
    info = zipfile.ZipFile(path).getinfo(BAD)
    raw = bytearray(path.read_bytes())
    start = info.header_offset + 30 + len(BAD)
    raw[start] = 0b110  # deflate block type 3, which does not exist: zlib.error
    path.write_bytes(bytes(raw))


def truncated_deflate(path):
    zip_with_bad_entry(path)
    size = zipfile.ZipFile(path).getinfo(BAD).compress_size
    patch(path, BAD, 18, 20, struct.pack("<I", size // 2))


@pytest.fixture
def uploads(tmp_path):
    """The folder a caller owns (a visitor's workspace uploads/): it must stay empty on failure."""
    folder = tmp_path / "workspace" / "uploads"
    folder.mkdir(parents=True)
    return folder


@pytest.mark.parametrize("make, words", [
    (encrypted, "is encrypted"),
    (unsupported_method, "compression method"),
    (garbled_deflate, "is damaged"),
    (truncated_deflate, "is damaged"),
], ids=["encrypted", "unsupported-method", "garbled-deflate", "truncated-deflate"])
def test_a_zip_failing_part_way_leaves_nothing(tmp_path, uploads, make, words):
    make(tmp_path / "holiday.zip")
    with pytest.raises(data.DataError) as error:
        archive.extract_zip(tmp_path / "holiday.zip", uploads)
    message = str(error.value)
    assert message.startswith(f"holiday.zip: entry '{BAD}' ") and words in message, message
    assert str(tmp_path) not in message
    assert list(uploads.iterdir()) == []


def test_a_full_disk_leaves_nothing_and_shows_no_server_path(tmp_path, uploads, monkeypatch):
    zip_with_bad_entry(tmp_path / "big.zip")
    real_open = open

    def open_until_full(path, mode="r", *args, **kwargs):
        if "w" in mode and str(path).endswith("bad.jpg"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real_open(path, mode, *args, **kwargs)
    monkeypatch.setattr(archive, "open", open_until_full, raising=False)
    with pytest.raises(data.DataError, match=f"^big.zip: entry '{BAD}' cannot be written "
                                             r"\(No space left on device\)$"):
        archive.extract_zip(tmp_path / "big.zip", uploads)
    assert list(uploads.iterdir()) == []


def test_the_callers_budget_is_named_in_megabytes(tmp_path, uploads):
    zip_with_bad_entry(tmp_path / "set.zip", bad_payload=bytes(3 * 2**20))
    with pytest.raises(data.DataError, match=r"^set.zip: unpacks to 3.0 MB, more than the 1.5 MB allowed"):
        archive.extract_zip(tmp_path / "set.zip", uploads, max_total_bytes=3 * 2**19)
    assert list(uploads.iterdir()) == []
    extracted = archive.extract_zip(tmp_path / "set.zip", uploads, max_total_bytes=4 * 2**20)
    assert extracted.root.parent == uploads and len(list(extracted.root.rglob("*.jpg"))) == 8


def test_a_file_that_is_not_a_zip_shows_no_server_path(tmp_path, uploads):
    (tmp_path / "notes.zip").write_text("not a zip")
    with pytest.raises(data.DataError, match="^notes.zip: not a valid zip archive") as error:
        archive.extract_zip(tmp_path / "notes.zip", uploads)
    assert str(tmp_path) not in str(error.value)
