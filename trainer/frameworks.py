"""The frameworks the app trains in, one record each: what the rest of the code knows of a framework.

    from trainer import frameworks
    frameworks.get("keras").display     # "Keras"
    frameworks.backend("pytorch")       # trainer/torch_backend.py, imported on first use
    frameworks.NAMES                    # ("keras", "pytorch")

Framework-free: the backend module is imported only by `backend`. Adding a framework means a record
here, its backend module (trainer/backend.py's surface) and its tests; the page, the charts, the
saved-model store and the weights cache read everything else from the record (the way timm's
`create_model` looks a model up in its registry).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from trainer.backend import Backend


@dataclass(frozen=True)
class Framework:
    name: str  # as in settings, folders and events: "keras"
    display: str  # as people read it: "Keras"
    colour: str  # its lines in the charts
    colour_dark: str  # its validation points
    colour_pale: str  # its previous run
    backend_module: str  # trainer.<backend_module> implements trainer/backend.py's Backend
    model_file: str  # the saved model's file name in `<models>/<name>/`
    legacy_model_files: tuple[str, ...]  # older formats its backend still loads
    weights_url: str  # the ImageNet ResNet-50 weights its standard loader downloads
    weights_cache: str  # where that loader looks first: "torch" ($TORCH_HOME/hub/checkpoints) or "keras"
    preprocessing: str  # in words, saved in metadata.json
    gpu_unused: str  # said when the machine has a GPU but this framework trains on the CPU


REGISTRY: dict[str, Framework] = {f.name: f for f in (
    Framework(
        name="keras", display="Keras", colour="#d00000", colour_dark="#7a0000", colour_pale="#f4a3a3",
        backend_module="keras_backend", model_file="model.keras", legacy_model_files=(),
        weights_url=("https://storage.googleapis.com/tensorflow/keras-applications/resnet/"
                     "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"),
        weights_cache="keras",
        preprocessing="keras.applications.resnet50.preprocess_input (caffe: BGR, ImageNet mean subtracted)",
        gpu_unused=("this machine has a GPU, but Keras is training on the CPU: TensorFlow found no CUDA "
                    "libraries (install tensorflow[and-cuda], as requirements.txt does)")),
    Framework(
        name="pytorch", display="PyTorch", colour="#ee8c00", colour_dark="#8a5200", colour_pale="#f8cf94",
        backend_module="torch_backend", model_file="model.safetensors",
        legacy_model_files=("model.pt",),  # a state_dict saved with torch.save (loaded weights_only)
        weights_url="https://download.pytorch.org/models/resnet50-0676ba61.pth",
        weights_cache="torch",
        preprocessing="0-1 scaling, then Normalize(ImageNet mean, std)",
        gpu_unused="this machine has a GPU, but PyTorch is training on the CPU: this torch build has no CUDA"),
)}
NAMES = tuple(REGISTRY)  # every framework, in the order the page lists them
# Training order of a run with several frameworks, and the order a process imports them: PyTorch
# first. It needs no TensorFlow import and no graph tracing before its first batch, so the first
# progress appears sooner; and torchvision must be imported before TensorFlow in one process
# (trainer/keras_backend.py says why).
ORDER = ("pytorch", "keras")
DISPLAY = {name: f.display for name, f in REGISTRY.items()}


def get(name: str) -> Framework:
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown framework {name!r}: one of {', '.join(NAMES)}") from None


def backend(name: str) -> Backend:
    """The backend module of a framework (trainer/backend.py's surface), imported on first use."""
    return cast("Backend", importlib.import_module(f"trainer.{get(name).backend_module}"))
