"""The app on a free localhost port, driven as API clients drive it (gradio_client): each client has
its own workspace; runs queue and train for real (tiny images, random initialisation); Stop reaches
one's own run only; Predict shows the Space's reference models beside one's own."""

import json
import time
import urllib.error
import urllib.request

import pytest
from gradio_client import Client, handle_file

from conftest import ROOT, make_dataset

pytestmark = pytest.mark.slow
TINY = {"dataset": "server/toy", "framework": "pytorch", "epochs": 1, "batch_size": 4, "image_size": 32,
        "head_units": 16, "weights": "none"}


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """The app with a server data set `toy` and reference PyTorch models trained with the CLI."""
    from trainer import runner
    from trainer.config import TrainConfig
    from ui import shared
    base = tmp_path_factory.mktemp("app")
    data = make_dataset(base / "data" / "toy", per_class=(24, 4))
    runner.train(TrainConfig(framework="pytorch", data_dir=str(data), out_dir=str(base / "reference"), epochs=1,
                             batch_size=8, image_size=32, head_units=16, weights="none"))
    patch = pytest.MonkeyPatch()
    patch.setenv("AVP_DATA_DIR", str(base / "data"))
    patch.setattr(shared, "MODELS_DIR", base / "reference")
    patch.setattr(shared, "WORKSPACES_DIR", base / "workspaces")
    for cached in (shared.workspaces, shared.jobs):
        cached.cache_clear()
    import app
    background = shared.start_background_work()
    demo = app.build_demo()
    port = free_port()
    demo.launch(**{**app.launch_options(), "server_name": "127.0.0.1", "server_port": port,
                   "max_file_size": "1mb"}, prevent_thread_lock=True, quiet=True)
    yield f"http://127.0.0.1:{port}", base
    background.set()
    demo.close()
    patch.undo()
    for cached in (shared.workspaces, shared.jobs):
        cached.cache_clear()


@pytest.fixture
def visitor(app):
    """A new API client with its own workspace: (client, workspace id)."""
    client = Client(app[0] + "/", verbose=False)
    return client, client.predict("", api_name="/workspace")


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def status(visitor) -> dict:
    client, workspace = visitor
    return client.predict(workspace, api_name="/training_status")


def wait_for(visitor, condition, timeout_s=240) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        current = status(visitor)
        if condition(current):
            return current
        time.sleep(0.3)
    raise AssertionError(f"timed out; last status {current}")


def start(visitor, **changes) -> dict:
    client, workspace = visitor
    return client.predict(workspace, {**TINY, **changes}, api_name="/start")


def predict(visitor, image) -> dict:
    client, workspace = visitor
    (result,) = client.predict(workspace, [handle_file(str(image))], api_name="/predict")
    return result


def test_a_first_time_visitor_predicts_with_the_reference_models(visitor, app):
    image = app[1] / "data" / "toy" / "validation" / "dark" / "0.jpg"
    result = predict(visitor, image)
    assert set(result) == {"image", "file", "reference"}  # no models of their own yet
    assert sum(result["reference"]["pytorch"]["probabilities"].values()) == pytest.approx(1, abs=1e-5)


def test_two_visitors_queue_and_stop_only_their_own_runs(app):
    a, b = (Client(app[0] + "/", verbose=False) for _ in range(2))
    a, b = (a, a.predict("", api_name="/workspace")), (b, b.predict("", api_name="/workspace"))
    image = app[1] / "data" / "toy" / "validation" / "bright" / "0.jpg"

    start(a)  # A trains a model of their own
    wait_for(a, lambda s: s["status"] == "done")
    before = predict(a, image)
    assert set(before) == {"image", "file", "reference", "yours"}

    start(a, epochs=200)  # a long run, then B queues behind it
    wait_for(a, lambda s: s["batches"] > 0)
    queued = start(b)
    assert queued["status"] == "queued" and queued["position"] == 1 and queued["start_in_s"] > 0
    assert queued["queue"]["training"] == 1
    assert "already have a run" in str(pytest.raises(Exception, start, b).value)

    assert b[0].predict(b[1], api_name="/stop") == "Taken out of the queue."  # B's Stop: B's run only
    assert status(a)["status"] == "running" and status(b)["status"] == "cancelled"
    start(b, framework="both")
    a[0].predict(a[1], api_name="/stop")
    stopped = wait_for(a, lambda s: s["status"] == "stopped", timeout_s=60)
    assert stopped["batches"] < 200 * 12
    done = wait_for(b, lambda s: s["status"] == "done")
    assert [s["framework"] for s in done["summaries"]] == ["pytorch", "keras"]
    assert all(s["saved"] for s in done["summaries"])

    after = predict(a, image)  # B's training changed nothing of A's
    for source in ("reference", "yours"):
        assert after[source]["pytorch"]["probabilities"] == pytest.approx(
            before[source]["pytorch"]["probabilities"], abs=1e-6)
    b_result = predict(b, image)
    assert set(b_result["yours"]) == {"keras", "pytorch"}


def test_settings_name_a_data_set_and_never_a_server_folder(visitor):
    refusals = {
        "data_dir": ({"data_dir": "/etc"}, "cannot be set here"),
        "unknown data set": ({"dataset": "server/../../etc"}, "unknown data set"),
        "weights file": ({"weights": "/etc/passwd"}, "weights must be imagenet or none"),
        "huge seed": ({"seed": 10**30}, "seed must be a whole number"),
        "not a number": ({"lr": "fast"}, "lr must be a number"),
        "unknown field": ({"colour": "red"}, "unknown training settings: colour"),
        "wrong type": ({"augment": {"hflip": "yes"}}, "hflip must be true or false"),
    }
    for name, (changes, message) in refusals.items():
        with pytest.raises(Exception, match=message):
            start(visitor, **changes)
        assert status(visitor)["status"] == "none", name


def test_an_unknown_workspace_is_refused(app):
    client = Client(app[0] + "/", verbose=False)
    with pytest.raises(Exception, match="unknown or expired workspace"):
        client.predict("0" * 32, api_name="/training_status")
    with pytest.raises(Exception, match="unknown or expired workspace"):
        client.predict("../" * 10, {**TINY}, api_name="/start")


def test_an_upload_becomes_the_visitors_own_data_set(visitor, app, tmp_path):
    import zipfile
    client, workspace = visitor
    folder = make_dataset(tmp_path / "mine", per_class=(6, 2))
    archive = tmp_path / "My photos.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for path in folder.rglob("*.jpg"):
            z.write(path, str(path.relative_to(folder)))
    chosen, text = client.predict(workspace, handle_file(str(archive)), api_name="/upload_data")
    assert chosen["value"] == "upload/My_photos" and "2 classes" in text
    assert "upload/My_photos" in client.predict(workspace, api_name="/datasets")
    stranger = Client(app[0] + "/", verbose=False)
    other = stranger.predict("", api_name="/workspace")
    assert "upload/My_photos" not in stranger.predict(other, api_name="/datasets")
    with pytest.raises(Exception, match="unknown data set"):
        stranger.predict(other, {**TINY, "dataset": "upload/My_photos"}, api_name="/start")


def test_file_route_refuses_files_outside_the_app(app):
    url, base = app
    for path in ("/etc/passwd", "../../../../etc/passwd", str(ROOT / "app.py"),
                 str(base / "reference" / "pytorch" / "metadata.json")):
        try:
            code = urllib.request.urlopen(f"{url}/gradio_api/file={path}", timeout=10).status
        except urllib.error.HTTPError as error:
            code = error.code
        assert code in (403, 404), path


def test_uploads_over_the_cap_are_refused(visitor, tmp_path):
    client, workspace = visitor
    big = tmp_path / "big.zip"
    big.write_bytes(b"0" * 2_000_000)  # the test app's cap is 1 MB
    with pytest.raises(Exception, match="413|too large|exceeds"):
        client.predict(workspace, handle_file(str(big)), api_name="/upload_data")


def test_a_bad_image_is_refused_by_name_and_the_good_one_predicted(visitor, app, tmp_path):
    fake = tmp_path / "holiday.jpg"
    fake.write_text("<html>this is not a picture</html>")
    good = app[1] / "data" / "toy" / "train" / "dark" / "0.jpg"
    client, workspace = visitor
    bad_result, good_result = client.predict(workspace, [handle_file(str(fake)), handle_file(str(good))],
                                             api_name="/predict")
    assert bad_result["error"].startswith("holiday.jpg: not an image")
    assert "reference" in good_result
    assert json.dumps(bad_result).count(str(tmp_path)) == 0
