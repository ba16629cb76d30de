"""The command line end to end, in subprocesses, as a teacher would type it."""

import functools
import http.server
import json
import os
import re
import subprocess
import sys
import threading
import time
import zipfile

import pytest

from conftest import ROOT, make_dataset

pytestmark = pytest.mark.slow


def run(*args, timeout=300, **env):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **env}
    return subprocess.run([sys.executable, "-m", "trainer", *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def zip_folder(folder, target, prefix=""):
    with zipfile.ZipFile(target, "w") as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, prefix + str(path.relative_to(folder)))
    return target


def test_check_data_lists_classes_and_counts(dataset):
    result = run("check-data", dataset)
    assert result.returncode == 0, result.stderr
    assert "2 classes" in result.stdout
    assert re.search(r"train\s+12 images \(bright 6, dark 6\)", result.stdout)
    assert re.search(r"validation\s+6 images \(bright 3, dark 3\)", result.stdout)


def test_check_data_accepts_a_zip_with_a_top_folder(dataset, tmp_path):
    result = run("check-data", zip_folder(dataset, tmp_path / "set.zip", prefix="myset/"))
    assert result.returncode == 0, result.stderr
    assert re.search(r"validation\s+6 images", result.stdout)


def test_check_data_fails_with_every_problem(tmp_path):
    root = make_dataset(tmp_path / "d", classes=("only",))
    result = run("check-data", root)
    assert result.returncode == 1 and "need at least 2" in result.stderr
    (tmp_path / "broken.zip").write_bytes(b"PK\x03\x04 nonsense")
    result = run("check-data", tmp_path / "broken.zip")
    assert result.returncode == 1 and "broken.zip: not a valid zip archive" in result.stderr


def test_train_both_then_predict_json(dataset, tmp_path):
    models = tmp_path / "models"
    result = run("train", "--framework", "both", "--data", dataset, "--out", models, "--epochs", 1,
                 "--image-size", 32, "--batch-size", 4, "--weights", "none")
    assert result.returncode == 0, result.stderr
    assert "keras" in result.stdout and "pytorch" in result.stdout and "val acc" in result.stdout
    assert "random initialisation" in result.stderr
    metadata = json.loads((models / "keras" / "metadata.json").read_text())
    assert metadata["pretrained"] is False and metadata["classes"] == ["bright", "dark"]
    assert len(metadata["history"]) == 1 and "tensorflow" in metadata["versions"]
    assert (models / "pytorch" / "model.safetensors").is_file()

    image = dataset / "validation" / "dark" / "0.jpg"
    (tmp_path / "fake.jpg").write_text("<html>not an image</html>")
    result = run("predict", "--models", models, "--json", image, tmp_path / "fake.jpg")
    assert result.returncode == 1  # one of the two images was refused
    good, bad = [json.loads(line) for line in result.stdout.splitlines()]
    for framework in ("keras", "pytorch"):
        assert set(good[framework]) == {"bright", "dark"}
        assert sum(good[framework].values()) == pytest.approx(1, abs=1e-5)
    assert "fake.jpg: not an image" in bad["error"]

    result = run("predict", "--models", models, image)
    assert result.returncode == 0 and "keras" in result.stdout and " ms)" in result.stdout


def test_warm_trains_the_reference_models_and_the_next_train_reads_the_bank(tmp_path):
    """Before class: `warm` without --data or --out uses $AVP_DATA_DIR's data set and $AVP_MODELS_DIR,
    needs the tick for random initialisation, and fills the bank that the next `train` reads."""
    make_dataset(tmp_path / "server" / "toy")
    env = {"AVP_DATA_DIR": str(tmp_path / "server"), "AVP_MODELS_DIR": str(tmp_path / "reference"),
           "AVP_CACHE_DIR": str(tmp_path / "bank")}
    small = ("--epochs", 1, "--image-size", 32, "--batch-size", 4, "--head-units", 16, "--weights", "none")
    result = run("warm", *small, **env)
    assert result.returncode == 2 and "allow it explicitly (--allow-random-init" in result.stderr
    assert not (tmp_path / "reference").exists()

    result = run("warm", *small, "--allow-random-init", **env)
    assert result.returncode == 0, result.stderr
    assert "pytorch then keras, 12 training and 6 validation images, 1 epoch at 32 px" in result.stdout
    assert "estimate: about" in result.stdout
    assert "warm-up done in" in result.stdout and "reference models are randomly initialised" in result.stdout
    for framework in ("keras", "pytorch"):
        metadata = json.loads((tmp_path / "reference" / framework / "metadata.json").read_text())
        assert metadata["warm_up"] is True and metadata["config"]["out_dir"] == str(tmp_path / "reference")
    assert sorted(p.name for p in (tmp_path / "reference").iterdir()) == ["keras", "pytorch"]
    assert len(list((tmp_path / "bank").glob("*.npz"))) == 4

    result = run("train", *small, "--data", tmp_path / "server" / "toy", "--out", tmp_path / "student", **env)
    assert result.returncode == 0, result.stderr
    for framework in ("keras", "pytorch"):
        assert (f"{framework}: augmented features from the feature bank; validation features from the bank"
                in result.stdout)


def test_train_refuses_bad_settings_and_data(tmp_path):
    result = run("train", "--data", tmp_path, "--epochs", 0)
    assert result.returncode == 2 and "epochs must be a whole number" in result.stderr
    result = run("train", "--data", tmp_path / "none", "--weights", "none")
    assert result.returncode == 1 and "does not exist" in result.stderr


def test_predict_without_models_says_so(tmp_path, dataset):
    result = run("predict", "--models", tmp_path, dataset / "train" / "dark" / "0.jpg")
    assert result.returncode == 1 and "no saved model" in result.stderr


def test_fetch_data_offline_fails_fast_with_advice(tmp_path):
    started = time.monotonic()
    result = run("fetch-data", "--dest", tmp_path / "avp", "--url", "http://127.0.0.1:9/avp.zip")
    assert result.returncode == 1 and time.monotonic() - started < 30
    assert "could not download" in result.stderr and "kaggle" in result.stderr.lower()
    assert not (tmp_path / "avp" / "train").exists()


def test_fetch_data_downloads_unpacks_and_checks(dataset, tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    zip_folder(dataset, served / "repo.zip", prefix="repo-master/data/")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/repo.zip"
        result = run("fetch-data", "--dest", tmp_path / "avp", "--url", url)
    finally:
        server.shutdown()
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "avp").iterdir()) == ["train", "validation"]
    assert re.search(r"train\s+12 images", result.stdout)
