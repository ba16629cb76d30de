"""The Keras and the PyTorch code that build exactly the current augmentation pipeline.

Shown in the app's Augment tab, updating with its controls; runnable as shown (given an
`image.jpg`). Built from the same AugmentConfig as the backends' own pipelines; the Keras one
includes the source of trainer/keras_affine.py, read as text. A test runs both snippets. No
framework import.
"""

from __future__ import annotations

import functools
from pathlib import Path

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


def keras_code(aug: AugmentConfig, size: int = 224, count: int = 8) -> str:
    if aug.enabled:
        shift = f"translate={_number(aug.shift)}, " if aug.shift else ""
        layer = (f"RandomAffine(degrees={_number(aug.rotation_deg)}, {shift}"
                 f"scale=({_number(aug.zoom_min)}, {_number(aug.zoom_max)}), shear={_number(aug.shear_deg)}, "
                 f"hflip={aug.hflip}, vflip={aug.vflip})")
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
    body = _body(steps if aug.enabled else ["v2.Identity()"])
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
