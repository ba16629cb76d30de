"""The app launched on a free localhost port, driven through its named API with gradio_client:
preview, a one-epoch training of each framework, one run at a time, Stop, and predict."""

import socket
import time

import pytest
from gradio_client import Client, handle_file

from conftest import ROOT, make_dataset

pytestmark = pytest.mark.slow
AUGMENT = [10, 0.8, 1.2, 0, 0, True, False]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    from ui import shared
    base = tmp_path_factory.mktemp("app")
    patch = pytest.MonkeyPatch()
    patch.setattr(shared, "MODELS_DIR", base / "models")
    patch.setattr(shared, "RUNS_DIR", base / "runs")
    shared.jobs.cache_clear()
    shared.predictor.cache_clear()
    import app
    demo = app.build_demo()
    port = free_port()
    demo.launch(**{**app.launch_options(), "server_name": "127.0.0.1", "server_port": port,
                   "max_file_size": "1mb"}, prevent_thread_lock=True, quiet=True)
    yield Client(f"http://127.0.0.1:{port}/", verbose=False), base, f"http://127.0.0.1:{port}"
    demo.close()
    patch.undo()
    shared.jobs.cache_clear()
    shared.predictor.cache_clear()


def settings(data_dir, framework="both", epochs=1, **changes):
    values = dict(framework=framework, data_dir=str(data_dir), epochs=epochs, batch_size=4, lr=1e-3,
                  image_size=32, head_units=16, limit=0, feature_cache=False, unfreeze=0,
                  weights_choice="none", allow_random_init=True, seed=42, use_augment=True)
    values.update(changes)
    return [*values.values(), *AUGMENT]


def wait_until_finished(client, timeout=300):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = client.predict(api_name="/training_status")
        if status["status"] not in ("starting", "running", "stopping"):
            return status
        time.sleep(0.5)
    raise AssertionError("training did not finish in time")


def test_preview(client):
    c, *_ = client
    keras_gallery, torch_gallery, *_, keras_code, torch_code = c.predict(None, *AUGMENT, 3, api_name="/preview")
    assert len(keras_gallery) == len(torch_gallery) == 8 and keras_gallery[0]["caption"]
    assert "class RandomAffine(keras.layers.Layer)" in keras_code and "v2.RandomAffine" in torch_code


def test_train_both_then_predict_with_both(client):
    c, base, _ = client
    data = make_dataset(base / "data")
    assert "Starting run" in c.predict(*settings(data), api_name="/start")
    busy = c.predict(*settings(data), api_name="/start")
    assert "already in progress" in busy
    status = wait_until_finished(c)
    assert status["status"] == "done", status
    assert [s["framework"] for s in status["summaries"]] == ["pytorch", "keras"]
    assert all(s["saved_to"] for s in status["summaries"])

    results = c.predict([handle_file(str(data / "validation" / "dark" / "0.jpg"))], api_name="/predict")
    (result,) = results
    for framework in ("keras", "pytorch"):
        probabilities = result[framework]["probabilities"]
        assert set(probabilities) == {"bright", "dark"}
        assert sum(probabilities.values()) == pytest.approx(1, abs=1e-5)
        assert result[framework]["seconds"] > 0


def test_stop_ends_the_run_and_keeps_the_saved_models(client):
    c, base, _ = client
    data = make_dataset(base / "data2", per_class=(40, 4))
    before = (base / "models" / "pytorch" / "metadata.json").read_text()
    c.predict(*settings(data, framework="pytorch", epochs=20), api_name="/start")
    while c.predict(api_name="/training_status")["batches"] < 2:
        time.sleep(0.2)
    assert "Stopping" in c.predict(api_name="/stop")
    status = wait_until_finished(c, timeout=60)
    assert status["status"] == "stopped" and status["batches"] < 20 * 20
    assert (base / "models" / "pytorch" / "metadata.json").read_text() == before


def test_file_route_refuses_files_outside_the_app(client):
    import urllib.error
    import urllib.request
    *_, url = client
    for path in ("/etc/passwd", "../../../../etc/passwd", str(ROOT / "app.py")):
        try:
            status = urllib.request.urlopen(f"{url}/gradio_api/file={path}", timeout=10).status
        except urllib.error.HTTPError as error:
            status = error.code
        assert status in (403, 404), path


def test_uploads_over_the_cap_are_refused(client, tmp_path):
    c, *_ = client
    big = tmp_path / "big.zip"
    big.write_bytes(b"0" * 2_000_000)  # the test app's cap is 1 MB
    with pytest.raises(Exception, match="413|too large|exceeds"):
        c.predict(handle_file(str(big)), api_name="/upload_data")


def test_stopped_run_leaves_a_model_that_still_predicts(client):
    c, base, _ = client
    image = next((base / "data").rglob("*.jpg"))
    (result,) = c.predict([handle_file(str(image))], api_name="/predict")
    assert sum(result["pytorch"]["probabilities"].values()) == pytest.approx(1, abs=1e-5)


def test_a_bad_image_is_refused_by_name_and_the_app_keeps_serving(client, tmp_path):
    c, base, _ = client
    fake = tmp_path / "holiday.jpg"
    fake.write_text("<html>this is not a picture</html>")
    good = next((base / "data").rglob("*.jpg"))
    bad_result, good_result = c.predict([handle_file(str(fake)), handle_file(str(good))], api_name="/predict")
    assert "holiday.jpg: not an image" in bad_result["error"] and "/" not in bad_result["error"].split(":")[0]
    assert "keras" in good_result and "pytorch" in good_result
    assert c.predict(api_name="/training_status")["status"] in ("done", "stopped")
