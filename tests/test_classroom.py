"""Workspaces and the training queue, as a class of visitors meets them: ids that cannot be forged,
quotas, expiry, a FIFO with positions, Stop that only reaches one's own run, and a restart that
loses nothing. The queue runs tests/support/fake_worker.py, which writes a real run's events in a
fraction of a second; real training through the queue is tested in test_app_api.py."""

import os
import signal
import sys
import time

import pytest

from classroom.jobs import Busy, Jobs, QueueFull
from classroom.workspace import Limits, QuotaExceeded, Workspaces
from conftest import ROOT
from support import fake_worker
from trainer.config import TrainConfig

FAKE_WORKER = (sys.executable, str(ROOT / "tests" / "support" / "fake_worker.py"))


@pytest.fixture
def spaces(tmp_path):
    return Workspaces(tmp_path / "workspaces", Limits(idle_s=3600, quota_bytes=10_000))


def jobs_for(spaces, max_runs=1, **kwargs):
    return Jobs(spaces, spaces.root / ".keep-queue", max_runs=max_runs, command=FAKE_WORKER, warm=0, **kwargs)


def config(epochs=1):
    """A run of `epochs` x 10 fake batches (tests/support/fake_worker.py)."""
    return TrainConfig(data_dir="unused", epochs=epochs)


def paced(space, pace_s: float):
    """The workspace, its fake runs now taking `pace_s` per batch (0.02 s unless said)."""
    (space.root / fake_worker.PACE_FILE).write_text(str(pace_s))
    return space


def wait_for(condition, timeout_s=30):
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


# ---------------------------------------------------------------- workspaces

def test_workspace_ids_are_unguessable_and_nothing_else_opens_one(spaces):
    space = spaces.create()
    assert len(space.id) == 32 and spaces.open(space.id).root == space.root
    for forged in ("../" + space.id, space.id.upper(), space.id[:-1], "", None, 42, "a" * 32, f"{space.id}/.."):
        assert spaces.open(forged) is None, forged
    assert spaces.open_or_create("not-an-id").id != space.id


def test_expired_workspaces_are_swept_unless_a_run_needs_them(spaces):
    old, busy, fresh = spaces.create(), spaces.create(), spaces.create()
    (spaces.root / "crash-leftover.tmp").write_text("x")
    later = time.time() + 2 * 3600
    for space in (old, busy):
        os.utime(space.root / ".seen", (later - 3 * 3600, later - 3 * 3600))
    os.utime(fresh.root / ".seen", (later, later))
    removed = spaces.sweep(in_use=lambda workspace_id: workspace_id == busy.id, now=later)
    assert set(removed) == {old.id, "crash-leftover.tmp"}
    assert busy.root.is_dir() and fresh.root.is_dir() and not old.root.exists()
    assert spaces.secret() == spaces.secret()  # the browser-state key survives sweeps


def test_quota_refuses_with_numbers_and_uploads_are_found_by_listing(spaces):
    space = spaces.create()
    folder = space.upload_folder("../../My <data> ${x}.zip")
    assert folder.parent == space.uploads and folder.name == "My_data_x"
    (folder / "big.bin").write_bytes(b"0" * 9_000)
    with pytest.raises(QuotaExceeded, match="needs about .* MB"):
        space.require_free(2_000, "this upload")
    assert space.upload_names() == ["My_data_x"] and space.upload_path("../My_data_x") is None
    assert space.remove_upload("My_data_x") and space.upload_names() == []


# ---------------------------------------------------------------- the queue

def test_runs_wait_in_order_with_positions_and_one_run_per_workspace(spaces):
    jobs = jobs_for(spaces)
    a, b, c = spaces.create(), spaces.create(), spaces.create()
    jobs.submit(paced(a, 0.2), config())
    jobs.submit(b, config())
    jobs.submit(c, config())
    with pytest.raises(Busy):
        jobs.submit(b, config())
    assert jobs.view(a).status in ("starting", "running")
    assert (jobs.view(b).position, jobs.view(c).position) == (1, 2)
    assert 0 < jobs.view(b).start_in_s < jobs.view(c).start_in_s
    assert jobs.overview() == {"training": 1, "waiting": 2, "slots": 1, "paused": False}
    positions = []

    def finished():
        jobs.schedule()
        positions.append(jobs.view(c).position)
        return jobs.view(c).status == "done"
    wait_for(finished)
    assert [p for p in dict.fromkeys(positions) if p] == [2, 1]  # counted down, in order
    assert [jobs.view(s).status for s in (a, b)] == ["done", "done"]


def test_a_waiting_run_is_told_the_running_runs_remaining_time_from_its_progress(spaces):
    """The running run's estimate before it started said ~10 minutes; its batches say 90 s are left
    of PyTorch and Keras is still to come at the same pace (60 s done + 90 s left): the next run
    starts in ~4 minutes, not in ~10 less the time gone."""
    from classroom import runs
    from classroom.jobs import Entry
    jobs = jobs_for(spaces, max_run_s=3600)
    going, waiting = spaces.create(), spaces.create()
    now = time.time()
    for space, run_id in ((going, "r1"), (waiting, "r2")):
        runs.create(space.runs / run_id, TrainConfig(data_dir="unused", framework="both"))
    units = (600 - 10) / jobs.unit_s()  # an estimate of 600 s
    jobs.running.append(Entry(going.id, "r1", units, now - 60, started_at=now - 60, pid=None))
    jobs.waiting.append(Entry(waiting.id, "r2", units, now))
    runs.append_event(going.runs / "r1", {"type": "start", "framework": "pytorch"})
    assert 530 < jobs.view(waiting).start_in_s < 545  # no batch yet: the estimate less the minute gone
    runs.append_event(going.runs / "r1", {"type": "batch", "framework": "pytorch", "batch": 4, "batches": 10,
                                          "elapsed_s": 60.0, "eta_s": 90.0})
    assert jobs.view(waiting).start_in_s == pytest.approx(90 + 150)
    runs.append_event(going.runs / "r1", {"type": "end", "framework": "pytorch"})
    runs.append_event(going.runs / "r1", {"type": "batch", "framework": "keras", "batch": 5, "batches": 10,
                                          "elapsed_s": 70.0, "eta_s": 70.0})
    assert jobs.view(waiting).start_in_s == pytest.approx(70)  # the last framework: its own ETA


def test_stop_reaches_only_ones_own_run(spaces):
    jobs = jobs_for(spaces)
    a, b = spaces.create(), spaces.create()
    jobs.submit(paced(a, 0.05), config(epochs=20))
    jobs.submit(b, config())
    assert jobs.cancel(b) == "cancelled" and jobs.view(b).status == "cancelled"
    assert jobs.cancel(spaces.create()) is None
    wait_for(lambda: jobs.view(a).status == "running")
    assert jobs.view(a).active  # B's cancel and a stranger's did nothing to A
    assert jobs.cancel(a) == "stopping"
    wait_for(lambda: (jobs.schedule(), jobs.view(a).status)[1] == "stopped")


def test_a_restarted_app_finds_the_running_run_and_starts_the_waiting_ones(spaces):
    jobs = jobs_for(spaces)
    a, b = spaces.create(), spaces.create()
    jobs.submit(paced(a, 0.1), config())
    jobs.submit(b, config())
    restarted = jobs_for(spaces)  # a new app process reads the queue from disk
    assert restarted.view(a).status in ("starting", "running") and restarted.view(b).position == 1
    wait_for(lambda: (restarted.schedule(), restarted.view(b).status)[1] == "done")
    assert restarted.view(a).status == "done"
    assert restarted.unit_seconds  # finished runs feed the next estimates


def test_a_run_handed_to_a_retiring_warm_worker_goes_back_to_the_head_of_the_queue(spaces):
    jobs = Jobs(spaces, spaces.root / ".keep-queue", max_runs=1, command=FAKE_WORKER, warm=1)
    a, b = spaces.create(), spaces.create()
    jobs.schedule()  # a warm (fake) worker is waiting
    jobs.submit(a, config())
    jobs.submit(b, config())
    wait_for(lambda: (jobs.schedule(), jobs.view(b).status)[1] == "done")
    pids = [next(e["pid"] for e in jobs.view(s).events if e["type"] == "begin") for s in (a, b)]
    assert jobs.view(a).status == "done" and pids[0] != pids[1]
    jobs.close()


def test_a_full_queue_says_so(spaces):
    jobs = jobs_for(spaces, max_waiting=1)
    jobs.submit(paced(spaces.create(), 0.2), config())
    jobs.submit(spaces.create(), config())
    with pytest.raises(QueueFull, match="queue is full"):
        jobs.submit(spaces.create(), config())


def test_a_killed_worker_reads_as_failed_and_frees_its_slot(spaces):
    jobs = jobs_for(spaces)
    a, b = spaces.create(), spaces.create()
    jobs.submit(paced(a, 0.2), config(epochs=10))
    jobs.submit(b, config())
    wait_for(lambda: jobs.view(a).status == "running")
    os.kill(next(e["pid"] for e in jobs.view(a).events if e["type"] == "begin"), signal.SIGKILL)
    wait_for(lambda: (jobs.schedule(), jobs.view(b).status)[1] == "done")
    view = jobs.view(a)
    assert view.status == "failed" and "ended unexpectedly" in view.error


@pytest.mark.slow
def test_warm_workers_train_run_after_run_and_a_killed_one_is_replaced(tmp_path, spaces):

    from conftest import make_dataset
    jobs = Jobs(spaces, spaces.root / ".keep-queue", max_runs=1)  # the real worker, one warm
    space = spaces.create()
    config = TrainConfig(framework="pytorch", data_dir=str(make_dataset(tmp_path / "d", per_class=(8, 2))),
                         out_dir=str(space.models), epochs=1, batch_size=4, image_size=32, weights="none")
    jobs.schedule()  # the warm worker starts importing the frameworks

    def trained_by(config, status="done") -> int:
        jobs.submit(space, config)
        wait_for(lambda: (jobs.schedule(), jobs.view(space).status)[1] == status, timeout_s=120)
        return next(e["pid"] for e in jobs.view(space).events if e["type"] == "begin")

    try:
        first, second = trained_by(config), trained_by(config)
        assert first == second  # the same warm process trained both runs
        jobs.submit(space, config.with_changes(epochs=200))
        wait_for(lambda: (jobs.schedule(), jobs.view(space).status)[1] == "running", timeout_s=120)
        os.kill(first, signal.SIGKILL)
        wait_for(lambda: (jobs.schedule(), jobs.view(space).status)[1] == "failed")
        assert trained_by(config) != first  # a killed worker is replaced
    finally:
        jobs.close()


@pytest.mark.slow
def test_a_small_class_shares_one_app(capsys):
    """The classroom load test (tests/class_load.py) at a size that fits the suite, hostile uploads
    mixed in: every student's run completes, no request fails, and the figures are printed."""
    import class_load
    assert class_load.main(["--students", "4", "--minutes", "8", "--hostile"]) == 0
    report = capsys.readouterr().out
    assert "runs completed 4/4, lost 0" in report and "failed requests: 0" in report
