"""Matplotlib figures of a run: live losses and accuracy, and confusion matrices."""

from __future__ import annotations

COLOURS = {"keras": "#d00000", "pytorch": "#ee8c00"}  # Keras red, PyTorch orange
MAX_POINTS = 600  # per framework and run; older batch points are thinned


def pyplot():
    """matplotlib.pyplot on the Agg backend, imported on first use (it takes ~0.5 s)."""
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


def training_figure(events: list[dict], previous: list[dict] | None = None):
    """Loss (train per batch, validation per epoch) and validation accuracy; previous run faded."""
    plt = pyplot()
    figure, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(10, 3.6))
    for run, alpha, tag in ((previous or [], 0.25, " (previous run)"), (events, 1.0, "")):
        for framework, s in series(run).items():
            colour = COLOURS.get(framework, "grey")
            loss_ax.plot(s["bx"], s["loss"], color=colour, alpha=alpha * 0.8, lw=1.2,
                         label=f"{framework} train{tag}")
            loss_ax.plot(s["ex"], s["val_loss"], "o--", color=colour, alpha=alpha, ms=6,
                         label=f"{framework} validation{tag}")
            acc_ax.plot(s["ex"], s["val_acc"], "o-", color=colour, alpha=alpha, ms=6,
                        label=f"{framework}{tag}")
    loss_ax.set(title="Loss", xlabel="epoch", ylabel="cross-entropy")
    acc_ax.set(title="Validation accuracy", xlabel="epoch", ylim=(0, 1.02))
    if not any(len(line.get_xdata()) for line in acc_ax.get_lines()):
        acc_ax.set_xlim(0, 1)  # before the first epoch ends: an empty axis over the first epoch
    for ax in (loss_ax, acc_ax):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="best")
    figure.tight_layout()
    plt.close(figure)  # gradio renders it; pyplot must not keep it alive
    return figure


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
        ax.set(title=f"{summary['framework']} (validation)", xlabel="predicted", ylabel="true")
    figure.tight_layout()
    plt.close(figure)
    return figure


def tick_label(class_name: str) -> str:
    """A visitor's class name as plain matplotlib text: short, and `$` not read as mathtext."""
    from ui.text import plain
    return plain(class_name, 24).replace("$", r"\$")
