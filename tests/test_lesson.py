"""A lesson without stumbles (issue 18): what a student saw go wrong on a walk through the app,
checked on the handlers' outputs."""

from classroom.jobs import RunView
from ui.train import progress


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

