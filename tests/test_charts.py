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
    assert set(loss["series"]) == {"keras", "keras validation", "pytorch", "pytorch validation",
                                   "keras (previous run)"}
    assert set(accuracy["series"]) == {"keras", "pytorch", "keras (previous run)"}
    colours = charts.colour_map(loss["series"])
    assert set(colours) == set(loss["series"]) and colours["keras"] == "#d00000" and colours["pytorch"] == "#ee8c00"
    assert len(set(colours.values())) == len(colours)
    assert charts.legend(loss["series"]) == ["keras", "keras (previous run)", "pytorch"]  # the pale line named


def test_the_confusion_matrices_name_themselves_above_both_titles():
    """The figure carries its own title (the plot's label covered the second matrix's title)."""
    ends = [{"framework": fw, "classes": ["alien", "predator"], "confusion": [[5, 1], [2, 4]]}
            for fw in ("keras", "pytorch")]
    figure = charts.confusion_figure(ends)
    titles = [ax.get_title() for ax in figure.axes]
    assert titles == ["Keras (validation)", "PyTorch (validation)"]
    assert figure.get_suptitle().startswith("Confusion matrices")
    figure.canvas.draw()
    heading = figure._suptitle.get_window_extent()
    assert all(heading.y0 >= ax.title.get_window_extent().y1 - 1 for ax in figure.axes)  # above, not over


def test_the_colour_map_changes_when_a_series_appears():
    """The browser redraws a plot's colours only when its settings change: a new framework must
    change the map, or its line is drawn in no colour."""
    first, _ = charts.training_frames(run("pytorch", 1))
    both, _ = charts.training_frames(run("pytorch", 1) + run("keras", 1))
    assert charts.colour_map(first["series"]) != charts.colour_map(both["series"])


def test_long_runs_are_thinned_to_max_points():
    loss, _ = charts.training_frames(run("pytorch", 1, batches=5000))
    trained = loss[loss["series"] == "pytorch"]
    assert charts.MAX_POINTS <= len(trained) < 2 * charts.MAX_POINTS
    assert trained["epoch"].is_monotonic_increasing and trained["epoch"].max() <= 1


def test_an_empty_run_gives_empty_frames_with_their_columns():
    loss, accuracy = charts.training_frames([])
    assert list(loss.columns) == ["epoch", "loss", "series"] and loss.empty
    assert list(accuracy.columns) == ["epoch", "accuracy", "series"]
