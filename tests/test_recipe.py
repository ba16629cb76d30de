"""The Code tab's recipe: one text for page, notebook and script; it follows the settings; it
compiles and names no server folder; its sizes are counted from it; the differences table is read
from the libraries (a patched default changes its row)."""

import ast
import functools
import json
import subprocess
import sys

import pytest

from trainer import recipe
from trainer.augment import AugmentConfig
from trainer.config import TrainConfig

DEFAULT = TrainConfig(data_dir="/srv/secret/avp", out_dir="/srv/secret/models")
CONFIGS = [DEFAULT, DEFAULT.with_changes(unfreeze=2, epochs=5, weights="none"),
           DEFAULT.with_changes(augment=AugmentConfig(enabled=False), unfreeze=1),
           DEFAULT.with_changes(augment=AugmentConfig(rotation_deg=15, shift=0.1, vflip=True, hflip=False)),
           DEFAULT.with_changes(feature_cache=True)]
FRAMEWORKS = ("keras", "pytorch")


def test_seven_steps_each_with_a_note_and_both_sides():
    steps = recipe.steps(DEFAULT)
    assert len(steps) == 7
    for step in steps:
        assert step.title and step.note and step.keras.strip() and step.pytorch.strip()
        assert "--" not in step.note  # the page's own words, no command-line flags


def test_the_training_step_says_which_engine_the_app_computes_the_frozen_backbone_in():
    training = {step.title: step.note for step in recipe.steps(DEFAULT)}["Training"]
    assert "ONNX Runtime" in training and "tf.function" in training and "XLA" in training
    assert "the precision's rounding" in training and "bfloat16 torch.compile" in training
    unfrozen = {step.title: step.note for step in recipe.steps(DEFAULT.with_changes(unfreeze=1))}["Training"]
    assert "ONNX Runtime" not in unfrozen  # unfrozen stages change: every engine is the framework's own pass


@pytest.mark.parametrize("config", CONFIGS, ids=["default", "unfreeze2", "no-augment", "more", "cache"])
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_script_compiles_standalone_and_names_no_server_folder(config, framework):
    script = recipe.script(config, framework)
    tree = ast.parse(script)
    compile(tree, "script.py", "exec")
    assert "/srv/secret" not in script and 'DATA_DIR = "data"' in script
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    allowed = {"json", "math", "pathlib", "numpy", "PIL"} | (
        {"keras", "tensorflow"} if framework == "keras" else {"torch", "torchvision", "safetensors"})
    assert imported <= allowed, imported - allowed
    assert "trainer" not in imported  # standalone: nothing of this project is imported


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_page_notebook_and_script_are_the_same_text(framework):
    from ui import code_tab
    config = DEFAULT.with_changes(unfreeze=1)
    shown = [step.code(framework) for step in recipe.steps(config)]
    cells = [cell.source for cell in recipe.notebook(config, framework).cells if cell.cell_type == "code"]
    assert cells == [code.rstrip("\n") for code in shown]
    script = recipe.script(config, framework)
    blocks = [block.split("\n", 1)[1] for block in script.split("# %% ")[1:]]
    uncommented = ["\n".join(line for line in block.splitlines() if not line.startswith("# ")) for block in blocks]
    assert [u.strip() for u in uncommented] == [
        "\n".join(line for line in code.splitlines() if not line.startswith("# ")).strip() for code in shown]
    # and the page shows exactly these steps, for the same widget values
    values = {"framework": "both", "dataset": "server/avp", "unfreeze": 1, "augment.enabled": True}
    rendered = code_tab.render(**values)
    start = 1 + len(code_tab.DOWNLOADS) + code_tab.STEPS + (0 if framework == "keras" else code_tab.STEPS)
    assert code_tab.config_of(values) == TrainConfig(data_dir="data", unfreeze=1)
    assert rendered[start:start + code_tab.STEPS] == shown


def test_the_notebook_has_a_markdown_note_and_a_code_cell_per_step():
    import nbformat
    book = recipe.notebook(DEFAULT, "pytorch")
    nbformat.validate(book)
    kinds = [cell.cell_type for cell in book.cells]
    assert kinds == ["markdown"] + ["markdown", "code"] * 7
    assert recipe.steps(DEFAULT)[4].note in book.cells[9].source


def test_settings_change_both_sides():
    base = {fw: recipe.source(DEFAULT, fw) for fw in FRAMEWORKS}
    for changed in (DEFAULT.with_changes(epochs=7), DEFAULT.with_changes(unfreeze=2),
                    DEFAULT.with_changes(augment=AugmentConfig(enabled=False)),
                    DEFAULT.with_changes(lr=0.01), DEFAULT.with_changes(image_size=96)):
        for framework in FRAMEWORKS:
            assert recipe.source(changed, framework) != base[framework], (changed, framework)
    off = DEFAULT.with_changes(augment=AugmentConfig(enabled=False))
    assert "RandomAffine" not in recipe.source(off, "keras") and "RandomAffine" not in recipe.source(off, "pytorch")
    unfrozen = DEFAULT.with_changes(unfreeze=2)
    assert "model.layer3" in recipe.source(unfrozen, "pytorch") and '"conv4", "conv5"' in recipe.source(
        unfrozen, "keras")


def test_the_keras_side_embeds_the_trainers_augmentation_layer():
    from trainer import codegen
    keras = recipe.source(DEFAULT, "keras")
    assert recipe._keras_layer_class() in keras
    assert codegen.keras_layer_call(DEFAULT.augment, "SEED") in keras
    for transform in codegen.torch_augment_steps(DEFAULT.augment):
        assert transform in recipe.source(DEFAULT, "pytorch")


def test_code_size_counts_code_not_comments_docstrings_or_blank_lines():
    code = ('"""Module docstring."""\n\n# a comment\nx = 1  # trailing\n\n\ndef f(a):\n    """Doc."""\n'
            '    return (a +\n            1)\n\n\nif x:\n    y = [f(i)\n         for i in range(3)]\n')
    assert recipe.code_size(code) == (7, 5)  # lines: x, def, return (2), if, y (2); statements: =, def, return, if, =


def test_sizes_are_counted_from_the_code_shown():
    sizes = recipe.sizes(DEFAULT)
    for framework in FRAMEWORKS:
        assert (sizes[framework]["lines"], sizes[framework]["statements"]) == recipe.code_size(
            recipe.source(DEFAULT, framework))
    assert 0 < sizes["keras"]["layer_lines"] < sizes["keras"]["lines"]


def test_recipe_and_differences_import_no_framework():
    code = ("import sys, trainer.recipe, trainer.differences, ui.code_tab; "
            "print(json.dumps([m for m in ('torch', 'tensorflow', 'keras') if m in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", "import json; " + code], capture_output=True, text=True, timeout=120)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [], out.stderr


def test_downloads_are_made_once_per_settings(tmp_path, monkeypatch):
    import gradio as gr

    from ui import code_tab
    monkeypatch.setattr(gr.utils, "get_upload_folder", lambda: str(tmp_path))
    monkeypatch.setattr(code_tab, "MAX_SETS", 2)
    first = code_tab.downloads(DEFAULT)
    assert [p.rsplit("/", 1)[1] for p in first] == ["avp_keras.ipynb", "avp_keras.py", "avp_pytorch.ipynb",
                                                    "avp_pytorch.py"]
    assert code_tab.downloads(DEFAULT) == first
    assert open(first[1]).read() == recipe.script(DEFAULT, "keras")
    for epochs in (2, 3, 4):
        code_tab.downloads(DEFAULT.with_changes(epochs=epochs))
    assert len([p for p in (tmp_path / "recipes").iterdir() if not p.name.startswith(".")]) == 2


def test_invalid_settings_are_said_not_raised():
    from ui import code_tab
    shown = code_tab.render(framework="both", dataset="x", epochs=None)
    assert "cannot be trained on" in shown[0]


# ---------------------------------------------------------------- the differences table is read

def test_adam_epsilon_row_is_read(monkeypatch):
    import torch

    from trainer import differences
    keras_text, torch_text = differences.adam_epsilon()
    assert "1e-08" in torch_text and "1e-07" in keras_text
    monkeypatch.setattr(torch.optim, "Adam", functools.partial(torch.optim.Adam, eps=0.125))
    assert "0.125" in differences.adam_epsilon()[1]


def test_softmax_row_is_read(monkeypatch):
    import keras

    from trainer import differences
    assert "from_logits=False" in differences.softmax_or_logits()[0]
    monkeypatch.setattr(keras.losses, "SparseCategoricalCrossentropy",
                        functools.partial(keras.losses.SparseCategoricalCrossentropy, from_logits=True))
    assert "from_logits=True" in differences.softmax_or_logits()[0]


def test_preprocessing_row_is_read(monkeypatch):
    import keras

    from trainer import differences
    assert "BGR" in differences.preprocessing()[0] and "103.9" in differences.preprocessing()[0]
    monkeypatch.setattr(keras.applications.resnet50, "preprocess_input", lambda x: x / 127.5 - 1)
    patched = differences.preprocessing()[0]
    assert "RGB" in patched and "103.9" not in patched


def test_head_init_row_is_read(monkeypatch):
    import keras

    from trainer import differences
    assert differences.head_init()[0].startswith("GlorotUniform")
    monkeypatch.setattr(keras.layers, "Dense", functools.partial(keras.layers.Dense, kernel_initializer="he_normal"))
    assert differences.head_init()[0].startswith("HeNormal")
