"""The Keras and the PyTorch code that build exactly the current augmentation pipeline.

Shown in the app's Augment tab, updating with its controls; runnable as shown (given an
`image.jpg`). Built from the same AugmentConfig and the same unit conversions (trainer/augment.py)
as the backends' own pipelines, and a test runs both snippets. No framework import.
"""

from __future__ import annotations

from trainer.augment import AugmentConfig, keras_rotation_factor, keras_shear_factor, keras_zoom_factor
from trainer.constants import IMAGENET_MEAN, IMAGENET_STD


def _number(value: float) -> str:
    return f"{value:.4g}"


def _body(steps: list[str]) -> str:
    """One step per line, the comma before any trailing comment."""
    return "".join(f"    {step}\n" if "#" in step else f"    {step},\n" for step in steps)


def keras_code(aug: AugmentConfig, size: int = 224, count: int = 8) -> str:
    fill = 'fill_mode="constant"'
    steps = []
    if aug.hflip:
        steps.append('layers.RandomFlip("horizontal")')
    if aug.vflip:
        steps.append('layers.RandomFlip("vertical")')
    if aug.rotation_deg:
        steps.append(f"layers.RandomRotation({_number(keras_rotation_factor(aug))}, {fill})"
                     f",  # fraction of a turn: {_number(aug.rotation_deg)} degrees")
    if aug.shift:
        steps.append(f"layers.RandomTranslation({_number(aug.shift)}, {_number(aug.shift)}, {fill})")
    if aug.zoom_min != 1 or aug.zoom_max != 1:
        low, high = keras_zoom_factor(aug)
        steps.append(f"layers.RandomZoom(({_number(low)}, {_number(high)}), {fill})"
                     f",  # magnification {_number(aug.zoom_min)}-{_number(aug.zoom_max)}")
    if aug.shear_deg:
        steps.append(f"layers.RandomShear(x_factor={_number(keras_shear_factor(aug))}, {fill})"
                     f",  # tan({_number(aug.shear_deg)} degrees)")
    body = _body(steps if aug.enabled else ["layers.Identity()"])
    return f'''import keras
import numpy as np
from keras import layers
from PIL import Image

augment = keras.Sequential([
{body}])
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
