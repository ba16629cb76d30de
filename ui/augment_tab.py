"""Augment tab: the same augmentation settings as Keras 3 layers and as torchvision v2, side by side,
with the random values each sample drew, what the network sees, and the code that does it.

The torchvision side is computed first and the Keras side after it: torch loads much sooner than
TensorFlow, so a visitor sees samples soon after the page opens (the Keras side fills in later).
The page's opening state (the test card, default settings, seed 0) is stored in assets/, made with
both pipelines by `python -m ui.augment_tab`: it shows at once."""

from __future__ import annotations

import json
import random
import sys

import gradio as gr
import numpy as np

from trainer import codegen, data
from trainer.augment import NUMBERS, AugmentConfig
from trainer.frameworks import backend
from ui import shared

SAMPLES = 8
NETWORK_VIEW_NOTE = (
    "**What the network sees.** Keras' `preprocess_input` (caffe mode) swaps RGB to **BGR** and "
    "subtracts the ImageNet mean in 0-255 units (shown here in the network's channel order, so reds "
    "look blue); torchvision scales to 0-1 and standardises each **RGB** channel with the ImageNet "
    "mean and std. Each set of pretrained weights expects its own convention.\n\n"
    "**One resampling, not one per setting.** Keras 3's stock layers (RandomFlip, RandomRotation, RandomZoom, "
    "RandomShear, ...) each resample the image: more blur, and more time per batch with each layer. "
    "The Keras side here is a small RandomAffine layer (its code is below) that draws the values torchvision's "
    "RandomAffine draws and composes flip, rotation, shift, zoom and shear into one matrix, as the seed "
    "notebook's ImageDataGenerator did: given the same values, both give the same pixels.")


def settings(values: dict) -> AugmentConfig:
    """The page's or the API's augmentation settings, by AugmentConfig field (omitted ones keep their
    defaults), validated: a pop-up names every problem."""
    if not isinstance(values, dict):
        raise gr.Error("the augmentation settings must be a JSON object of AugmentConfig fields by name")
    try:
        aug = AugmentConfig.from_dict({name: float(value) if name in NUMBERS else bool(value)
                                       for name, value in values.items()})
    except (TypeError, ValueError) as error:
        raise gr.Error(str(error)) from None
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


VIEW_LABELS = {"keras": "Keras sees: BGR", "pytorch": "PyTorch sees: RGB"}  # short: a phone shows them side by side
CODE = {"keras": codegen.keras_code, "pytorch": codegen.torch_code}
DEFAULT_PREVIEWS = shared.ASSETS / "default_previews.npz"  # see save_default_previews
KERAS_WAIT = "*The Keras samples follow once TensorFlow has loaded …*"


def side(framework: str, path, aug: AugmentConfig, seed, numbered: bool = False) -> tuple:
    """One framework's augmented samples (captioned with the values each drew; on the page, with
    `numbered`, with their number only: a thumbnail's caption holds a dozen characters, and the
    values were cut off), its network view, the values as a numbered list and its code."""
    samples, view = samples_and_view(framework, path, aug, int(seed or 0))
    gallery = [(out, str(i) if numbered else f"{i}: {caption(drawn)}") for i, (out, drawn) in enumerate(samples, 1)]
    digits = 0 if framework == "keras" else 2
    values = "\n".join(f"{i}. {caption(drawn)}" for i, (_, drawn) in enumerate(samples, 1))
    values += f"\n\nValues the network sees: {view.min():.{digits}f} to {view.max():.{digits}f}."
    return (gallery, gr.Image(viewable(view), label=VIEW_LABELS[framework]), values,
            CODE[framework](aug, shared.PREVIEW_SIZE))


def samples_and_view(framework: str, path, aug: AugmentConfig, seed: int) -> tuple[list, np.ndarray]:
    """The samples with the values each drew, and the network view: stored for the page's opening
    state (no image chosen, default settings, seed 0), so it needs neither torch nor TensorFlow."""
    if path is None and aug == AugmentConfig() and seed == 0 and DEFAULT_PREVIEWS.is_file():
        with np.load(DEFAULT_PREVIEWS) as saved:
            drawn = json.loads(str(saved[f"{framework}_drawn"]))
            return list(zip(saved[f"{framework}_samples"], drawn)), saved[f"{framework}_view"]
    image = load_image(path)
    return (backend(framework).augment_samples(image, aug, SAMPLES, seed),
            backend(framework).network_view(image))


def save_default_previews(target=None) -> None:
    """Compute the opening state's previews with both frameworks' own pipelines and store them
    (`python -m ui.augment_tab`; tests/test_app.py checks that they still match the code)."""
    image, saved = load_image(None), {}
    for framework in ("keras", "pytorch"):
        samples = backend(framework).augment_samples(image, AugmentConfig(), SAMPLES, 0)
        saved[f"{framework}_samples"] = np.stack([out for out, _ in samples])
        saved[f"{framework}_drawn"] = np.array(json.dumps([drawn for _, drawn in samples], default=list))
        saved[f"{framework}_view"] = backend(framework).network_view(image).astype(np.float32)
    np.savez_compressed(target or DEFAULT_PREVIEWS, **saved)


def preview_pytorch(path, seed, **values) -> tuple:
    """The torchvision side: it needs no TensorFlow, so the page shows it first. `values`: the
    page's controls, by AugmentConfig field."""
    return side("pytorch", path, settings(values), seed, numbered=True)


def preview_keras(path, seed, **values) -> tuple:
    return side("keras", path, settings(values), seed, numbered=True)


def keras_pending() -> tuple:
    """The Keras side the moment a setting or the image changes, before TensorFlow has loaded in
    this process (seconds, at the first change): its old samples go and it says it follows, rather
    than keeping them under a spinner while the PyTorch side already shows the new ones. Once
    TensorFlow is in, the Keras side follows within a moment, and stays as it is meanwhile."""
    if "trainer.keras_backend" in sys.modules:
        return gr.skip(), gr.skip()
    return [], KERAS_WAIT


def preview(path, augmentation: dict, seed):
    """Both frameworks' augmented samples, both network views, both code snippets (the API's answer).
    `augmentation`: AugmentConfig fields by name, e.g. {"shear_deg": 10, "rotation_deg": 15}; omitted
    fields keep their defaults."""
    aug = settings(augmentation)
    keras, torch = side("keras", path, aug, seed), side("pytorch", path, aug, seed)
    return keras[0], torch[0], keras[1], torch[1], keras[3], torch[3]


def reroll() -> int:
    return random.randint(0, 99_999)


def build() -> tuple[dict[str, gr.components.Component], dict]:
    """Build the tab; return its augmentation controls by AugmentConfig field (the Train tab trains
    with them) and its load event (demo.load's arguments): the torchvision side; the Keras side
    follows each new torchvision side."""
    a = AugmentConfig()
    with gr.Row():
        with gr.Column(scale=1, min_width=280):
            image = gr.Image(type="filepath", label="Image (upload, or pick an example)", height=240,
                             sources=["upload", "clipboard"])
            gr.Examples(shared.example_images(), inputs=image, label="Examples", elem_id="augment-examples")
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
                # Each side named above its samples: a gallery's label sits over its first thumbnails.
                with gr.Column(min_width=300):
                    gr.Markdown("**Keras 3**: RandomAffine layer (keras.ops.image.affine_transform)")
                    keras_gallery = gr.Gallery(label="Keras 3: RandomAffine layer", show_label=False,
                                               columns=4, height=300, elem_id="keras-samples")
                    keras_values = gr.Markdown(KERAS_WAIT, elem_id="keras-values")
                with gr.Column(min_width=300):
                    gr.Markdown("**PyTorch**: torchvision.transforms.v2")
                    torch_gallery = gr.Gallery(label="torchvision.transforms.v2", show_label=False, columns=4,
                                               height=300, elem_id="torch-samples")
                    torch_values = gr.Markdown(elem_id="torch-values")
            with gr.Row():
                keras_view = gr.Image(label=VIEW_LABELS["keras"], height=200, min_width=140, buttons=["fullscreen"])
                torch_view = gr.Image(label=VIEW_LABELS["pytorch"], height=200, min_width=140, buttons=["fullscreen"])
            with gr.Accordion("Why the two look different, and one resampling", open=False):
                gr.Markdown(NETWORK_VIEW_NOTE)
            with gr.Accordion("The code of this pipeline", open=False):
                keras_code = gr.Code(language="python", label="Keras: this pipeline")
                torch_code = gr.Code(language="python", label="PyTorch: this pipeline")
            api_only = gr.Button(visible=False)  # /preview: both sides in one answer, for API clients
            api_settings = gr.JSON(visible=False, label="augmentation")  # /preview's settings, by field
    controls = {"shear_deg": shear, "zoom_min": zoom_min, "zoom_max": zoom_max, "rotation_deg": rotation,
                "shift": shift, "hflip": hflip, "vflip": vflip}  # AugmentConfig's fields, by name
    inputs = {"inputs": [image, seed], "inputs_kwargs": controls}
    keras_outputs = [keras_gallery, keras_view, keras_values, keras_code]
    torch_outputs = [torch_gallery, torch_view, torch_values, torch_code]
    outputs = [keras_gallery, torch_gallery, keras_view, torch_view, keras_code, torch_code]
    page = {"api_visibility": "private", "concurrency_limit": 2, "concurrency_id": "preview"}
    changes = [image.change, seed.change, *(c.change for c in controls.values())]
    gr.on(changes, keras_pending, None, [keras_gallery, keras_values], api_visibility="private", queue=False,
          show_progress="hidden")
    gr.on(changes, preview_pytorch, outputs=torch_outputs, **inputs, **page)
    torch_gallery.change(preview_keras, outputs=keras_outputs, **inputs, **page)  # each new torchvision side
    api_only.click(preview, [image, api_settings, seed], outputs, api_name="preview", concurrency_limit=2,
                   concurrency_id="preview")
    reroll_button.click(reroll, None, seed, api_visibility="private")
    return controls, {"fn": preview_pytorch, "outputs": torch_outputs, **inputs}


if __name__ == "__main__":
    save_default_previews()
