"""The live chart's data: one colour per framework, the previous run as its own paler series, and
at most MAX_POINTS batch points per framework however long the run."""

from __future__ import annotations

from ui import charts


def run(framework: str, loss: float, batches: int = 1) -> list[dict]:
    events = [{"type": "batch", "framework": framework, "epoch": 1, "batch": b, "batches": batches, "loss": loss}
              for b in range(1, batches + 1)]
    return events + [{"type": "epoch", "framework": framework, "epoch": 1, "val_loss": loss, "val_accuracy": 0.5}]


def test_one_colour_per_framework_and_the_previous_run_paler():
    loss, accuracy = charts.training_frames(run("keras", 1) + run("pytorch", 2), previous=run("keras", 3))
    colours = charts.colour_map()
    assert set(loss["series"]) == {"keras train", "keras validation", "pytorch train", "pytorch validation",
                                   "keras train (previous run)"}
    assert set(accuracy["series"]) == {"keras", "pytorch", "keras (previous run)"}
    assert set(loss["series"]) | set(accuracy["series"]) <= set(colours)
    assert colours["keras train"] == "#d00000" and colours["pytorch train"] == "#ee8c00"
    assert colours["keras (previous run)"] not in (colours["keras"], colours["pytorch"])


def test_long_runs_are_thinned_to_max_points():
    loss, _ = charts.training_frames(run("pytorch", 1, batches=5000))
    trained = loss[loss["series"] == "pytorch train"]
    assert charts.MAX_POINTS <= len(trained) < 2 * charts.MAX_POINTS
    assert trained["epoch"].is_monotonic_increasing and trained["epoch"].max() <= 1


def test_an_empty_run_gives_empty_frames_with_their_columns():
    loss, accuracy = charts.training_frames([])
    assert list(loss.columns) == ["epoch", "loss", "series"] and loss.empty
    assert list(accuracy.columns) == ["epoch", "accuracy", "series"]
