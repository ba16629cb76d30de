"""Hostile input: odd images, dangerous zips, broken models, failing and killed runs."""

import io
import json
import os
import signal
import stat
import threading
import time
import zipfile

import numpy as np
import pytest
from PIL import Image

from classroom import runs, worker
from conftest import make_dataset
from trainer import archive, data, frameworks, store
from trainer.config import TrainConfig
from trainer.frameworks import backend

FRAMEWORKS = frameworks.NAMES


def encoded(image, fmt, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def animated_gif() -> bytes:
    frames = [Image.new("P", (6, 6), i) for i in (10, 200)]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=50)
    return buffer.getvalue()


ODD_IMAGES = {
    "tiny-1x1": encoded(Image.new("RGB", (1, 1), (9, 9, 9)), "PNG"),
    "tall-3000x2": encoded(Image.new("RGB", (2, 3000), (1, 2, 3)), "PNG"),
    "wide-3000x2": encoded(Image.new("L", (3000, 2), 128), "JPEG"),
    "grayscale": encoded(Image.new("L", (20, 20), 77), "PNG"),
    "gray-alpha": encoded(Image.new("LA", (20, 20), (77, 10)), "PNG"),
    "16-bit": encoded(Image.fromarray(np.full((8, 8), 40000, np.uint16)), "PNG"),
    "cmyk-jpeg": encoded(Image.new("CMYK", (16, 16), (0, 255, 255, 0)), "JPEG"),
    "animated-gif": animated_gif(),
    "webp": encoded(Image.new("RGB", (16, 16), (0, 0, 255)), "WEBP"),
    "bmp": encoded(Image.new("RGB", (16, 16), (0, 255, 0)), "BMP"),
}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    config = TrainConfig(data_dir="x", image_size=32, weights="none", head_units=8)
    return {fw: backend(fw).build_model(2, config)[0] for fw in FRAMEWORKS}


@pytest.mark.parametrize("name", list(ODD_IMAGES))
def test_odd_images_work_the_same_in_both_frameworks(name, models):
    array = data.to_array(data.load_rgb(ODD_IMAGES[name], name), 32)
    assert array.shape == (32, 32, 3) and array.dtype == np.uint8
    for framework, model in models.items():
        probabilities = backend(framework).predict_proba(model, array[None])
        assert np.isfinite(probabilities).all() and probabilities.sum() == pytest.approx(1, abs=1e-4)


def test_animated_gif_gives_its_first_frame():
    first = data.load_rgb(ODD_IMAGES["animated-gif"])
    assert first.getpixel((0, 0)) == Image.new("P", (1, 1), 10).convert("RGB").getpixel((0, 0))


# ---------------------------------------------------------------- zips

def make_zip(path, entries):
    """entries: (name, bytes, unix mode or None)."""
    with zipfile.ZipFile(path, "w") as archive_file:
        for name, payload, mode in entries:
            info = zipfile.ZipInfo(name)
            if mode is not None:
                info.external_attr = mode << 16
            archive_file.writestr(info, payload)
    return path


def image_bytes(value):
    return encoded(Image.new("RGB", (12, 12), (value, value, value)), "JPEG")


def good_entries(prefix="set/"):
    return [(f"{prefix}{split}/{cls}/{i}{ext}", image_bytes(40 if cls == "a" else 220), None)
            for split in ("train", "validation") for cls in ("a", "b")
            for i, ext in enumerate([".jpg", ".JPG", ".Jpeg"])]


def test_zip_entries_cannot_escape_the_folder(tmp_path):
    zip_path = make_zip(tmp_path / "evil.zip", good_entries() + [
        ("/tmp/absolute-evil.txt", b"x", None), ("../escaped-evil.txt", b"x", None),
        ("set/train/a/../../../../escaped2-evil.txt", b"x", None),
        ("set/train/a/link.jpg", b"/etc/passwd", stat.S_IFLNK | 0o777),
        ("set/train/a/fifo", b"", stat.S_IFIFO | 0o644),
    ])
    dest = tmp_path / "uploads"
    dest.mkdir()
    extracted = archive.extract_zip(zip_path, dest)
    reasons = dict(extracted.skipped)
    assert reasons["/tmp/absolute-evil.txt"] == "absolute path"
    assert reasons["../escaped-evil.txt"] == "path leads outside the folder"
    assert reasons["set/train/a/link.jpg"] == "symbolic link"
    assert reasons["set/train/a/fifo"] == "special file"
    assert not list(tmp_path.glob("*-evil.txt")) and not os.path.exists("/tmp/absolute-evil.txt")
    written = [p for p in dest.rglob("*") if p.is_file()]
    assert all(extracted.root in p.parents for p in written) and len(written) == 12
    assert not any(p.is_symlink() for p in extracted.root.rglob("*"))
    assert len(data.discover(extracted.root).train) == 6


def test_zip_limits_are_checked_before_extraction(tmp_path):
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive_file:
        archive_file.writestr("set/train/a/zeros.jpg", b"\0" * 20_000_000)
    assert bomb.stat().st_size < 100_000
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(data.DataError, match="unpacks to 19 MB, more than the 10 MB allowed"):
        archive.extract_zip(bomb, dest, max_total_bytes=10 * 2**20)
    with pytest.raises(data.DataError, match="12 entries, more than the 5 allowed"):
        archive.extract_zip(make_zip(tmp_path / "many.zip", good_entries()), dest, max_entries=5)
    with pytest.raises(data.DataError, match="allowed"):
        archive.extract_zip(bomb, dest, max_zip_bytes=1000)
    assert list(dest.iterdir()) == []


def test_macos_and_hidden_files_are_tolerated_and_validation_made(tmp_path):
    entries = [(n, b, m) for n, b, m in good_entries() if "/validation/" not in n] + [
        ("__MACOSX/set/train/a/._0.jpg", b"\0\5\26\7", None), ("set/.DS_Store", b"\0", None),
        ("set/train/a/.hidden.jpg", b"junk", None)]
    extracted = archive.extract_zip(make_zip(tmp_path / "mac.zip", entries), tmp_path)
    found = data.discover(extracted.root)
    assert found.classes == ["a", "b"] and not found.skipped
    assert "no validation folder" in found.notes[0] and len(found.val) == 2


@pytest.mark.parametrize("entries, words", [
    ([("set/train/a/0.jpg", image_bytes(1), None)] * 1, "need at least 2"),
    ([("set/train/a/0.jpg", image_bytes(1), None), ("set/train/b/0.jpg", b"text", None)],
     "class 'b' has no decodable image"),
    ([("set/train/a/0.jpg", image_bytes(1), None), ("set/train/b/0.jpg", image_bytes(200), None),
      ("set/validation/a/0.jpg", image_bytes(1), None), ("set/validation/c/0.jpg", image_bytes(9), None)],
     "validation classes differ"),
])
def test_untrainable_zips_are_refused_with_the_reason(tmp_path, entries, words):
    extracted = archive.extract_zip(make_zip(tmp_path / "x.zip", entries), tmp_path)
    with pytest.raises(data.DataError, match=words):
        data.discover(extracted.root)


def test_corrupt_zip_is_refused(tmp_path):
    good = make_zip(tmp_path / "good.zip", good_entries())
    (tmp_path / "cut.zip").write_bytes(good.read_bytes()[:300])
    with pytest.raises(data.DataError, match="cut.zip"):
        archive.extract_zip(tmp_path / "cut.zip", tmp_path)


# ---------------------------------------------------------------- models that must not load

def test_a_pickle_with_code_is_not_run(tmp_path, dataset):
    import pickle
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (open, (str(marker), "w"))
    folder = tmp_path / "models" / "pytorch"
    folder.mkdir(parents=True)
    (folder / "model.pt").write_bytes(pickle.dumps(Exploit()))
    config = TrainConfig(data_dir=str(dataset), image_size=32, weights="none")
    (folder / "metadata.json").write_text(json.dumps({"classes": ["a", "b"], "config": config.to_dict()}))
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        backend("pytorch").load(folder)
    assert not marker.exists()


def test_a_keras_model_with_python_code_is_refused(tmp_path):
    import keras
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Lambda(lambda x: x * 2)(inputs))
    folder = tmp_path / "keras"
    folder.mkdir()
    model.save(folder / "model.keras")
    (folder / "metadata.json").write_text(json.dumps({"classes": ["a", "b"], "config": {}}))
    with pytest.raises(ValueError, match="(?i)lambda|unsafe|safe_mode"):
        backend("keras").load(folder)


# ---------------------------------------------------------------- failing runs

def test_a_failing_run_reports_without_server_paths(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    config = TrainConfig(data_dir=os.path.join(os.getcwd(), "no-such-data"), weights="none")
    (run / runs.CONFIG).write_text(config.to_json())
    assert worker.main(str(run)) == 1
    events = [json.loads(line) for line in (run / runs.EVENTS).read_text().splitlines()]
    error = next(e for e in events if e["type"] == "error")["message"]
    assert "does not exist" in error and os.getcwd() not in error
    assert events[-1] == {"type": "finished", "status": "failed"}


def start_real_run(tmp_path, warm=0):
    """A real PyTorch run's queue, workspace and settings (worker processes of their own, or warm)."""
    from classroom.jobs import Jobs
    from classroom.workspace import Workspaces
    spaces = Workspaces(tmp_path / "workspaces")
    space = spaces.create()
    jobs = Jobs(spaces, tmp_path / "state", warm=warm)
    config = TrainConfig(framework="pytorch", data_dir=str(make_dataset(tmp_path / "d", per_class=(40, 4))),
                         out_dir=str(space.models), epochs=50, batch_size=4, image_size=32, weights="none")
    return jobs, space, config


def wait_until_training(jobs, space, timeout_s=120):
    deadline = time.monotonic() + timeout_s
    while not any(e["type"] == "batch" for e in jobs.view(space).events):
        assert time.monotonic() < deadline and jobs.view(space).status != "failed", jobs.view(space)
        time.sleep(0.2)


@pytest.mark.slow
def test_killed_run_is_reported_and_saved_models_survive(tmp_path):
    from classroom.jobs import Busy, Jobs
    jobs, space, config = start_real_run(tmp_path)
    saved = store.save_atomically(space.models, "pytorch", lambda p: p.write_bytes(b"old model"), {"n": 1})
    outcomes = []

    def press_start():
        try:
            outcomes.append(jobs.submit(space, config))
        except Busy as error:
            outcomes.append(error)
    presses = [threading.Thread(target=press_start) for _ in range(2)]
    for t in presses:
        t.start()
    for t in presses:
        t.join(30)
    assert sum(isinstance(o, Busy) for o in outcomes) == 1  # two Starts together: one run
    wait_until_training(jobs, space)
    pid = next(e["pid"] for e in jobs.view(space).events if e["type"] == "begin")
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while jobs.view(space).active:
        assert time.monotonic() < deadline
        jobs.schedule()
        time.sleep(0.1)
    view = jobs.view(space)
    assert view.status == "failed" and "ended unexpectedly" in view.error
    assert (saved / store.model_file("pytorch")).read_bytes() == b"old model"
    assert store.read_metadata(saved) == {"n": 1}
    assert not list(space.models.glob(".staging-*"))
    restarted = Jobs(jobs.workspaces, tmp_path / "state", warm=0)  # a restart finds the run and its outcome
    assert restarted.view(space).run_id == view.run_id and restarted.view(space).status == "failed"


@pytest.mark.slow
def test_a_run_whose_folder_is_deleted_stops(tmp_path):
    """Nobody can stop or watch a run whose folder is gone: it must not train on for minutes."""
    import shutil
    jobs, space, config = start_real_run(tmp_path)
    run_id = jobs.submit(space, config)
    wait_until_training(jobs, space)
    shutil.rmtree(space.runs / run_id)
    jobs.processes[(space.id, run_id)].wait(timeout=30)  # raises if it trains on
    assert not (space.models / "pytorch").exists()  # a run that was stopped saves nothing


@pytest.mark.slow
def test_concurrent_predictions_during_training_all_succeed():
    import subprocess
    import sys

    from conftest import ROOT
    result = subprocess.run([sys.executable, "tests/loadtest.py", "--clients", "20", "--seconds", "15"],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr[-2000:]
    assert "0 failed" in result.stdout and "training running" in result.stdout
