"""Train tab: the page's layout (the settings form, then `build`, which wires every handler)."""

from __future__ import annotations

import gradio as gr

from trainer import frameworks
from trainer.config import HELP, TrainConfig
from ui import shared
from ui.train import api, datasets, progress, publish, run
from ui.train.run import RANGES

POLL_S = 1.0

CHART_KEY = ("Loss per batch; darker: validation loss per epoch; paler: your previous run. "
             "Point at a line for its values.")


def settings_form(d: TrainConfig) -> dict[str, gr.components.Component]:
    """The training settings' widgets, by TrainConfig field."""
    form = {
        "epochs": gr.Slider(*RANGES["epochs"], d.epochs, step=1, label="Epochs", info=HELP["epochs"], elem_id="epochs"),
        "batch_size": gr.Slider(*RANGES["batch_size"], d.batch_size, step=1, label="Batch size",
                                info=HELP["batch_size"],
                                elem_id="batch-size"),
        "lr": gr.Number(d.lr, label="Learning rate", info=HELP["lr"]),
        "image_size": gr.Slider(*RANGES["image_size"], d.image_size, step=32, label="Image size",
                                info=HELP["image_size"], elem_id="image-size"),
        "head_units": gr.Slider(*RANGES["head_units"], d.head_units, step=8, label="Head units",
                                info=HELP["head_units"], elem_id="head-units"),
        "limit": gr.Number(d.limit, precision=0, minimum=0, label="Limit images per split",
                           info=HELP["limit"]),
        "augment.enabled": gr.Checkbox(True, label="Augmentation (settings of the Augment tab)", elem_id="augment"),
        "feature_cache": gr.Checkbox(False, label="Fast mode: feature cache", info=HELP["feature_cache"]),
        "unfreeze": gr.Slider(*RANGES["unfreeze"], 0, step=1, label="Unfreeze last stages", info=HELP["unfreeze"],
                              elem_id="unfreeze"),
        "weights": gr.Radio(["imagenet", "none"], value="imagenet", label="Weights",
                            info="imagenet (downloaded once) or none (random initialisation)",
                            elem_id="weights"),
        "allow_random_init": gr.Checkbox(False, label="Allow random initialisation",
                                         info=HELP["allow_random_init"], elem_id="allow-random-init"),
        "seed": gr.Number(d.seed, precision=0, label="Seed", info=HELP["seed"], elem_id="seed"),
    }
    gr.Markdown("The backbone stays in inference mode while training: its batch-norm statistics "
                "keep their ImageNet values instead of drifting with each small batch (the seed "
                "notebook's PyTorch loop let them drift).")
    return form


def build(browser: gr.BrowserState, augment_controls: dict[str, gr.components.Component],
          settings_out: dict | None = None) -> list:
    """Build the tab; return its load events (fn, inputs, outputs); its settings widgets by name go
    into `settings_out` (the Code tab follows them). Start, the run's progress and its chart come
    first, so that on a phone they fill the first screen; settings and results follow."""
    d = TrainConfig(data_dir="")
    with gr.Row():
        start_button = gr.Button("Start", variant="primary", min_width=120)
        stop_button = gr.Button("Stop", variant="stop", interactive=False, min_width=120)
    progress_md = gr.Markdown("No run yet.", elem_id="train-progress")
    with gr.Row():
        chart = gr.LinePlot(x="epoch", y="loss", color="series", color_title="", label="Loss",
                            y_title="loss (cross-entropy)", elem_id="train-chart",
                            min_width=300)
        accuracy = gr.ScatterPlot(x="epoch", y="accuracy", color="series", color_title="",
                                  label="Validation accuracy per epoch", y_lim=[0, 1],
                                  elem_id="train-accuracy", min_width=300)
    gr.Markdown(CHART_KEY)
    # The estimate in short is on the Start button ("Start (~4 min)"): a line of its own
    # beside it would push the chart off a phone's first screen. What it counts is said here.
    estimate_md = gr.Markdown(elem_id="train-estimate")
    queue_md = gr.Markdown(elem_id="train-queue")
    caps_md = gr.Markdown(elem_id="train-caps")  # the teacher's caps for the class, if any
    with gr.Row():
        with gr.Column(scale=1, min_width=320):
            framework = gr.Radio([*frameworks.NAMES, "both"], value="both", label="Framework",
                                 info=HELP["framework"], elem_id="framework")
            dataset = gr.Dropdown([], label="Data set", info="the server's data sets and your own uploads",
                                  elem_id="dataset")
            upload = gr.File(file_types=[".zip"], type="filepath", label="Upload a .zip of class folders",
                             elem_id="upload-zip", height=120)
            with gr.Row():
                check_button = gr.Button("Check data", size="sm")
                delete_button = gr.Button("Delete this upload", size="sm")
                fetch_button = gr.Button("Download the AvP images", size="sm")
            data_md = gr.Markdown(elem_id="data-check")
            weights_md = gr.Markdown(elem_id="weights-note")
            with gr.Accordion("Settings", open=True):
                form = settings_form(d)
        with gr.Column(scale=2, min_width=320):
            log = gr.Textbox(label="Log (newest first)", lines=6, max_lines=14, interactive=False,
                             elem_id="train-log")
            results_md = gr.Markdown("Results appear here when a run finishes.", elem_id="train-results")
            with gr.Row():  # the class board (ui/train/publish.py)
                board_name = gr.Textbox(label="Your name on the class board", placeholder="optional",
                                        max_length=publish.MAX_BOARD_NAME, elem_id="board-name", scale=2)
                publish_button = gr.Button("Publish my last run to the class board", size="sm",
                                           elem_id="publish", scale=1)
            publish_md = gr.Markdown(elem_id="publish-result")
            with gr.Accordion("The validation images the two models disagree on", open=False, visible=False,
                              elem_id="disagree-box") as disagree_box:
                disagreements = gr.Gallery(label="Disagreements (validation)", columns=3, height=300,
                                           elem_id="disagreements")
            confusion = gr.Plot(label="Confusion matrices (validation)", show_label=False, elem_id="confusion")
            mistakes = gr.Gallery(label="Misclassified validation images", columns=3, height=300)
    seen = gr.State("")
    timer = gr.Timer(POLL_S)

    settings = {"framework": framework, "dataset": dataset, **form,
                **{f"augment.{name}": c for name, c in augment_controls.items()}}
    restorable = list(settings.values())
    if settings_out is not None:
        settings_out.update(settings)
    view = {"seen": seen, "progress": progress_md, "queue": queue_md, "chart": chart, "accuracy": accuracy,
            "log": log, "results": results_md, "confusion": confusion, "mistakes": mistakes,
            "disagreements": disagreements, "disagree_box": disagree_box, "stop": stop_button}  # by poll's names

    def poll(workspace_id, seen_key):
        parts = progress.poll(workspace_id, seen_key)
        return {view[name]: value for name, value in parts.items()} if parts else gr.skip()

    upload.upload(datasets.upload_zip, [browser, upload], [dataset, data_md], api_name="upload_data")
    check_button.click(datasets.check_data, [browser, dataset], data_md, api_visibility="private")
    # The data check follows the visitor's choice (an upload's check, with its skipped entries, stays).
    dataset.input(datasets.check_data, [browser, dataset], data_md, api_visibility="private")
    delete_button.click(datasets.delete_upload, [browser, dataset], [dataset, data_md], api_visibility="private")
    fetch_button.click(datasets.fetch_avp, None, [dataset, data_md], api_visibility="private", concurrency_limit=1)
    form["weights"].change(datasets.weights_text, form["weights"], weights_md, api_visibility="private")
    start_button.click(run.start_pressed, [browser], progress_md, inputs_kwargs=settings, api_visibility="private",
                       concurrency_limit=4, concurrency_id="start").then(
        lambda: "", None, seen, api_visibility="private")
    gr.on([browser.change, *(c.change for c in settings.values())], run.estimate_text, [browser],
          [start_button, estimate_md],
          inputs_kwargs=settings, api_visibility="private", concurrency_limit=4, concurrency_id="estimate",
          trigger_mode="always_last", show_progress="hidden")
    stop_button.click(run.stop_pressed, browser, progress_md, api_visibility="private", concurrency_limit=None)
    timer.tick(poll, [browser, seen], list(view.values()), api_visibility="private", concurrency_limit=None)
    gr.on([board_name.submit, board_name.blur], publish.name_changed, [browser, board_name], publish_md,
          api_visibility="private")
    publish_button.click(publish.publish_pressed, [browser, board_name], publish_md, api_visibility="private")
    for fn, name in ((api.workspace_api, "workspace"), (api.datasets_api, "datasets"), (api.start_api, "start"),
                     (api.stop_api, "stop"), (api.status_api, "training_status"), (publish.publish_api, "publish"),
                     (publish.board_name_api, "board_name")):
        gr.api(fn, api_name=name, concurrency_limit=None if name != "start" else 4)

    def restore(workspace_id, request: gr.Request):
        space_id, values = run.open_workspace(workspace_id, request)
        shown = datasets.weights_text(values.get("weights", form["weights"].value))  # the choice it restores
        return [space_id, *(values.get(name, gr.skip()) for name in settings), shown, values["caps"],
                shared.workspace(space_id).board_name]

    return [(restore, browser, [browser, *restorable, weights_md, caps_md, board_name]),
            (poll, [browser, seen], list(view.values()))]
