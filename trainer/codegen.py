"""The code the app shows and hands out: the Keras and the PyTorch augmentation pipelines, both
Grad-CAM implementations, and a "load it and predict" script per downloaded model.

The augmentation code builds exactly the current augmentation pipeline.

Shown in the app's Augment tab, updating with its controls; runnable as shown (given an
`image.jpg`). Built from the same AugmentConfig as the backends' own pipelines; the Keras one
includes the source of trainer/keras_affine.py, read as text. A test runs both snippets. No
framework import.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

from trainer import frameworks
from trainer.augment import AugmentConfig
from trainer.constants import IMAGENET_MEAN, IMAGENET_STD

AFFINE_SOURCE = Path(__file__).with_name("keras_affine.py")


def _number(value: float) -> str:
    return f"{value:.4g}"


def _body(steps: list[str]) -> str:
    """One step per line, the comma before any trailing comment."""
    return "".join(f"    {step}\n" if "#" in step else f"    {step},\n" for step in steps)


@functools.cache
def keras_layer_source() -> str:
    """trainer/keras_affine.py without its module docstring: the class the Keras snippet defines."""
    source = AFFINE_SOURCE.read_text()
    return source[source.index('"""', 3) + 3:].strip() + "\n"


def keras_layer_call(aug: AugmentConfig, seed: str = "") -> str:
    """The RandomAffine(...) call that builds the trainer's Keras augmentation layer for `aug`."""
    shift = f"translate={_number(aug.shift)}, " if aug.shift else ""
    return (f"RandomAffine(degrees={_number(aug.rotation_deg)}, {shift}"
            f"scale=({_number(aug.zoom_min)}, {_number(aug.zoom_max)}), shear={_number(aug.shear_deg)}, "
            f"hflip={aug.hflip}, vflip={aug.vflip}{f', seed={seed}' if seed else ''})")


def torch_augment_steps(aug: AugmentConfig) -> list[str]:
    """The torchvision v2 transforms of the trainer's PyTorch augmentation for `aug`, one per item."""
    steps = []
    if aug.hflip:
        steps.append("v2.RandomHorizontalFlip()")
    if aug.vflip:
        steps.append("v2.RandomVerticalFlip()")
    shift = f"translate=({_number(aug.shift)}, {_number(aug.shift)}), " if aug.shift else ""
    steps.append(f"v2.RandomAffine(degrees={_number(aug.rotation_deg)}, {shift}"
                 f"scale=({_number(aug.zoom_min)}, {_number(aug.zoom_max)}), "
                 f"shear=({_number(-aug.shear_deg)}, {_number(aug.shear_deg)}), "
                 "interpolation=v2.InterpolationMode.BILINEAR)")
    return steps


def keras_code(aug: AugmentConfig, size: int = 224, count: int = 8) -> str:
    if aug.enabled:
        layer = keras_layer_call(aug)
        header = f"""# One resampling per image: flips, rotation, shift, zoom and shear composed into one matrix,
# drawn as torchvision's RandomAffine draws them (this project's trainer/keras_affine.py).
# Keras 3's stock RandomFlip / RandomZoom / RandomShear layers would resample once each.
import numpy as np
from PIL import Image

{keras_layer_source()}
"""
    else:
        layer, header = "keras.layers.Identity()", "import keras\nimport numpy as np\nfrom PIL import Image\n"
    return f'''{header}
augment = {layer}
image = Image.open("image.jpg").convert("RGB").resize(({size}, {size}), Image.BILINEAR)
batch = np.stack([np.asarray(image, dtype="float32")] * {count})
augmented = augment(batch, training=True)  # each copy gets its own random values
inputs = keras.applications.resnet50.preprocess_input(augmented)  # caffe: BGR, mean subtracted
print(inputs.shape)
'''


def torch_code(aug: AugmentConfig, size: int = 224, count: int = 8) -> str:
    body = _body(torch_augment_steps(aug) if aug.enabled else ["v2.Identity()"])
    mean = ", ".join(map(str, IMAGENET_MEAN))
    std = ", ".join(map(str, IMAGENET_STD))
    return f'''import torch
from PIL import Image
from torchvision.transforms import v2

augment = v2.Compose([
{body}])
normalize = v2.Compose([
    v2.ToDtype(torch.float32, scale=True),  # 0-255 -> 0-1
    v2.Normalize(mean=[{mean}], std=[{std}]),
])
image = Image.open("image.jpg").convert("RGB").resize(({size}, {size}), Image.BILINEAR)
image = v2.functional.pil_to_tensor(image)
batch = torch.stack([augment(image) for _ in range({count})])  # each copy gets its own random values
inputs = normalize(batch)
print(inputs.shape)
'''


# ---------------------------------------------------------------- Grad-CAM and take-home scripts

GRADCAM_FUNCTIONS = ("gradcam", "_cam_stage", "_logits", "_scaled")  # those a backend defines


def backend_file(framework: str) -> str:
    return f"{frameworks.get(framework).backend_module}.py"


@functools.cache
def gradcam_source(framework: str) -> str:
    """The backend's own `gradcam` and its helpers, read as text (no framework import): what the
    Predict tab's code panel shows, so the page shows the code that made the heatmaps."""
    source = (Path(__file__).parent / backend_file(framework)).read_text()
    tree = ast.parse(source)
    parts = [ast.get_source_segment(source, node) for node in tree.body
             if isinstance(node, ast.FunctionDef) and node.name in GRADCAM_FUNCTIONS]
    return "\n\n\n".join(parts) + "\n"


_LOAD_IMAGE = '''
def load_image(path):
    """As the app decodes: EXIF orientation applied, transparency on white, RGB, squashed to
    SIZE x SIZE (bilinear): uint8 HWC."""
    image = ImageOps.exif_transpose(Image.open(path))
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    image = image.convert("RGB").resize((SIZE, SIZE), Image.Resampling.BILINEAR)
    return np.asarray(image, dtype=np.uint8)


def report(paths, probabilities):
    for path, row in zip(paths, probabilities):
        print(json.dumps({"image": path, "probabilities": dict(zip(CLASSES, map(float, row)))}))
'''


def predict_script(framework: str, metadata: dict) -> str:
    """A standalone script that loads the downloaded model beside it and prints, per image given on
    the command line, one JSON line of class probabilities, preprocessed exactly as the app does."""
    config = metadata["config"]
    header = (f'CLASSES = {list(map(str, metadata["classes"]))!r}\n'
              f'SIZE = {int(config["image_size"])}  # pixels a side, as the model was trained\n')
    body = _keras_predict() if framework == "keras" else _torch_predict(
        int(config["head_units"]), metadata.get("precision") == "bfloat16")
    return (f'"""Load the {framework} model in this folder and predict: python predict_{framework}.py IMAGE...'
            f'\n\nPrints one JSON line per image with its class probabilities."""\n\n'
            f'import json\nimport sys\n\nimport numpy as np\nfrom PIL import Image, ImageOps\n\n'
            f'{header}{_LOAD_IMAGE}\n{body}')


def _keras_predict() -> str:
    return '''
if __name__ == "__main__":
    import keras

    model = keras.saving.load_model("model.keras", safe_mode=True, compile=False)  # ends in a softmax
    images = np.stack([load_image(path) for path in sys.argv[1:]]).astype("float32")
    inputs = keras.applications.resnet50.preprocess_input(images)  # caffe: BGR, ImageNet mean subtracted
    report(sys.argv[1:], np.asarray(model(inputs, training=False)))
'''


def _torch_predict(head_units: int, bfloat16: bool) -> str:
    """The app's way: channels-last, the backbone in bfloat16 where the model was trained so (CPU
    autocast here), the head in float32."""
    mean, std = list(IMAGENET_MEAN), list(IMAGENET_STD)
    return f'''
if __name__ == "__main__":
    import torch
    import torchvision
    from safetensors.torch import load_file
    from torch import nn

    model = torchvision.models.resnet50(weights=None)
    model.fc = nn.Sequential(nn.Linear(2048, {head_units}), nn.ReLU(), nn.Linear({head_units}, len(CLASSES)))
    model.load_state_dict(load_file("model.safetensors"))  # tensors only: loading runs no code
    model = model.eval().to(memory_format=torch.channels_last)
    head, model.fc = model.fc, nn.Identity()
    images = torch.from_numpy(np.stack([load_image(path) for path in sys.argv[1:]])).permute(0, 3, 1, 2)
    mean = torch.tensor({mean}).view(1, 3, 1, 1)
    std = torch.tensor({std}).view(1, 3, 1, 1)
    inputs = ((images.float() / 255 - mean) / std)  # 0-1, then the ImageNet mean and std
    inputs = inputs.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled={bfloat16}):  # as the model was trained
            features = model(inputs)
        logits = head(features.float())
    report(sys.argv[1:], logits.softmax(1).numpy())
'''
