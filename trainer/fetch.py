"""Download the Alien vs. Predator images (`python -m trainer fetch-data --dest DIR`).

Source: the public GitHub repository of the seed article, deepsense-ai/Keras-PyTorch-AvP-transfer-
learning, folder `data/` (694 training and 200 validation images, 2 classes). The archive goes
through the same safe unpacking as uploads, then the counts are checked. Offline it fails within
seconds and says what to do instead.
"""

from __future__ import annotations

import shutil
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

from trainer import archive, data

AVP_URL = ("https://github.com/deepsense-ai/Keras-PyTorch-AvP-transfer-learning/"
           "archive/refs/heads/master.zip")
AVP_COUNTS = {"train": 694, "val": 200}
TIMEOUT_S = 15


class FetchError(RuntimeError):
    pass


def offline_help(dest: Path, error: BaseException) -> str:
    return (f"could not download the AvP images ({error}). Instead: download "
            "https://www.kaggle.com/datasets/pmigdal/alien-vs-predator-images or the data/ folder "
            "of github.com/deepsense-ai/Keras-PyTorch-AvP-transfer-learning on a machine with "
            f"internet, and unpack it so that {dest}/train/alien/... exists; or point AVP_DATA_DIR "
            "at a copy; or upload a .zip of class folders in the app's Train tab.")


def download(url: str, target: Path, progress=True) -> None:
    """Stream `url` to `target` with a progress bar; the file appears only when complete."""
    partial = target.with_suffix(target.suffix + ".part")
    with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response, open(partial, "wb") as sink:
        total = int(response.headers.get("Content-Length") or 0) or None
        with tqdm(total=total, unit="B", unit_scale=True, desc="AvP images", disable=not progress) as bar:
            while chunk := response.read(2**16):
                sink.write(chunk)
                bar.update(len(chunk))
    partial.replace(target)


def find_data_root(folder: Path) -> Path:
    """The folder holding train/ (the archive nests it as <repo>-master/data/train)."""
    for candidate in sorted(folder.rglob("train"), key=lambda p: len(p.parts)):
        if candidate.is_dir() and data.find_split(candidate.parent, "val"):
            return candidate.parent
    raise FetchError("the downloaded archive holds no train/ and validation/ folders")


def fetch(dest: str | Path, url: str = AVP_URL, expected: dict | None = AVP_COUNTS,
          progress: bool = True) -> data.DataSet:
    """Download and unpack into `dest` (train/ and validation/); return the checked data set."""
    dest = Path(dest)
    if data.find_split(dest, "train") if dest.is_dir() else False:
        raise FetchError(f"{dest} already holds a train/ folder; remove it or choose another --dest")
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="fetch-", dir=dest) as scratch:
        zip_path = Path(scratch) / "avp.zip"
        try:
            download(url, zip_path, progress)
        except (urllib.error.URLError, OSError, TimeoutError) as error:
            raise FetchError(offline_help(dest, error)) from None
        unpacked = archive.extract_zip(zip_path, scratch)
        root = find_data_root(unpacked.root)
        for split in ("train", "val"):
            shutil.move(str(data.find_split(root, split)), dest)
    dataset = data.discover(dest)
    counts = {"train": len(dataset.train), "val": len(dataset.val)}
    if expected and counts != expected:
        raise FetchError(f"downloaded {counts}, expected {expected}: the source changed or the "
                         "download is incomplete")
    return dataset
