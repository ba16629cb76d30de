"""One person cannot take the server: budgets per person and per run, bounded events, disk that is
counted by blocks and walked without recursion (issue 16). Fast: fake workers, no framework."""

import json
import os
import time
import unicodedata
import zipfile
from types import SimpleNamespace

import pytest
from test_classroom import FAKE_WORKER, config, paced, wait_for

from classroom import cost, runs
from classroom.jobs import Jobs, TooLong
from classroom.people import Budgets, OverBudget, People, person_of
from classroom.workspace import Limits, Workspaces, folder_bytes, measure, remove_tree
from trainer import archive, loop
from trainer.config import TrainConfig
from trainer.data import DataError


def request(host="10.0.0.1", forwarded=None, username=None):
    """What gradio hands a handler: headers (lower-case), the socket's client, a user when signed in."""
    headers = {"x-forwarded-for": forwarded} if forwarded else {}
    return SimpleNamespace(headers=headers, client=SimpleNamespace(host=host), username=username)


def spaces_for(tmp_path, budgets=None, **limits):
    return Workspaces(tmp_path / "workspaces", Limits(idle_s=3600, **limits), People(budgets or Budgets()))


# ---------------------------------------------------------------- a person

def test_a_spoofed_forwarded_header_buys_no_new_person():
    # Behind one proxy (a Space), the proxy's own entry is the last one: what a client wrote before it
    # changes nothing.
    real = person_of(request(forwarded="203.0.113.7"), hops=1)
    assert person_of(request(forwarded="1.2.3.4, 203.0.113.7"), hops=1) == real
    assert person_of(request(forwarded="9.9.9.9, 8.8.8.8, 203.0.113.7"), hops=1) == real
    assert person_of(request(forwarded="203.0.113.8"), hops=1) != real
    # Without a trusted proxy (a class server), the header is the client's word: the socket counts.
    assert person_of(request("10.0.0.5", forwarded="1.1.1.1"), hops=0) == person_of(request("10.0.0.5"), hops=0)
    # A signed-in user is a person, whatever the address.
    ada = person_of(request("10.0.0.5", username="ada"), hops=0)
    assert ada == person_of(request("10.9.9.9", username="ada"), hops=0)
    assert "203.0.113.7" not in real  # kept as a hash


def test_workspaces_per_hour_are_counted_per_person_and_the_refusal_says_what_to_do(tmp_path):
    spaces = spaces_for(tmp_path, Budgets(workspaces_per_hour=3))
    for _ in range(3):
        spaces.create("flooder")
    with pytest.raises(OverBudget, match="reload this page"):
        spaces.create("flooder")
    assert spaces.create("student").root.is_dir()  # somebody else's flood refuses nobody else


def test_a_full_server_removes_the_heaviest_persons_empty_workspaces_first(tmp_path):
    spaces = spaces_for(tmp_path, max_workspaces=4)
    student = spaces.create("student")
    flood = [spaces.create("flooder") for _ in range(3)]
    (flood[1].uploads / "data").mkdir()  # not empty: kept
    os.utime(flood[2].root / ".seen", (time.time() - 600,) * 2)  # the least recently visited
    newcomer = spaces.create("newcomer")
    assert newcomer.root.is_dir() and student.root.is_dir() and flood[1].root.is_dir()
    assert not flood[2].root.exists() and flood[0].root.is_dir() and spaces.count() == 4


def test_runs_per_person_are_capped_and_places_go_round_robin(tmp_path):
    spaces = spaces_for(tmp_path, Budgets(runs=3))
    jobs = Jobs(spaces, spaces.root / ".keep-queue", max_runs=1, command=FAKE_WORKER, warm=0)
    first = paced(spaces.create("flooder"), 0.05)
    jobs.submit(first, config(), units=1)
    flood = [spaces.create("flooder") for _ in range(2)]
    for space in flood:
        jobs.submit(space, config(), units=1)
    with pytest.raises(OverBudget, match="most one address may have at once"):
        jobs.check(spaces.create("flooder"))
    student = spaces.create("student")
    jobs.submit(student, config(), units=1)
    # The flooder's first run trains; the student's run, queued last, starts next.
    assert jobs.view(student).position == 1 and jobs.view(flood[0]).position == 2


def test_a_run_past_the_cap_is_refused_with_the_numbers():
    spaces_config = TrainConfig(data_dir="x", framework="both", epochs=20, image_size=448, batch_size=1, unfreeze=4)
    units = cost.cost_units(spaces_config, 694, 200)
    defaults = cost.cost_units(TrainConfig(data_dir="x"), 694, 200)
    assert units > 50 * defaults  # the maximal run costs far more than the defaults
    with pytest.raises(TooLong, match=r"about \d+ minutes on this server \(694 images x 20 epochs at 448 px"):
        Jobs.check_cost(SimpleNamespace(estimate_units_s=lambda u: u * 0.03, max_run_s=1200), spaces_config, units, 694)
    assert cost.estimate_s(defaults, 0.03) < 300  # the defaults: minutes, well under the cap


def test_a_run_at_the_cap_ends_as_a_finished_run(tmp_path):
    spaces = spaces_for(tmp_path)
    jobs = Jobs(spaces, spaces.root / ".keep-queue", max_runs=1, command=FAKE_WORKER, warm=0, max_run_s=0.5)
    space = paced(spaces.create(), 0.1)
    jobs.submit(space, config(epochs=50), units=1)
    wait_for(lambda: (jobs.schedule(), not jobs.view(space).active)[1], timeout_s=20)
    view = jobs.view(space)
    assert view.status == "done" and runs.latest(view.events, "finished")["time_up"]
    assert jobs.unit_seconds == []  # a cut run says nothing about the speed per unit


def test_the_training_loop_stops_at_time_up_and_keeps_what_it_trained():
    events, batches = [], 0

    def train_batches(epoch):
        nonlocal batches
        for _ in range(5):
            batches += 1
            yield 0.5, 4, 2, 0.0

    result = loop.run_epochs("keras", 3, 20, 4, train_batches, lambda: (0.4, 0.8, "probabilities"), events.append,
                             lambda: loop.TIME_UP if batches >= 7 else False)
    assert not result["stopped"] and result["time_up"] and result["val_probabilities"] == "probabilities"
    assert [h["epoch"] for h in result["history"]] == [1, 2] and result["history"][1]["images"] == 8


def test_batch_events_are_coalesced_to_a_few_hundred_and_keep_each_epochs_last(tmp_path):
    events = []

    def train_batches(epoch):
        for _ in range(5000):
            yield 1.0, 1, 1, 0.0

    loop.run_epochs("pytorch", 4, 5000, 1, train_batches, lambda: (0.5, 0.5, None), events.append)
    batches = [e for e in events if e["type"] == "batch"]
    assert len(batches) <= loop.MAX_BATCH_POINTS + 4
    assert {(e["epoch"], e["batch"]) for e in batches} >= {(epoch, 5000) for epoch in range(1, 5)}
    assert all(e["loss"] == 1.0 for e in batches)


def test_events_are_read_incrementally_into_a_bounded_list(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    with open(run / runs.EVENTS, "w") as sink:
        sink.write(json.dumps({"type": "start", "framework": "pytorch"}) + "\n")
        for batch in range(20_000):
            sink.write(json.dumps({"type": "batch", "batch": batch, "eta_s": 1}) + "\n")
        sink.write('{"type": "epoch", "epo')  # being written
    events = runs.read_events(run)
    assert events[0]["type"] == "start" and len(events) <= runs.MAX_BATCH_EVENTS + 1
    assert events[-1]["batch"] == 19_999
    with open(run / runs.EVENTS, "a") as sink:
        sink.write('ch": 1}\n')
    assert runs.latest(runs.read_events(run), "epoch") == {"type": "epoch", "epoch": 1}
    log = runs._logs[str(run / runs.EVENTS)]
    assert log.offset == (run / runs.EVENTS).stat().st_size  # nothing read twice


# ---------------------------------------------------------------- disk

def test_disk_counts_files_and_folders_not_only_bytes(tmp_path):
    folder = tmp_path / "tiny"
    folder.mkdir()
    for n in range(200):
        (folder / f"{n}.txt").write_text("x")
    usage = measure(folder)
    assert usage.files == 200 and usage.bytes >= 200 * 4096  # 200 bytes of text, 800 KB of disk


def make_deep(path, depth):
    for _ in range(depth + 1):  # os.makedirs recurses too
        path.mkdir()
        path = path / "d"


def test_a_very_deep_tree_is_measured_removed_and_swept_without_recursion(tmp_path):
    spaces = spaces_for(tmp_path)
    space = spaces.create()
    deep = space.uploads / "deep"
    make_deep(deep, 1500)  # deeper than Python's recursion limit (os.walk, rglob and rmtree recurse in 3.11)
    assert measure(space.root).depth > 1500 and folder_bytes(space.root) > 1500 * 4096
    assert spaces.sweep() == [f"{space.id}/uploads/deep"] and not deep.exists()
    make_deep(deep, 1500)
    remove_tree(deep)
    assert not deep.exists()


def test_the_all_visitors_disk_is_reserved_per_person(tmp_path):
    spaces = spaces_for(tmp_path, Budgets(disk_bytes=2 * 2**20), quota_bytes=2**30)
    a, b = spaces.create("flooder"), spaces.create("flooder")
    (a.uploads / "big.bin").write_bytes(b"0" * 2**20)
    (b.uploads / "big.bin").write_bytes(b"0" * 2**20)
    a.used_bytes(), b.used_bytes()
    with pytest.raises(Exception, match="from your address"):
        spaces.create("flooder").require_free(2**20, "this upload")
    spaces.create("student").require_free(2**20, "this upload")  # another person's disk is untouched


# ---------------------------------------------------------------- names and shapes of zips

def zip_with(tmp_path, names):
    path = tmp_path / "data.zip"
    with zipfile.ZipFile(path, "w") as archive_file:
        for name in names:
            archive_file.writestr(name, b"x")
    return path


@pytest.mark.filterwarnings("ignore:Duplicate name")
@pytest.mark.parametrize("names, words", [
    (["Alien/1.jpg", "alien/2.jpg"], "'Alien' and 'alien' differ only in letter case"),
    ([f"{unicodedata.normalize('NFC', 'café')}/1.jpg", f"{unicodedata.normalize('NFD', 'café')}/2.jpg"],
     "differ only in letter case or Unicode form"),
    (["a/1.jpg", "a/1.jpg"], "'a/1.jpg' appears twice"),
    (["/".join(["d"] * 30) + "/1.jpg"], "31 folders deep, more than the 8 allowed"),
])
def test_colliding_duplicate_and_deep_names_are_refused_before_anything_is_written(tmp_path, names, words):
    (tmp_path / "out").mkdir()
    with pytest.raises(DataError, match=words):
        archive.extract_zip(zip_with(tmp_path, names), tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []


def test_look_alike_class_folders_are_refused_in_a_folder_too(tmp_path):
    from conftest import make_dataset
    from trainer import data
    root = make_dataset(tmp_path / "d", per_class=(3, 2), classes=("Alien", "alien"))
    with pytest.raises(DataError, match="'Alien' and 'alien' differ only in letter case"):
        data.discover(root)


# ---------------------------------------------------------------- against a live app

@pytest.mark.slow
def test_a_spoofed_forwarded_header_buys_no_budget_from_a_live_app(tmp_path):
    """Behind one trusted proxy, what a client writes into x-forwarded-for before the proxy's own entry
    changes nothing: the hourly budget of new workspaces is the address's, whatever it claims."""
    from gradio_client import Client

    from support.launch import start_app
    app = start_app(tmp_path / "reference", tmp_path / "workspaces", log=tmp_path / "app.log",
                    env={"AVP_TRUSTED_PROXIES": "1", "AVP_PERSON_WORKSPACES_PER_HOUR": "3"})
    try:
        def workspace(forwarded):
            return Client(app.url, verbose=False, headers={"x-forwarded-for": forwarded}).predict(
                "", api_name="/workspace")
        for claimed in range(3):
            workspace(f"10.9.9.{claimed}, 203.0.113.9")
        with pytest.raises(Exception, match="new workspaces an hour is the most one address"):
            workspace("10.9.9.99, 203.0.113.9")
        assert len(workspace("203.0.113.10")) == 32  # another address (as the proxy saw it) has its own
    finally:
        app.stop()


@pytest.mark.slow
def test_a_hostile_client_cannot_take_the_app_from_a_class(capsys):
    """The abuse test (tests/abuse.py) at a size that fits the suite."""
    import abuse
    assert abuse.main(["--students", "3", "--minutes", "8", "--poll-seconds", "10"]) == 0, capsys.readouterr().out
    report = capsys.readouterr().out
    assert "runs completed 3/3, lost 0" in report and "failed requests: 0" in report
    assert "hostile bombs accepted: []" in report and "would take about" in report
