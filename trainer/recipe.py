"""The article's seven steps for one run's settings, written in Keras and in PyTorch side by side.

    for step in recipe.steps(config): print(step.title, step.note, step.keras, step.pytorch)
    recipe.script(config, "pytorch")     # the PyTorch side as one standalone .py file
    recipe.notebook(config, "keras")     # the Keras side as an nbformat notebook (Markdown + code per step)
    recipe.code_size(source)             # (lines, statements): comments, docstrings and blank lines not counted

Concatenated, each side is a standalone script (its framework, numpy and Pillow; PyTorch also
safetensors, to save without pickle) that trains the app's network with the same settings: the
same head, Adam and learning rate, loss, preprocessing, augmentation (the Augment tab's: the Keras
side embeds trainer/keras_affine.py, since Keras 3 has no stock layer that resamples once), epochs,
batch size, image size and seed, and that saves in the app's layout (`models/<framework>/` with a
metadata.json), so the Predict tab, `python -m trainer predict` and the take-home predict script
load the result. Where the two cannot be the same, the step's note says so: Keras' `fit` takes one
learning rate, so unfrozen stages are fine-tuned in a second `fit` (keras-io's recipe), while
PyTorch trains them at once in a second parameter group, as the app does in both. The page, the
notebook and the script are made from the same `steps` (tested). No framework import.
"""

from __future__ import annotations

import ast
import io
import tokenize
from dataclasses import dataclass

from trainer import codegen
from trainer.config import TrainConfig
from trainer.constants import FEATURE_DIM, IMAGENET_MEAN, IMAGENET_STD

FRAMEWORK_NAMES = {"keras": "Keras", "pytorch": "PyTorch"}
KERAS_STAGES = ("conv2", "conv3", "conv4", "conv5")  # keras.applications ResNet50 layer-name prefixes
TORCH_STAGES = ("layer1", "layer2", "layer3", "layer4")  # torchvision resnet50 attributes
PREVIEW_IMAGES = 4  # validation images the last step predicts


@dataclass(frozen=True)
class Step:
    title: str
    note: str  # one or two sentences: what differs between the two sides, and why
    keras: str
    pytorch: str

    def code(self, framework: str) -> str:
        return self.keras if framework == "keras" else self.pytorch


def steps(config: TrainConfig) -> list[Step]:
    """The seven steps of the article for `config`."""
    return [_dataset(config), _imports(config), _pipeline(config), _network(config), _training(config),
            _saving(config), _predicting()]


def source(config: TrainConfig, framework: str) -> str:
    """One side's code, the steps one after the other: what the page shows, concatenated."""
    return "\n\n".join(step.code(framework).rstrip("\n") for step in steps(config)) + "\n"


def script(config: TrainConfig, framework: str) -> str:
    """One side as a .py file: a header, then each step's title and note as comments above its code."""
    name = FRAMEWORK_NAMES[framework]
    parts = [f'"""Transfer learning with {name}: an ImageNet ResNet-50, frozen, with a new dense head.\n\n'
             f"Made by the app's Code tab for its Train tab's settings. Set DATA_DIR below, then run\n"
             f'`python {file_name(framework, "py")}`."""\n']
    for number, step in enumerate(steps(config), 1):
        note = "\n".join(f"# {line}" for line in _wrap(step.note))
        parts.append(f"# %% {number}. {step.title}\n{note}\n{step.code(framework).rstrip()}\n")
    return "\n\n".join(parts)


def notebook(config: TrainConfig, framework: str):
    """One side as a Jupyter notebook (nbformat 4): per step a Markdown cell (title, note) and a code cell."""
    import nbformat  # only when a notebook is asked for
    cells = [nbformat.v4.new_markdown_cell(
        f"# Transfer learning with {FRAMEWORK_NAMES[framework]}\nAn ImageNet ResNet-50, frozen, with a new "
        "dense head, in the article's seven steps, for the app's Train tab settings. Set `DATA_DIR` in "
        "step 1, then run all cells.")]
    for number, step in enumerate(steps(config), 1):
        cells.append(nbformat.v4.new_markdown_cell(f"## {number}. {step.title}\n{step.note}"))
        cells.append(nbformat.v4.new_code_cell(step.code(framework).rstrip("\n")))
    book = nbformat.v4.new_notebook(cells=cells)
    book.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    book.metadata["language_info"] = {"name": "python"}
    return book


def file_name(framework: str, extension: str) -> str:
    return f"avp_{framework}.{extension}"


def code_size(code: str) -> tuple[int, int]:
    """(lines, statements) of Python code: lines holding code, and statements (simple and compound,
    nested ones included); comments, docstrings and blank lines are not counted."""
    tree = ast.parse(code)
    docstrings = _docstrings(tree)
    skipped = {line for node in docstrings for line in range(node.lineno, node.end_lineno + 1)}
    lines = set()
    for token in tokenize.generate_tokens(io.StringIO(code).readline):
        if token.type not in (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT,
                              tokenize.DEDENT, tokenize.ENDMARKER):
            lines.update(range(token.start[0], token.end[0] + 1))
    statements = [node for node in ast.walk(tree) if isinstance(node, ast.stmt) and node not in docstrings]
    return len(lines - skipped), len(statements)


def _docstrings(tree: ast.AST) -> list[ast.stmt]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(
                    first.value.value, str):
                found.append(first)
    return found


def sizes(config: TrainConfig) -> dict[str, dict]:
    """Framework -> {"lines", "statements"} of its code, and of the embedded RandomAffine layer."""
    result = {fw: dict(zip(("lines", "statements"), code_size(source(config, fw)))) for fw in FRAMEWORK_NAMES}
    if config.augment_active:
        layer = code_size(_keras_layer_class())
        result["keras"].update(layer_lines=layer[0], layer_statements=layer[1])
    return result


def _wrap(text: str, width: int = 98) -> list[str]:
    import textwrap
    return textwrap.wrap(text, width) or [""]


def _float(value: float) -> str:
    return repr(float(value))


# ---------------------------------------------------------------- 1. the data set

def _dataset(config: TrainConfig) -> Step:
    common = f'''DATA_DIR = "data"  # your data: DATA_DIR/train/<class>/* and DATA_DIR/validation/<class>/*
MODELS_DIR = "models"  # the model is saved in MODELS_DIR/{{framework}}/, as the app saves its models
IMAGE_SIZE = {config.image_size}  # pixels a side: images are squashed to a square
BATCH_SIZE = {config.batch_size}
EPOCHS = {config.epochs}
LR = {_float(config.lr)}  # Adam's learning rate for the new head
HEAD_UNITS = {config.head_units}  # units of the new head's hidden layer
SEED = {config.seed}
'''
    if config.unfreeze:
        common += (f"UNFREEZE = {config.unfreeze}  # the last ResNet stages that learn too\n"
                   f"FINE_TUNE_LR = {_float(config.fine_tune_lr)}  # their learning rate\n")
    note = ("Both sides read the same folders, one per class under train/ and validation/; set DATA_DIR to "
            "your copy of the images. The numbers are this run's settings from the Train tab.")
    return Step("The data set and the settings", note, common.format(framework="keras"),
                common.format(framework="pytorch"))


# ---------------------------------------------------------------- 2. imports

def _imports(config: TrainConfig) -> Step:
    affine = config.augment_active
    keras = ("import json\n" + ("import math\n" if affine else "") + "from pathlib import Path\n\n"
             "import keras\nimport numpy as np\nimport tensorflow as tf\nfrom keras import layers"
             + (", ops" if affine else "") + "\nfrom PIL import Image, ImageOps\n")
    pytorch = ("import json\nfrom pathlib import Path\n\nimport numpy as np\nimport torch\nimport torchvision\n"
               "from PIL import Image, ImageOps\nfrom safetensors.torch import load_file, save_file\n"
               "from torch import nn\nfrom torch.utils.data import DataLoader, Dataset\n"
               "from torchvision.transforms import v2\n")
    note = ("Keras runs on TensorFlow here (tf.data feeds it); PyTorch needs torchvision for the ResNet-50 "
            "and its transforms, and safetensors to save weights without pickle. Both decode images with Pillow.")
    return Step("Imports", note, keras, pytorch)


# ---------------------------------------------------------------- 3. the data pipeline

_LOAD = codegen.load_image_source("IMAGE_SIZE") + '''

def load_split(split):
    # Every image of DATA_DIR/<split>/<class>/: uint8 (N, H, W, 3), labels, class names, file names.
    folder = Path(DATA_DIR) / split
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    files = [(path, label) for label, name in enumerate(classes)
             for path in sorted((folder / name).iterdir()) if path.is_file() and not path.name.startswith(".")]
    images = np.stack([load_image(path) for path, _ in files])
    return images, np.array([label for _, label in files]), classes, [str(path) for path, _ in files]


x_train, y_train, classes, _ = load_split("train")
x_val, y_val, _, val_files = load_split("validation")
'''


def _keras_layer_class() -> str:
    """trainer/keras_affine.py's class, without the module's imports (step 2 has them)."""
    lines = codegen.keras_layer_source().splitlines(keepends=True)
    start = next(i for i, line in enumerate(lines) if line.startswith("class "))
    return "".join(lines[start:])


def _pipeline(config: TrainConfig) -> Step:
    aug = config.augment
    if config.augment_active:
        keras_aug = (f"# Keras 3 has no stock layer that flips, rotates, shifts, zooms and shears in one resampling:\n"
                     f"# this is the app's own (trainer/keras_affine.py), drawing values as torchvision does.\n"
                     f"{_keras_layer_class()}\n\naugment = {codegen.keras_layer_call(aug, 'SEED')}\n\n\n"
                     "def augmented(images, labels):\n"
                     "    images = augment(images, training=True)  # each image its own random values\n"
                     "    return keras.applications.resnet50.preprocess_input(images), labels\n")
        train_map = "augmented"
    else:
        keras_aug, train_map = "", "preprocessed"
    keras = f'''{_LOAD}
{keras_aug}

def preprocessed(images, labels):
    # "caffe" mode, what Keras' ImageNet weights expect: RGB -> BGR, ImageNet mean subtracted, no scaling.
    return keras.applications.resnet50.preprocess_input(tf.cast(images, "float32")), labels


train_data = (tf.data.Dataset.from_tensor_slices((x_train, y_train)).shuffle(len(x_train), seed=SEED)
              .batch(BATCH_SIZE).map({train_map}))
val_data = tf.data.Dataset.from_tensor_slices((x_val, y_val)).batch(BATCH_SIZE).map(preprocessed)
'''
    keras = keras.replace("\n\n\n\n\ndef preprocessed", "\n\n\ndef preprocessed")
    transforms = codegen.torch_augment_steps(aug) if config.augment_active else []
    torch_aug = ("augment = v2.Compose([\n" + "".join(f"    {t},\n" for t in transforms) + "])\n"
                 if transforms else "")
    mean, std = ", ".join(map(str, IMAGENET_MEAN)), ", ".join(map(str, IMAGENET_STD))
    train_transform = "v2.Compose([augment, normalize])" if transforms else "normalize"
    pytorch = f'''{_LOAD}
{torch_aug}normalize = v2.Compose([
    v2.ToDtype(torch.float32, scale=True),  # 0-255 -> 0-1
    v2.Normalize(mean=[{mean}], std=[{std}]),  # what torchvision's ImageNet weights expect
])


class Images(Dataset):
    def __init__(self, images, labels, transform):
        self.images = torch.from_numpy(images).permute(0, 3, 1, 2)  # NHWC -> NCHW, uint8
        self.labels = torch.from_numpy(labels)
        self.transform = transform

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return self.transform(self.images[i]), self.labels[i]


train_data = Images(x_train, y_train, {train_transform})
val_data = Images(x_val, y_val, normalize)
train_loader = DataLoader(train_data, batch_size=BATCH_SIZE, shuffle=True,
                          generator=torch.Generator().manual_seed(SEED))
val_loader = DataLoader(val_data, batch_size=BATCH_SIZE)
'''
    if config.augment_active:
        note = ("Keras augments whole batches with one layer and preprocesses with preprocess_input (caffe: "
                "BGR, mean subtracted) inside a tf.data pipeline; PyTorch composes torchvision transforms per "
                "image, normalises by hand (0-1, then ImageNet mean and std) and batches with a DataLoader. "
                "The random values are drawn the same way, as the Augment tab shows.")
    else:
        note = ("Augmentation is off for this run, so both only preprocess: Keras with preprocess_input (caffe: "
                "BGR, mean subtracted) in a tf.data pipeline, PyTorch by hand (0-1, then ImageNet mean and std) "
                "in a Dataset that a DataLoader batches and shuffles.")
    return Step("The data pipeline: augmentation and preprocessing", note, keras, pytorch)


# ---------------------------------------------------------------- 4. the network

def _network(config: TrainConfig) -> Step:
    pretrained = config.weights != "none"
    keras_weights = '"imagenet"' if pretrained else "None"
    torch_weights = "torchvision.models.ResNet50_Weights.IMAGENET1K_V1" if pretrained else "None"
    random = "" if pretrained else "  # random initialisation: expect far lower accuracy"
    keras = f'''keras.utils.set_random_seed(SEED)
base = keras.applications.ResNet50(include_top=False, weights={keras_weights},
                                   input_shape=(IMAGE_SIZE, IMAGE_SIZE, 3)){random}
base.trainable = False  # frozen: only the new head learns
inputs = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 3), name="image")
x = base(inputs, training=False)  # batch norm in inference mode, also when stages are unfrozen
x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
x = layers.Dense(HEAD_UNITS, activation="relu", name="head_hidden")(x)
outputs = layers.Dense(len(classes), activation="softmax", name="head_output")(x)  # probabilities
model = keras.Model(inputs, outputs, name="resnet50_transfer")
model.compile(optimizer=keras.optimizers.Adam(LR), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
'''
    stages = TORCH_STAGES[len(TORCH_STAGES) - config.unfreeze:] if config.unfreeze else ()
    unfrozen = "".join(f"model.{stage}.requires_grad_(True)  # unfrozen: learns at FINE_TUNE_LR\n"
                       for stage in stages)
    if stages:
        listed = ", ".join(f"model.{stage}" for stage in stages) + ("," if len(stages) == 1 else "")
        optimizer = (f"fine_tuned = [p for stage in ({listed}) for p in stage.parameters()]\n"
                     'optimizer = torch.optim.Adam([{"params": model.fc.parameters(), "lr": LR},\n'
                     '                              {"params": fine_tuned, "lr": FINE_TUNE_LR}])\n')
    else:
        optimizer = "optimizer = torch.optim.Adam(model.fc.parameters(), lr=LR)  # only the head's parameters\n"
    pytorch = f'''device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
torch.manual_seed(SEED)
model = torchvision.models.resnet50(weights={torch_weights}){random}
model.requires_grad_(False)  # frozen: only the new head learns
{unfrozen}model.fc = nn.Sequential(nn.Linear({FEATURE_DIM}, HEAD_UNITS), nn.ReLU(),
                         nn.Linear(HEAD_UNITS, len(classes)))  # logits: no softmax
model = model.to(device)
model.eval()  # batch norm in inference mode, also while training: it keeps its ImageNet statistics
loss_fn = nn.CrossEntropyLoss()  # takes logits: applies log-softmax itself
{optimizer}'''
    note = ("Keras builds the model functionally from the base model's output and bakes the loss, optimizer "
            "and metric into it with compile; its network ends in a softmax and its loss takes probabilities. "
            "In PyTorch the model is a Python object whose new head returns logits, the loss and the "
            "optimizer are separate objects given an explicit list of parameters, and .to(device) puts the "
            "model on the GPU when there is one.")
    return Step("The network: frozen ResNet-50, new head", note, keras, pytorch)


# ---------------------------------------------------------------- 5. training

def _training(config: TrainConfig) -> Step:
    keras = '''history = model.fit(train_data, validation_data=val_data, epochs=EPOCHS, verbose=2)
'''
    if config.unfreeze:
        stages = ", ".join(f'"{s}"' for s in KERAS_STAGES[len(KERAS_STAGES) - config.unfreeze:])
        keras += f'''
# Fine-tuning: fit takes one learning rate, so the last stages learn in a second fit at FINE_TUNE_LR.
base.trainable = True
for layer in base.layers:  # batch norm stays frozen: its ImageNet statistics must not drift
    layer.trainable = layer.name.startswith(({stages},)) and not isinstance(layer, layers.BatchNormalization)
model.compile(optimizer=keras.optimizers.Adam(FINE_TUNE_LR), loss="sparse_categorical_crossentropy",
              metrics=["accuracy"])
history = model.fit(train_data, validation_data=val_data, epochs=EPOCHS, verbose=2)
'''
    keras += 'val_accuracy = history.history["val_accuracy"][-1]\n'
    pytorch = '''for epoch in range(EPOCHS):
    for images, labels in train_loader:
        images, labels = images.to(device), labels.to(device)
        loss = loss_fn(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    correct = 0
    with torch.no_grad():
        for images, labels in val_loader:
            correct += (model(images.to(device)).argmax(1).cpu() == labels).sum().item()
    val_accuracy = correct / len(val_data)
    print(f"epoch {epoch + 1}/{EPOCHS}: loss {loss.item():.4f}, val_accuracy {val_accuracy:.4f}")
'''
    note = ("Keras trains with one fit call, which also validates and reports each epoch. PyTorch spells the "
            "loop out: per batch zero_grad(), backward(), step(), then a validation pass by hand.")
    if not config.unfreeze:
        note += (" The app trains the same way, but computes the frozen backbone's features in the fastest "
                 "engine it has on a CPU: PyTorch's backbone exported to ONNX Runtime from these same weights "
                 "in float32 (torch.compile where ONNX Runtime is not installed), and in bfloat16 torch.compile "
                 "where the server timed it faster than eager for these settings; Keras' in TensorFlow's "
                 "tf.function, or in XLA where the server timed XLA faster. On a GPU each framework runs its "
                 "own pass, as here. The features agree to the precision's rounding; each run's log and "
                 "results table name the engine that computed them.")
    if config.unfreeze:
        note += (" Fine-tuning differs too: Keras' fit takes one learning rate, so the unfrozen stages learn in "
                 "a second fit after compiling again (keras-io's recipe); PyTorch gives the optimizer two "
                 "parameter groups with their own rates and trains them at once, as the app does.")
    return Step("Training", note, keras, pytorch)


# ---------------------------------------------------------------- 6. saving and loading

_METADATA = '''settings = {{"framework": "{framework}", "image_size": IMAGE_SIZE, "head_units": HEAD_UNITS,
            "epochs": EPOCHS, "batch_size": BATCH_SIZE, "lr": LR, "unfreeze": {unfreeze}, "seed": SEED,
            "weights": "{weights}", "precision": "float32"}}
metadata = {{"framework": "{framework}", "classes": classes, "config": settings, "val_accuracy": val_accuracy,
            "val_images": len(y_val), "pretrained": {pretrained}, "precision": "float32"}}
folder = Path(MODELS_DIR) / "{framework}"
folder.mkdir(parents=True, exist_ok=True)
(folder / "metadata.json").write_text(json.dumps(metadata, indent=2))  # what the app reads beside the model
'''


def _saving(config: TrainConfig) -> Step:
    values = {"unfreeze": "UNFREEZE" if config.unfreeze else "0",
              "weights": "none" if config.weights == "none" else "imagenet",
              "pretrained": config.weights != "none"}
    keras = _METADATA.format(framework="keras", **values) + '''\
model.save(folder / "model.keras")  # the architecture and the weights, in one file

model = keras.saving.load_model(folder / "model.keras")  # needs no code of ours
'''
    pytorch = _METADATA.format(framework="pytorch", **values) + f'''\
save_file({{name: t.cpu() for name, t in model.state_dict().items()}},
          folder / "model.safetensors")  # only the tensors: no pickle, no code runs when loading

model = torchvision.models.resnet50(weights=None)  # the architecture comes from code, then the weights
model.fc = nn.Sequential(nn.Linear({FEATURE_DIM}, HEAD_UNITS), nn.ReLU(), nn.Linear(HEAD_UNITS, len(classes)))
model.load_state_dict(load_file(folder / "model.safetensors"))
model = model.to(device).eval()
'''
    note = ("Keras saves the architecture and the weights in one .keras file and loads it back without our "
            "code; PyTorch saves only tensors (safetensors: nothing runs when loading), so loading rebuilds "
            "the network in code first. Both write metadata.json beside the model, in the app's layout, so "
            "the app's Predict tab loads either.")
    return Step("Saving and loading", note, keras, pytorch)


# ---------------------------------------------------------------- 7. predicting

def _predicting() -> Step:
    keras = f'''files = val_files[:{PREVIEW_IMAGES}]  # any image files will do
images = np.stack([load_image(path) for path in files]).astype("float32")
probabilities = model.predict(keras.applications.resnet50.preprocess_input(images), verbose=0)
for path, row in zip(files, probabilities):
    print(json.dumps({{"image": path, "probabilities": dict(zip(classes, map(float, row)))}}))
'''
    pytorch = f'''files = val_files[:{PREVIEW_IMAGES}]  # any image files will do
images = torch.from_numpy(np.stack([load_image(path) for path in files])).permute(0, 3, 1, 2)
with torch.no_grad():
    probabilities = model(normalize(images).to(device)).softmax(1).cpu().numpy()  # logits -> probabilities
for path, row in zip(files, probabilities):
    print(json.dumps({{"image": path, "probabilities": dict(zip(classes, map(float, row)))}}))
'''
    note = ("Keras' model ends in a softmax, so predict returns probabilities; PyTorch's returns logits, and "
            "the softmax is applied here. Each preprocesses the images exactly as in training, without "
            "augmentation.")
    return Step("Predicting", note, keras, pytorch)
