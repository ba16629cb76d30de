"""Code tab: the article's seven steps for the run set up on the Train tab, Keras left and PyTorch
right, with what differs at each step, each side's length, what really differs between the two
libraries (read from them, trainer/differences.py), and each side to take home as a notebook or a
script. Everything shown is made by trainer/recipe.py from the Train tab's settings (a TrainConfig),
and follows them as they change.

    code_tab.build(settings, tab)   # settings: the Train tab's widgets by TrainConfig field name
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

import gradio as gr

from trainer import recipe
from trainer.config import TrainConfig
from ui import text

STEPS = 7
MAX_SETS = 32  # download sets kept (one per distinct settings); the oldest goes first
DOWNLOADS = (("keras", "ipynb"), ("keras", "py"), ("pytorch", "ipynb"), ("pytorch", "py"))
INTRO = ("### The article's seven steps, for your run\nThe code of the run set up on the **Train** tab, in "
         "Keras and in PyTorch, step by step; it follows the settings as you change them. Each side, run "
         "top to bottom, trains the same network as the app with the same settings and saves a model the "
         "**Predict** tab can load.")
WAITING = "Reading the installed libraries (the first time takes a few seconds) ..."


def config_of(values: dict) -> TrainConfig:
    """The Train tab's widget values by name -> the TrainConfig they set (the data folder left to the
    student: the code says DATA_DIR = "data")."""
    settings: dict = {}
    for key, value in values.items():
        if key == "dataset":
            continue
        group, _, name = key.rpartition(".")
        (settings.setdefault(group, {}) if group else settings)[name] = value
    return TrainConfig.from_dict({**settings, "data_dir": "data", "out_dir": "models"}).validate()


def sizes_text(config: TrainConfig, dataset: str | None) -> str:
    sizes = recipe.sizes(config)
    keras, pytorch = sizes["keras"], sizes["pytorch"]
    layer = (f" ({keras['layer_lines']} lines and {keras['layer_statements']} statements of them are the "
             "augmentation layer Keras lacks)" if "layer_lines" in keras else "")
    where = f" Your data set on the Train tab: {text.md(dataset)}." if dataset else ""
    return (f"**Keras: {keras['lines']} lines, {keras['statements']} statements**{layer}; "
            f"**PyTorch: {pytorch['lines']} lines, {pytorch['statements']} statements**. Counted from the "
            f"code below; comments, docstrings and blank lines are not counted.{where}")


def downloads(config: TrainConfig) -> list[str]:
    """The four files for `config` in gradio's cache (which serves them and ages them out): made
    once per settings, at most MAX_SETS sets kept."""
    key = hashlib.sha256(config.to_json().encode()).hexdigest()[:20]
    root = Path(gr.utils.get_upload_folder()) / "recipes"
    folder = root / key
    paths = [folder / recipe.file_name(framework, kind) for framework, kind in DOWNLOADS]
    if not all(path.is_file() for path in paths):
        root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=root, prefix=".staging-"))
        try:
            for (framework, kind), path in zip(DOWNLOADS, paths):
                body = recipe.script(config, framework) if kind == "py" else _notebook_text(config, framework)
                (staging / path.name).write_text(body)
            os.replace(staging, folder)
        except OSError:  # another visitor made the same set meanwhile: theirs is as good
            shutil.rmtree(staging, ignore_errors=True)
        _bound(root)
    os.utime(folder)
    return [str(path) for path in paths]


def _notebook_text(config: TrainConfig, framework: str) -> str:
    import nbformat
    return nbformat.writes(recipe.notebook(config, framework))


def _bound(root: Path) -> None:
    sets = sorted((p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")),
                  key=lambda p: p.stat().st_mtime)
    for old in sets[:-MAX_SETS]:
        shutil.rmtree(old, ignore_errors=True)


def render(**values) -> list:
    """Everything the tab shows for the Train tab's current settings, in `build`'s output order."""
    try:
        config = config_of(values)
    except (ValueError, TypeError) as error:
        return [f"These settings cannot be trained on: {text.md(str(error), 400)}",
                *[gr.skip()] * (len(DOWNLOADS) + 3 * STEPS)]
    steps = recipe.steps(config)
    notes = [f"**{number}. {step.title}.** {step.note}" for number, step in enumerate(steps, 1)]
    return [sizes_text(config, values.get("dataset")), *downloads(config), *notes,
            *(step.keras for step in steps), *(step.pytorch for step in steps)]


def differences_text() -> str:
    from trainer import differences
    rows = differences.table()
    cell = lambda value: str(value).replace("|", "\\|").replace("<", "&lt;")
    lines = ["| | Keras | PyTorch |", "| --- | --- | --- |"]
    lines += [f"| **{cell(r['what'])}** | {cell(r['keras'])} | {cell(r['pytorch'])} |" for r in rows]
    return ("Read from the libraries installed on this server when the tab was first opened, not typed in.\n\n"
            + "\n".join(lines))


def build(settings: dict[str, gr.components.Component], tab: gr.Tab | None = None) -> None:
    """The tab's layout and events. `settings`: the Train tab's widgets by TrainConfig field
    ('framework', 'dataset', the form's fields, 'augment.<field>'); `tab`: the Tab itself, whose first
    opening computes the differences table."""
    initial = render(**{name: component.value for name, component in settings.items()})
    gr.Markdown(INTRO)
    sizes_md = gr.Markdown(initial[0], elem_id="code-sizes")
    with gr.Row():
        buttons = [gr.DownloadButton(f"{recipe.FRAMEWORK_NAMES[fw]} {'notebook' if kind == 'ipynb' else 'script'}"
                                     f" (.{kind})", value=initial[1 + i], elem_id=f"download-{fw}-{kind}",
                                     size="sm")
                   for i, (fw, kind) in enumerate(DOWNLOADS)]
    start = 1 + len(DOWNLOADS)
    notes, keras_boxes, torch_boxes = [], [], []
    for i in range(STEPS):
        notes.append(gr.Markdown(initial[start + i], elem_id=f"code-note-{i + 1}"))
        with gr.Row():
            keras_boxes.append(gr.Code(initial[start + STEPS + i], language="python", interactive=False,
                                       label=f"Keras, step {i + 1}", elem_id=f"code-keras-{i + 1}"))
            torch_boxes.append(gr.Code(initial[start + 2 * STEPS + i], language="python", interactive=False,
                                       label=f"PyTorch, step {i + 1}", elem_id=f"code-pytorch-{i + 1}"))
    with gr.Accordion("What really differs between the two \"same\" recipes", open=True):
        table_md = gr.Markdown(WAITING, elem_id="code-differences")
    outputs = [sizes_md, *buttons, *notes, *keras_boxes, *torch_boxes]
    gr.on([component.change for component in settings.values()], render, inputs_kwargs=settings, outputs=outputs,
          api_visibility="private", concurrency_limit=4, concurrency_id="code")
    if tab is not None:
        tab.select(differences_text, None, table_md, api_visibility="private", concurrency_limit=1,
                   concurrency_id="differences")

