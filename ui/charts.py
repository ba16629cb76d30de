"""Charts of a run: the live losses and accuracy as data for gradio's native plots (values on
hover, a legend under the plot, cheap to send again at every event), and the confusion matrices
as a matplotlib figure (drawn once, when a run ends)."""

from __future__ import annotations

from trainer import frameworks

COLOURS = {name: f.colour for name, f in frameworks.REGISTRY.items()}  # Keras red, PyTorch orange
MAX_POINTS = 600  # batch points per framework and run; more are thinned (the plot downsamples past ~1,000)


def pyplot():
    """matplotlib.pyplot on the Agg backend, imported on first use (it takes a while)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def series(events: list[dict]) -> dict[str, dict[str, list]]:
    """framework -> x/loss per batch and x/val_loss/val_accuracy per epoch (x in epochs)."""
    out: dict[str, dict[str, list]] = {}
    for e in events:
        if e["type"] not in ("batch", "epoch"):
            continue
        s = out.setdefault(e["framework"], {k: [] for k in ("bx", "loss", "ex", "val_loss", "val_acc")})
        if e["type"] == "batch":
            s["bx"].append(e["epoch"] - 1 + e["batch"] / e["batches"])
            s["loss"].append(e["loss"])
        else:
            s["ex"].append(e["epoch"])
            s["val_loss"].append(e["val_loss"])
            s["val_acc"].append(e["val_accuracy"])
    for s in out.values():
        step = max(1, len(s["bx"]) // MAX_POINTS)
        s["bx"], s["loss"] = s["bx"][::step], s["loss"][::step]
    return out


def training_frames(events: list[dict], previous: list[dict] | None = None):
    """(loss, accuracy) DataFrames for gr.LinePlot / gr.ScatterPlot: x in epochs, one series per
    framework and curve: "keras" (training loss per batch; validation accuracy), "keras validation"
    (loss per epoch), "keras (previous run)". The legend names the frameworks; colours say the rest."""
    import pandas as pd
    loss, accuracy = [], []
    for run, tag in ((previous or [], " (previous run)"), (events, "")):
        for framework, s in series(run).items():
            loss += [(x, y, f"{framework}{tag}") for x, y in zip(s["bx"], s["loss"])]
            if not tag:  # the previous run's validation loss would only crowd the plot
                loss += [(x, y, f"{framework} validation") for x, y in zip(s["ex"], s["val_loss"])]
            accuracy += [(x, y, f"{framework}{tag}") for x, y in zip(s["ex"], s["val_acc"])]
    return (pd.DataFrame(loss, columns=["epoch", "loss", "series"]),
            pd.DataFrame(accuracy, columns=["epoch", "accuracy", "series"]))


def colour_map(names) -> dict[str, str]:
    """Series name -> colour: the framework's colour, darker for validation, paler for the previous run.

    Only the series given: the browser fixes a plot's colours when it first draws it and redraws
    it only when settings such as this map change, so the map must change when a series appears."""
    every = {}
    for framework, f in frameworks.REGISTRY.items():
        every.update({framework: f.colour, f"{framework} validation": f.colour_dark,
                      f"{framework} (previous run)": f.colour_pale})
    return {name: every.get(name, "grey") for name in sorted(set(names))}


def legend(names) -> list[str]:
    """The series the legend names: this run's frameworks and the previous run's pale lines (the
    darker validation lines are said in the key under the chart)."""
    return [name for name in sorted(set(names)) if name in COLOURS or name.endswith(" (previous run)")]


def confusion_figure(summaries: list[dict]):
    """One confusion matrix per framework (rows: true class, columns: predicted)."""
    with_matrix = [s for s in summaries if s.get("confusion")]
    if not with_matrix:
        return None
    plt = pyplot()
    figure, axes = plt.subplots(1, len(with_matrix), figsize=(4.2 * len(with_matrix), 3.6), squeeze=False)
    for ax, summary in zip(axes[0], with_matrix):
        matrix, classes = summary["confusion"], summary["classes"]
        ax.imshow(matrix, cmap="Blues")
        for i, row in enumerate(matrix):
            for j, count in enumerate(row):
                ax.text(j, i, count, ha="center", va="center",
                        color="white" if count > max(map(max, matrix)) / 2 else "black")
        names = [tick_label(c) for c in classes]
        ax.set_xticks(range(len(classes)), names, rotation=30)
        ax.set_yticks(range(len(classes)), names)
        name = frameworks.DISPLAY.get(summary["framework"], summary["framework"])
        ax.set(title=f"{name} (validation)", xlabel="predicted", ylabel="true")
    # The figure names itself: a label over the plot would cover the first matrix's title.
    figure.suptitle("Confusion matrices: validation images, true class against predicted")
    figure.tight_layout()
    plt.close(figure)
    return figure


def tick_label(class_name: str) -> str:
    """A visitor's class name as plain matplotlib text: short, and `$` not read as mathtext."""
    from ui.text import plain
    return plain(class_name, 24).replace("$", r"\$")
