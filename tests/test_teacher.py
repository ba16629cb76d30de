"""The teacher's side of a class (classroom/teacher.py, the queue's pause and Stop, ui/teacher_tab.py):
the key and its token, every teacher action refused without them; the class board (names, numbers,
states and queue places; settings and results only of published runs); the pause; the teacher's
Stop of anybody's run; the class defaults and the caps, enforced by the server and shown on the page.
The queue runs tests/support/fake_worker.py (fast); finished runs are written as a worker writes them."""

import json
import time
from datetime import datetime, timedelta

import gradio as gr
import pytest
from test_app import visitor  # noqa: F401 - the fixture: a workspace with a server data set "toy"
from test_classroom import jobs_for, paced, wait_for

from classroom import runs, teacher
from classroom.runs import append_event
from trainer.config import TrainConfig
from ui import shared, teacher_tab, train
from ui.train import publish
from ui.train.progress import progress_text

KEY = "kq7-Teacher-Key-never-shown-3141"


@pytest.fixture
def spaces(tmp_path):
    from classroom.workspace import Limits, Workspaces
    return Workspaces(tmp_path / "workspaces", Limits(idle_s=3600, quota_bytes=10**9))


def finished_run(space, config: TrainConfig, accuracies: dict, predicted: dict | None = None,
                 published: bool = False, when: datetime | None = None):
    """A run folder as a worker leaves it: its settings, one end event per framework, finished."""
    run = space.runs / (when or datetime.now()).strftime("%Y%m%d-%H%M%S-%f")
    runs.create(run, config)
    for framework, accuracy in accuracies.items():
        append_event(run, {"type": "end", "framework": framework, "val_accuracy": accuracy,
                           "best_val_accuracy": accuracy, "seconds_per_epoch": 2.5, "images_per_s": 40.0,
                           "val_predicted": (predicted or {}).get(framework, [])})
    append_event(run, {"type": "finished", "status": "done"})
    if published:
        runs.publish(run)
    return run


# ---------------------------------------------------------------- the key

def test_the_key_gives_a_token_that_is_neither_the_key_nor_a_stale_one(monkeypatch):
    monkeypatch.delenv(teacher.KEY_ENV, raising=False)
    with pytest.raises(teacher.NotTeacher, match="set the secret AVP_TEACHER_KEY"):
        teacher.token_for("anything", "secret")
    monkeypatch.setenv(teacher.KEY_ENV, KEY)
    token = teacher.token_for(KEY, "secret")
    assert KEY not in token and teacher.is_teacher(token, "secret")
    assert not teacher.is_teacher(token, "another server's secret") and not teacher.is_teacher(KEY, "secret")
    for wrong in ("", KEY[:-1], KEY + " ", None, 42):
        with pytest.raises(teacher.NotTeacher) as refused:
            teacher.token_for(wrong, "secret")
        assert KEY not in str(refused.value)
    monkeypatch.setenv(teacher.KEY_ENV, "a new key")  # the key changed: kept tokens stop working
    assert not teacher.is_teacher(token, "secret")


def test_a_late_page_load_never_signs_out_a_teacher_who_just_signed_in(visitor, monkeypatch):  # noqa: F811
    monkeypatch.setenv(teacher.KEY_ENV, KEY)
    token = teacher.token_for(KEY, shared.workspaces().secret())
    shown = teacher_tab.on_load(token)  # a reload with a kept token: the teacher's view
    assert shown[1] == teacher_tab.SIGNED_IN and shown[2].visible is True
    for kept in (None, teacher_tab.NO_TOKEN):  # no token kept: the load's answer may come after Sign in
        assert all(part == gr.skip() for part in teacher_tab.on_load(kept))
    stale = teacher_tab.on_load(teacher.token_for(KEY, "another server's secret"))
    assert stale[0] == teacher_tab.NO_TOKEN and all(part == gr.skip() for part in stale[1:])


def test_every_teacher_action_refuses_without_the_key(visitor, monkeypatch):  # noqa: F811
    monkeypatch.setenv(teacher.KEY_ENV, KEY)
    token = teacher.token_for(KEY, shared.workspaces().secret())
    refused = [
        lambda credential: teacher_tab.board_api(credential),
        lambda credential: teacher_tab.pause_api(credential, True),
        lambda credential: teacher_tab.stop_api(credential, "1/20260101-000000-000000"),
        lambda credential: teacher_tab.defaults_api(credential, {"epochs": 2}),
        lambda credential: teacher_tab.caps_api(credential, {"epochs": 2}),
    ]
    for action in refused:
        for credential in ("", "wrong", token, None):  # over the API the key itself, never the token
            with pytest.raises(gr.Error) as error:
                action(credential)
            assert KEY not in str(error.value) and token not in str(error.value)
    page = [lambda t: teacher_tab.pause(t, True), lambda t: teacher_tab.stop_run(t, "1/x"),
            lambda t: teacher_tab.set_defaults(t, {"epochs": 2}), lambda t: teacher_tab.set_caps(t, {"epochs": 2})]
    almost = token[:-1] + ("1" if token.endswith("0") else "0")
    for action in page:
        for credential in ("", KEY, almost, None):  # on the page the token, never the key
            with pytest.raises(gr.Error, match="only the teacher"):
                action(credential)
    assert teacher_tab.refresh("", 3, "epochs", None, "") == {}
    assert not shared.jobs().paused and not shared.class_settings().defaults() and not shared.class_settings().caps()
    assert "paused" in teacher_tab.pause(token, True) and shared.jobs().paused
    signed = teacher_tab.sign_in(KEY)
    assert signed[0] == token and signed[1] == "" and KEY not in repr(signed[2:])
    refused_sign_in = teacher_tab.sign_in("wrong")
    assert refused_sign_in[1] == "" and "Not signed in" in refused_sign_in[2]


# ---------------------------------------------------------------- the queue

def test_a_paused_queue_starts_nothing_until_resumed_and_a_restart_keeps_the_pause(spaces):
    jobs = jobs_for(spaces)
    jobs.set_paused(True)
    a = spaces.create()
    jobs.submit(a, TrainConfig(data_dir="unused", epochs=1))
    time.sleep(0.3)
    jobs.schedule()
    assert jobs.view(a).status == "queued" and jobs.overview()["paused"]
    assert "The teacher has paused the queue" in progress_text(jobs.view(a), jobs.overview())
    restarted = jobs_for(spaces)
    assert restarted.paused and restarted.view(a).status == "queued"
    restarted.set_paused(False)
    wait_for(lambda: (restarted.schedule(), restarted.view(a).status)[1] == "done")
    assert not jobs_for(spaces).paused


def test_the_teacher_stops_any_run_and_its_owner_is_told(spaces):
    jobs = jobs_for(spaces)
    a, b = spaces.create(), spaces.create()
    jobs.submit(paced(a, 0.05), TrainConfig(data_dir="unused", epochs=20))
    jobs.submit(b, TrainConfig(data_dir="unused", epochs=1))
    places = jobs.places()
    assert places[(a.id, jobs.view(a).run_id)] == 0 and places[(b.id, jobs.view(b).run_id)] == 1
    assert jobs.stop_any(b.id, jobs.view(b).run_id) == "cancelled"
    assert "Taken out of the queue by the teacher" in progress_text(jobs.view(b), jobs.overview())
    assert jobs.stop_any(a.id, "20200101-000000-000000") is None  # no such run: nothing stopped
    wait_for(lambda: jobs.view(a).status == "running")
    assert jobs.stop_any(a.id, jobs.view(a).run_id) == "stopping"
    wait_for(lambda: (jobs.schedule(), jobs.view(a).status)[1] == "stopped")
    assert "Stopped by the teacher" in progress_text(jobs.view(a), jobs.overview())
    jobs.submit(a, TrainConfig(data_dir="unused", epochs=20))
    wait_for(lambda: jobs.view(a).status == "running")
    jobs.cancel(a)  # the owner's own Stop reads as before
    wait_for(lambda: (jobs.schedule(), jobs.view(a).status)[1] == "stopped")
    assert "Stopped by Stop" in progress_text(jobs.view(a), jobs.overview())


# ---------------------------------------------------------------- the board

def test_the_board_shows_states_always_and_settings_and_results_once_published(spaces, tmp_path):
    jobs, roster = jobs_for(spaces), teacher.Roster(tmp_path / "class")
    ada, quiet, waiting = spaces.create(), spaces.create(), spaces.create()
    ada.set_board_name("  Ada\n<b>Lovelace</b> \x07 and a name far too long to show  ")
    both = TrainConfig(data_dir="/server/data", framework="both", epochs=5, lr=0.01)
    finished_run(ada, both, {"pytorch": 0.9, "keras": 0.8},
                 {"pytorch": [0, 1, 1, 0], "keras": [0, 1, 0, 0]}, published=True)
    finished_run(quiet, TrainConfig(data_dir="/server/data", framework="keras", epochs=9), {"keras": 0.7})
    finished_run(quiet, TrainConfig(data_dir="x", epochs=7), {"keras": 0.1}, published=True,
                 when=datetime.now() - timedelta(hours=5))  # before the lesson
    jobs.set_paused(True)
    jobs.submit(waiting, TrainConfig(data_dir="unused", framework="pytorch"))
    defaults = {"epochs": 5, "framework": "both"}
    rows = teacher.board(spaces, jobs, roster, time.time() - 3 * 3600, defaults)
    assert [r["student"] for r in rows] == ["Ada <b>Lovelace</b> and a name", "Student 2", "Student 3"]
    published, private, queued = rows
    assert published["settings"] == {"lr": 0.01} and published["agreement"] == 0.75
    assert published["results"]["keras"]["val_accuracy"] == 0.8 and published["state"] == "done"
    assert set(private) == {"student", "run", "frameworks", "state", "place", "published", "queued_at"}
    assert private["frameworks"] == ["keras"] and private["state"] == "done"
    assert (queued["state"], queued["place"]) == ("queued", 1)
    text = json.dumps(rows)
    assert not any(space.id in text for space in (ada, quiet, waiting)) and "/server/data" not in text
    again = teacher.board(spaces, jobs, roster, time.time() - 3 * 3600, {})
    assert [r["run"].split("/")[0] for r in again] == ["1", "2", "3"]  # numbers stay
    assert roster.workspace_of(3) == waiting.id
    figures = teacher.figures(rows)
    assert figures["keras"] == {"runs": 1, "seconds_per_epoch": 2.5, "val_accuracy": 0.8}
    assert figures["agreement"] == {"runs": 1, "median": 0.75}


def test_the_teachers_page_board_is_text_with_the_frameworks_colours(visitor, monkeypatch):  # noqa: F811
    monkeypatch.setenv(teacher.KEY_ENV, KEY)
    token = teacher.token_for(KEY, shared.workspaces().secret())
    space = shared.workspace(visitor)
    space.set_board_name("<img src=x onerror=alert(1)>")
    finished_run(space, TrainConfig(data_dir="x", framework="both", lr=1e-2, epochs=2),
                 {"pytorch": 0.9, "keras": 0.75}, published=True)
    parts = teacher_tab.refresh(token, 3, "learning rate (log10)", None, "")
    board = parts["board"].values.tolist()
    assert board[0][0] == "<img src=x onerror=alert(1)>" and board[0][1] == "PyTorch + Keras"
    assert "epochs 2, lr 0.01" in board[0][2] and board[0][4] == "PyTorch 0.900, Keras 0.750"
    assert sorted(parts["plot"].value["data"]) == [[-2.0, 0.75, "Keras", "<img src=x onerror=alert(1)>"],
                                                   [-2.0, 0.9, "PyTorch", "<img src=x onerror=alert(1)>"]]
    assert parts["plot"].color_map == {"Keras": "#d00000", "PyTorch": "#ee8c00"}
    assert "| Keras | 1 | 2.5 | 0.750 |" in parts["figures"]
    assert teacher_tab.refresh(token, 3, "learning rate (log10)", None, parts["shown"]) == {}


def test_a_student_names_themselves_and_publishes_only_a_finished_run(visitor):  # noqa: F811
    assert "Nothing to publish yet" in publish.publish_pressed(visitor, "Grace")
    assert "**Grace**" in publish.name_changed(visitor, "Grace")
    space = shared.workspace(visitor)
    run = finished_run(space, TrainConfig(data_dir="x"), {"pytorch": 0.5})
    assert "Published your run" in publish.publish_pressed(visitor, "Grace H.")
    assert runs.is_published(run) and space.board_name == "Grace H."
    assert "Student" in publish.name_changed(visitor, " \n ")


# ---------------------------------------------------------------- defaults and caps

def test_caps_are_refused_by_the_server_and_shown_on_the_page(visitor, monkeypatch):  # noqa: F811
    monkeypatch.setenv(teacher.KEY_ENV, KEY)
    token = teacher.token_for(KEY, shared.workspaces().secret())
    with pytest.raises(gr.Error, match="the cap of epochs must be whole numbers from 1 to 20"):
        teacher_tab.set_caps(token, {"epochs": 50})
    with pytest.raises(gr.Error, match="cannot be capped"):
        teacher_tab.set_caps(token, {"lr": 0.1})
    assert "epochs 1–3" in teacher_tab.caps_pressed(token, 3, 128, 0, 4, 64)
    quick = {"framework": "pytorch", "dataset": "server/toy", "image_size": 32, "weights": "none"}
    for changes, words in (({"epochs": 4}, "epochs must be from 1 to 3 here \\(the teacher's cap"),
                           ({"epochs": 1, "image_size": 160}, "image_size must be from 32 to 128"),
                           ({"epochs": 1, "batch_size": 2}, "batch_size must be from 4 to 64"),
                           ({"epochs": 1, "unfreeze": 1}, "unfreeze must be from 0 to 0")):
        with pytest.raises(gr.Error, match=words):
            train.start_pressed(visitor, **{**quick, **changes})
    _, form = train.open_workspace(visitor)
    assert form["epochs"].maximum == 3 and form["image_size"].maximum == 128 and form["batch_size"].minimum == 4
    assert "epochs 1–3" in form["caps"] and "batch size 4–64" in form["caps"]
    with pytest.raises(gr.Error, match="outside the class's caps: epochs must be from 1 to 3"):
        teacher_tab.set_defaults(token, {"epochs": 5})
    teacher_tab.set_caps(token, {})
    assert train.open_workspace(visitor)[1]["caps"] == ""


def test_class_defaults_prefill_a_new_students_form_and_their_own_settings_win(visitor, monkeypatch):  # noqa: F811
    monkeypatch.setenv(teacher.KEY_ENV, KEY)
    token = teacher.token_for(KEY, shared.workspaces().secret())
    text = teacher_tab.use_my_settings(token, framework="pytorch", dataset="server/toy", epochs=2, image_size=64,
                                       weights="none", **{"augment.enabled": False})
    assert "epochs 2" in text and "framework pytorch" in text and "augment\\.enabled off" in text
    with pytest.raises(gr.Error, match="cannot be set here"):
        teacher_tab.set_defaults(token, {"data_dir": "/etc"})
    with pytest.raises(gr.Error, match="weights must be imagenet or none"):
        teacher_tab.set_defaults(token, {"weights": "/etc/passwd"})
    _, form = train.open_workspace(shared.workspaces().create().id)
    assert (form["epochs"], form["framework"], form["image_size"], form["augment.enabled"]) == (
        2, "pytorch", 64, False)
    space = shared.workspace(visitor)
    space.settings_file.write_text(json.dumps({"epochs": 7, "framework": "keras"}))
    _, form = train.open_workspace(visitor)
    assert (form["epochs"], form["framework"], form["image_size"]) == (7, "keras", 64)
