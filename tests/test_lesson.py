"""A lesson without stumbles (issue 18): what a student saw go wrong on a walk through the app,
checked on the handlers' outputs."""

import pytest
from test_app import fake_jobs, visitor  # noqa: F401 - the fixtures

from classroom.jobs import RunView
from trainer import weights
from ui import shared, train
from ui.train import progress, run


def test_the_queue_is_said_once_in_plain_words():
    busy = {"training": 1, "waiting": 2, "slots": 1}
    waiting = progress.progress_text(RunView("r", "queued", position=2, start_in_s=136), busy)
    assert waiting == "**Waiting in the queue: number 2.** Estimated start in about 2:16."
    assert progress.queue_text(busy) == "The trainer is busy: 1 run training, 2 waiting."
    assert progress.queue_text({"training": 2, "waiting": 0, "slots": 3}) == \
        "2 runs training (3 can train at once), none waiting."
    assert progress.queue_text({"training": 0, "waiting": 0, "slots": 1}) == "The trainer is free."
    for overview in (busy, {"training": 3, "waiting": 1, "slots": 3}):
        assert "slot" not in progress.queue_text(overview) + waiting


def test_where_imagenet_weights_cannot_be_had_a_first_start_trains_from_random_init(visitor, fake_jobs,  # noqa: F811
                                                                                    monkeypatch):
    monkeypatch.setattr(weights, "status", lambda framework: "unavailable")
    _, form = train.open_workspace(visitor)
    assert (form["weights"], form["allow_random_init"]) == ("none", True)
    assert "none**, because ImageNet weights cannot be had on this server" in train.weights_text("none")
    space = shared.workspace(visitor)
    with pytest.raises(run.PageError, match="Allow random initialisation"):  # what the old default met
        run.submit(space, {"dataset": "server/toy", "weights": "imagenet"})
    chosen = {"weights": form["weights"], "allow_random_init": form["allow_random_init"]}
    train.start_pressed(visitor, dataset="server/toy", framework="pytorch", epochs=1, **chosen)  # not refused
    assert fake_jobs.view(space).status != "none"
    monkeypatch.setattr(weights, "status", lambda framework: "cached")
    assert train.open_workspace(visitor)[1]["weights"] == "none"  # a visitor's own choice, saved at Start, wins
    assert "weights" not in train.open_workspace(shared.workspaces().create().id)[1]  # the form's imagenet


def test_the_bank_line_of_a_first_run_does_not_read_as_a_failure(tiny_config):
    from types import SimpleNamespace

    from trainer.runner import bank_message
    result = {"history": [{}, {}]}
    cold = bank_message(SimpleNamespace(from_bank={"train": 0, "val": 0}), tiny_config, result)
    assert cold.startswith("augmented features computed fresh (the first run with these settings)")
    assert " 0 of " not in cold
    warm = bank_message(SimpleNamespace(from_bank={"train": 2, "val": 1}), tiny_config, result)
    assert warm == "augmented features of all 2 epochs from the feature bank; validation features from the bank"
