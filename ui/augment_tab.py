"""Augment tab: the same augmentation settings as Keras 3 layers and as torchvision v2, side by side,
with the random values each sample drew, what the network sees, and the code that does it."""

from __future__ import annotations

import random

import gradio as gr
import numpy as np

from trainer import codegen, data
from trainer.augment import AugmentConfig
from trainer.runner import backend
from ui import shared

SAMPLES = 8
NETWORK_VIEW_NOTE = (
    "**What the network sees.** Keras' `preprocess_input` (caffe mode) swaps RGB to **BGR** and "
    "subtracts the ImageNet mean in 0-255 units (shown here in the network's channel order, so reds "
    "look blue); torchvision scales to 0-1 and standardises each **RGB** channel with the ImageNet "
    "mean and std. Each set of pretrained weights expects its own convention.\n\n"
    "**One resampling, not one per setting.** Keras 3's stock layers (RandomFlip, RandomRotation, RandomZoom, "
    "RandomShear, ...) each resample the image: more blur, and (zoom + shear + flip) 2.4x the time per batch. "
    "The Keras side "
    "here is a small RandomAffine layer (its code is below) that draws the values torchvision's "
    "RandomAffine draws and composes flip, rotation, shift, zoom and shear into one matrix, as the seed "
    "notebook's ImageDataGenerator did: given the same values, both give the same pixels.")


def settings(shear, zoom_min, zoom_max, rotation, shift, hflip, vflip) -> AugmentConfig:
    aug = AugmentConfig(shear_deg=float(shear), zoom_min=float(zoom_min), zoom_max=float(zoom_max),
                        rotation_deg=float(rotation), shift=float(shift), hflip=bool(hflip), vflip=bool(vflip))
    problems = aug.validate()
    if problems:
        raise gr.Error("; ".join(problems))
    return aug


def caption(drawn: dict) -> str:
    parts = []
    if drawn.get("hflip"):
        parts.append("h-flip")
    if drawn.get("vflip"):
        parts.append("v-flip")
    if "zoom" in drawn:
        parts.append(f"zoom {drawn['zoom']:.2f}")
    if "shear_deg" in drawn:
        parts.append(f"shear {drawn['shear_deg']:+.1f}°")
    if "rotation_deg" in drawn:
        parts.append(f"rot {drawn['rotation_deg']:+.1f}°")
    if "shift_px" in drawn:
        parts.append(f"shift {drawn['shift_px'][0]:+d},{drawn['shift_px'][1]:+d}px")
    return ", ".join(parts) or "unchanged"


def viewable(values: np.ndarray) -> np.ndarray:
    """A float image in any range, stretched to 0-255 over all channels together."""
    low, high = float(values.min()), float(values.max())
    return ((values - low) / max(high - low, 1e-6) * 255).astype(np.uint8)


def load_image(path: str | None) -> np.ndarray:
    source = path or str(shared.ASSETS / "test_card.png")
    try:
        return data.load_array(source, shared.PREVIEW_SIZE, name=source.rsplit("/", 1)[-1])
    except data.ImageError as error:
        raise gr.Error(str(error)) from None


def preview(path, shear, zoom_min, zoom_max, rotation, shift, hflip, vflip, seed):
    """Both frameworks' augmented samples, both network views, both code snippets."""
    aug = settings(shear, zoom_min, zoom_max, rotation, shift, hflip, vflip)
    image = load_image(path)
    seed = int(seed or 0)
    galleries = [[(out, caption(drawn)) for out, drawn in backend(fw).augment_samples(image, aug, SAMPLES, seed)]
                 for fw in ("keras", "pytorch")]
    views = [backend(fw).network_view(image) for fw in ("keras", "pytorch")]
    labels = [f"Keras sees: BGR, mean subtracted (range {views[0].min():.0f} to {views[0].max():.0f})",
              f"PyTorch sees: RGB, standardised (range {views[1].min():.2f} to {views[1].max():.2f})"]
    return (*galleries, gr.Image(viewable(views[0]), label=labels[0]),
            gr.Image(viewable(views[1]), label=labels[1]),
            codegen.keras_code(aug, shared.PREVIEW_SIZE), codegen.torch_code(aug, shared.PREVIEW_SIZE))


def reroll() -> int:
    return random.randint(0, 99_999)


def build() -> tuple[dict[str, gr.components.Component], tuple]:
    """Build the tab; return its augmentation controls by AugmentConfig field (the Train tab trains
    with them) and its load event (fn, inputs, outputs)."""
    a = AugmentConfig()
    with gr.Row():
        with gr.Column(scale=1, min_width=280):
            image = gr.Image(type="filepath", label="Image (upload, or pick an example)", height=240,
                             sources=["upload", "clipboard"])
            gr.Examples(shared.example_images(), inputs=image, label="Examples")
            shear = gr.Slider(0, 40, a.shear_deg, step=1, label="Shear, degrees (±)")
            zoom_min = gr.Slider(0.5, 1.0, a.zoom_min, step=0.05, label="Zoom min (<1 shows more of the scene)")
            zoom_max = gr.Slider(1.0, 2.0, a.zoom_max, step=0.05, label="Zoom max (>1 zooms in)")
            rotation = gr.Slider(0, 180, a.rotation_deg, step=1, label="Rotation, degrees (±)")
            shift = gr.Slider(0, 0.45, a.shift, step=0.05, label="Shift, fraction of the side (±)")
            with gr.Row():
                hflip = gr.Checkbox(a.hflip, label="Horizontal flip")
                vflip = gr.Checkbox(a.vflip, label="Vertical flip")
            with gr.Row():
                seed = gr.Number(0, precision=0, label="Seed", minimum=0)
                reroll_button = gr.Button("Reroll", variant="secondary")
        with gr.Column(scale=3):
            with gr.Row():
                keras_gallery = gr.Gallery(label="Keras 3: RandomAffine layer (keras.ops.image.affine_transform)",
                                           columns=4, height=330, elem_id="keras-samples")
                torch_gallery = gr.Gallery(label="torchvision.transforms.v2", columns=4, height=330,
                                           elem_id="torch-samples")
            with gr.Row():
                keras_view = gr.Image(label="Keras sees", height=200)
                torch_view = gr.Image(label="PyTorch sees", height=200)
            gr.Markdown(NETWORK_VIEW_NOTE)
            with gr.Row():
                keras_code = gr.Code(language="python", label="Keras: this pipeline")
                torch_code = gr.Code(language="python", label="PyTorch: this pipeline")
    controls = {"shear_deg": shear, "zoom_min": zoom_min, "zoom_max": zoom_max, "rotation_deg": rotation,
                "shift": shift, "hflip": hflip, "vflip": vflip}  # AugmentConfig's fields, by name
    inputs = [image, *controls.values(), seed]
    outputs = [keras_gallery, torch_gallery, keras_view, torch_view, keras_code, torch_code]
    gr.on([image.change, seed.change, *(c.change for c in controls.values())],
          preview, inputs, outputs, api_name="preview", concurrency_limit=2, concurrency_id="preview")
    reroll_button.click(reroll, None, seed, api_visibility="private")
    return controls, (preview, inputs, outputs)
