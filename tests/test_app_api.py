"""The app on a free localhost port, driven as API clients drive it (gradio_client): each client has
its own workspace; runs queue and train for real (tiny images, random initialisation); Stop reaches
one's own run only; Predict shows the Space's reference models beside one's own."""

import json
import urllib.error
import urllib.request

import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from conftest import ROOT, make_dataset
from support.launch import free_port
from support.visitor import Visitor, settings
from trainer.augment import AugmentConfig
from trainer.config import TrainConfig

pytestmark = pytest.mark.slow
TEACHER_KEY = "kq7-Teacher-Key-never-shown-3141"  # distinctive: searched for in every answer
TINY = TrainConfig(data_dir="", framework="pytorch", epochs=1, batch_size=4, image_size=32, head_units=16,
                   weights="none")


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
    patch.setattr(Visitor, "call", recorded(Visitor.call))
    patch.setenv("AVP_DATA_DIR", str(base / "data"))
    patch.setenv("AVP_TEACHER_KEY", TEACHER_KEY)
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
    shared.jobs().close()
    demo.close()
    patch.undo()
    for cached in (shared.workspaces, shared.jobs):
        cached.cache_clear()


ANSWERS = []  # every answer the API gave in this module, searched for server folders at the end


def recorded(call):
    def record(self, *args, **kwargs):
        try:
            answer = call(self, *args, **kwargs)
        except Exception as error:  # refusals are answers too: recorded, then raised as they were
            ANSWERS.append(str(error))
            raise
        ANSWERS.append(answer)
        return answer
    return record


@pytest.fixture
def visitor(app):
    """A new API client with its own workspace."""
    return Visitor(app[0] + "/")


def start(visitor: Visitor, **changes) -> dict:
    """/start with TINY's settings on the server's `toy` data set, with named changes on top."""
    return visitor.call({**settings(TINY, "server/toy"), **changes}, api_name="/start")


def probabilities(visitor: Visitor, image) -> dict:
    (result,) = visitor.predict(image)
    return result


def test_a_first_time_visitor_predicts_with_the_reference_models(visitor, app):
    image = app[1] / "data" / "toy" / "validation" / "dark" / "0.jpg"
    result = probabilities(visitor, image)
    assert set(result) == {"image", "reference"}  # no models of their own yet; no server path
    assert sum(result["reference"]["pytorch"]["probabilities"].values()) == pytest.approx(1, abs=1e-5)


def test_a_model_downloads_over_the_api_as_the_readme_says(visitor):
    """/download_model takes the choice by value (its dropdown's choices are empty over the API)."""
    import zipfile
    path = visitor.call("reference/pytorch", api_name="/download_model")
    assert any(name.startswith("model.") for name in zipfile.ZipFile(path).namelist())
    with pytest.raises(AppError, match="Choose a model"):
        visitor.call("../reference/pytorch", api_name="/download_model")


def test_two_visitors_queue_and_stop_only_their_own_runs(app):
    a, b = Visitor(app[0] + "/"), Visitor(app[0] + "/")
    image = app[1] / "data" / "toy" / "validation" / "bright" / "0.jpg"

    start(a)  # A trains a model of their own
    a.wait(lambda s: s["status"] == "done")
    before = probabilities(a, image)
    assert set(before) == {"image", "reference", "yours"}

    start(a, epochs=20, batch_size=1)  # a long run within the page's ranges, then B queues behind it
    a.wait(lambda s: s["batches"] > 0)
    queued = start(b)
    assert queued["status"] == "queued" and queued["position"] == 1 and queued["start_in_s"] > 0
    assert queued["queue"]["training"] == 1
    with pytest.raises(AppError, match="already have a run"):
        start(b)

    assert b.stop() == "Taken out of the queue."  # B's Stop reaches B's run only
    assert a.status()["status"] == "running" and b.status()["status"] == "cancelled"
    start(b, framework="both")
    a.stop()
    stopped = a.wait(lambda s: s["status"] == "stopped", timeout_s=60)
    assert stopped["epochs"] == [] or len(stopped["epochs"]) < 20
    done = b.wait(lambda s: s["status"] == "done", timeout_s=300)
    assert [s["framework"] for s in done["summaries"]] == ["pytorch", "keras"]
    assert all(s["saved"] for s in done["summaries"])

    after = probabilities(a, image)  # B's training changed nothing of A's
    for source in ("reference", "yours"):
        assert after[source]["pytorch"]["probabilities"] == pytest.approx(
            before[source]["pytorch"]["probabilities"], abs=1e-6)
    assert set(probabilities(b, image)["yours"]) == {"keras", "pytorch"}


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
        with pytest.raises(AppError, match=message):
            start(visitor, **changes)
        assert visitor.status()["status"] == "none", name


def test_preview_takes_the_augmentation_by_name(visitor):
    keras_gallery, torch_gallery, *_ = visitor.preview(ROOT / "assets" / "test_card.png",
                                                       AugmentConfig(rotation_deg=15), seed=1)
    assert len(keras_gallery) == len(torch_gallery) == 8
    assert all("rot " in item["caption"] for item in keras_gallery + torch_gallery)


def test_an_unknown_workspace_is_refused(app):
    client = Client(app[0] + "/", verbose=False)
    with pytest.raises(AppError, match="unknown or expired workspace"):
        client.predict("0" * 32, api_name="/training_status")
    with pytest.raises(AppError, match="unknown or expired workspace"):
        client.predict("../" * 10, settings(TINY, "server/toy"), api_name="/start")


def test_an_upload_becomes_the_visitors_own_data_set(visitor, app, tmp_path):
    import zipfile
    folder = make_dataset(tmp_path / "mine", per_class=(6, 2))
    archive = tmp_path / "My photos.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for path in folder.rglob("*.jpg"):
            z.write(path, str(path.relative_to(folder)))
    chosen, text = visitor.upload(archive)
    assert chosen == "upload/My_photos" and "2 classes" in text
    assert "upload/My_photos" in visitor.datasets()
    stranger = Visitor(app[0] + "/")
    assert "upload/My_photos" not in stranger.datasets()
    with pytest.raises(AppError, match="unknown data set"):
        start(stranger, dataset="upload/My_photos")


def test_file_route_refuses_files_outside_the_app(app):
    url, base = app
    for path in ("/etc/passwd", "../../../../etc/passwd", str(ROOT / "app.py"),
                 str(base / "reference" / "pytorch" / "metadata.json")):
        try:
            code = urllib.request.urlopen(f"{url}/gradio_api/file={path}", timeout=10).status
        except urllib.error.HTTPError as error:
            code = error.code
        assert code in (403, 404), path


def test_uploads_over_the_cap_are_refused(visitor, app, tmp_path):
    big = tmp_path / "big.zip"
    big.write_bytes(b"0" * 2_000_000)  # the test app's cap is 1 MB
    with pytest.raises(ValueError, match="exceeds the maximum file size"):  # the client reads the cap
        visitor.upload(big)
    import httpx  # and the server refuses it anyway, for a client that does not
    answer = httpx.post(f"{app[0]}/gradio_api/upload", files={"files": ("big.zip", big.read_bytes())}, timeout=30)
    assert answer.status_code == 413


def test_a_bad_image_is_refused_by_name_and_the_good_one_predicted(visitor, app, tmp_path):
    fake = tmp_path / "holiday.jpg"
    fake.write_text("<html>this is not a picture</html>")
    good = app[1] / "data" / "toy" / "train" / "dark" / "0.jpg"
    bad_result, good_result = visitor.predict(fake, good)
    assert bad_result["error"].startswith("holiday.jpg: not an image")
    assert "reference" in good_result
    assert json.dumps(bad_result).count(str(tmp_path)) == 0


def teacher_call(app, *args, api_name: str, key: str = TEACHER_KEY):
    """A teacher's API call (the key first), its answer or refusal recorded with the others."""
    try:
        answer = Client(app[0] + "/", verbose=False).predict(key, *args, api_name=api_name)
    except Exception as error:
        ANSWERS.append(str(error))
        raise
    ANSWERS.append(answer)
    return answer


TEACHER_CALLS = {"/teacher_board": (3,), "/teacher_pause": (True,), "/teacher_stop": ("1/20260101-000000-000000",),
                 "/teacher_defaults": ({"epochs": 2},), "/teacher_caps": ({"epochs": 2},)}


def test_every_teacher_endpoint_refuses_without_the_key(app):
    for name, args in TEACHER_CALLS.items():
        for key in ("", "wrong", TEACHER_KEY.upper()):
            with pytest.raises(AppError, match="teacher's key|only the teacher"):
                teacher_call(app, *args, api_name=name, key=key)
    board = teacher_call(app, 3, api_name="/teacher_board")  # nothing was done meanwhile
    assert board["queue"]["paused"] is False and board["defaults"] == {} and board["caps"] == {}


def test_a_capped_setting_is_refused_for_a_student_over_the_api(app, visitor):
    assert teacher_call(app, {"epochs": 2, "image_size": 64}, api_name="/teacher_caps") == {
        "epochs": [1, 2], "image_size": [32, 64]}
    try:
        with pytest.raises(AppError, match="epochs must be from 1 to 2 here \\(the teacher's cap for this class"):
            start(visitor, epochs=3)
        with pytest.raises(AppError, match="image_size must be from 32 to 64"):
            start(visitor, image_size=96)
        assert visitor.status()["status"] == "none"
    finally:
        teacher_call(app, {}, api_name="/teacher_caps")


def test_the_teacher_pauses_stops_and_sees_a_published_run_over_the_api(app):
    student = Visitor(app[0] + "/")
    teacher_call(app, True, api_name="/teacher_pause")
    try:
        queued = start(student)
        assert queued["status"] == "queued" and queued["queue"]["paused"] is True
        row = next(r for r in teacher_call(app, 3, api_name="/teacher_board")["runs"] if r["state"] == "queued")
        assert row["student"].startswith("Student ") and "settings" not in row and "results" not in row
        assert teacher_call(app, row["run"], api_name="/teacher_stop") == "Taken out of the queue."
        assert student.status()["status"] == "cancelled"
    finally:
        teacher_call(app, False, api_name="/teacher_pause")
    start(student, epochs=2)
    student.wait(lambda s: s["status"] == "done")
    assert "Published" in student.call("Ada", api_name="/publish")
    board = teacher_call(app, 3, api_name="/teacher_board")
    ada = next(r for r in board["runs"] if r["student"] == "Ada" and r["published"])
    assert ada["settings"]["epochs"] == 2 and 0 <= ada["results"]["pytorch"]["val_accuracy"] <= 1
    assert board["figures"]["pytorch"]["runs"] >= 1
    assert student.workspace not in json.dumps(board)


def test_no_answer_and_no_page_config_names_a_server_folder(app):
    """Runs last: every API answer of this module, and the page's config, searched for the app's
    folders (gradio's own upload cache, which serves the visitor's own files back, aside)."""
    url, base = app
    with urllib.request.urlopen(f"{url}/config", timeout=10) as response:
        config = response.read().decode()
    answers = json.dumps(ANSWERS, default=str)
    assert len(ANSWERS) > 20
    for folder in (str(base), str(ROOT)):
        assert folder not in answers and folder not in config, folder
    assert TEACHER_KEY not in answers and TEACHER_KEY not in config  # nor the teacher's key
