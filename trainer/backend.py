"""The one surface both backends offer: what trainer/keras_backend.py and trainer/torch_backend.py share.

Callers get a backend with `trainer.frameworks.backend(framework)` and use only these names, so they
never branch on the framework. Each backend module defines exactly these public names with these
signatures (tests/test_backends.py checks both); everything else in a backend starts with `_`.
Reading one backend tells you how to read the other: the differences are the frameworks'.

Shared meanings: images are uint8 numpy arrays, NHWC, RGB; a device is "cpu" or "gpu"; a model
is the framework's own (a keras.Model, a torch.nn.Module) and so is a tensor: `Any` here, because
this module imports no framework.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from trainer import loop

if TYPE_CHECKING:
    from trainer.augment import AugmentConfig
    from trainer.bank import RunViews
    from trainer.config import TrainConfig
    from trainer.data import Arrays

Model = Any  # keras.Model or torch.nn.Module
Tensor = Any  # tf.Tensor or torch.Tensor
Sample = tuple[np.ndarray, dict]  # an augmented uint8 HWC image, and the random values it drew


@runtime_checkable
class Backend(Protocol):
    FRAMEWORK: str  # its name in trainer/frameworks.py, e.g. "keras"
    ENGINES: dict[str, str]  # engine -> the name runs, the bank and the bench give it ("eager" -> "tf.function")

    # ---------------------------------------------------------------- device

    def select_device(self, preference: str = "auto") -> str:
        """"gpu" or "cpu" for a preference of auto, cpu or gpu; raises RuntimeError for gpu without one."""

    def describe_device(self, preference: str = "auto") -> str:
        """The device in words for people, e.g. "GPU (NVIDIA H100)" or "CPU (16 cores)"."""

    # ---------------------------------------------------------------- augmentation and preprocessing

    def build_augmenter(self, aug: AugmentConfig, seed: int | None = None) -> Any:
        """The framework's augmentation pipeline for the settings; its random draws follow `seed`
        (None: the framework's global random state)."""

    def augment_samples(self, image: np.ndarray, aug: AugmentConfig, count: int, seed: int) -> list[Sample]:
        """`count` augmented copies of one HWC image, each with the values it drew (AugmentConfig's units)."""

    def preprocess(self, images: np.ndarray, device: str = "cpu") -> Tensor:
        """NHWC images -> the backbone's input, on `device`, normalised the way its weights expect."""

    def network_view(self, image: np.ndarray) -> np.ndarray:
        """What the network sees of one HWC image: `preprocess`'s output as float HWC numpy."""

    # ---------------------------------------------------------------- model

    def build_model(self, num_classes: int, config: TrainConfig) -> tuple[Model, dict]:
        """Frozen ResNet-50 + new head, on the config's device; info: pretrained, warnings, precision,
        engine (what computes the frozen backbone in training, by its name in ENGINES: trainer/config.py
        `backbone_engine`)."""

    def engines(self, bfloat16: bool, on_gpu: bool) -> tuple[str, ...]:
        """The engines (keys of the module's ENGINES: eager, compiled, ...) a frozen backbone can run
        in on this machine; build_model picks among them, the bench times each."""

    def prepare(self, config: TrainConfig) -> str:
        """Make the frozen backbone's engine ready in this process for runs with `config` (compile or
        export it, kept per process for the same weights and shape; where the compiler's gain depends
        on the CPU, Keras' XLA and PyTorch's torch.compile in bfloat16, time it against the framework's
        own pass and keep the faster for these settings: trainer/config.py `prepare_engine`): what a
        warm worker does as it starts. The engine such runs take, a key of ENGINES."""

    def backbone(self, model: Model, engine: str | None = None) -> Callable[[Tensor], np.ndarray]:
        """The model's backbone as one function: a batch from `preprocess` -> (N, 2048) features,
        without gradients, in the model's precision (the forward pass alone, for timing it), run by
        the engine training uses (build_model's info["engine"]), or by `engine`: "eager" (the
        framework's own forward pass), "compiled" (its compiler: torch.compile, XLA) or another of
        `engines` ("onnxruntime": PyTorch's backbone exported to ONNX Runtime)."""

    def features_of(self, model: Model, images: np.ndarray) -> Tensor:
        """Backbone features (N, 2048) of NHWC images, in batches, without gradients."""

    # ---------------------------------------------------------------- training

    def train(self, model: Model, data: Arrays, config: TrainConfig, on_event: loop.EventSink = loop.ignore,
              should_stop: Callable[[], bool] = loop.never, views: RunViews | None = None) -> dict:
        """Train the head (and any unfrozen stages) with trainer/loop.py's epoch loop; its result.
        With a frozen backbone, each epoch's features come from the bank (`views`) when it has them."""

    def evaluate(self, model: Model, images: np.ndarray, labels: np.ndarray,
                 features: Tensor | None = None) -> tuple[float, float, np.ndarray]:
        """(mean loss, accuracy, probabilities) on images, or on their `features_of` when given."""

    def predict_proba(self, model: Model, images: np.ndarray) -> np.ndarray:
        """Class probabilities (N, classes), float32, for NHWC images."""

    def gradcam(self, model: Model, images: np.ndarray, class_index: int | None = None) -> np.ndarray:
        """Grad-CAM heatmaps (N, H, W) in [0, 1] at the images' resolution, from the last ResNet
        stage, for `class_index` (None: each image's predicted class)."""

    # ---------------------------------------------------------------- save and load

    def parameter_counts(self, model: Model) -> dict:
        """{"trainable_params": ..., "total_params": ...} as the framework counts them (Keras counts
        batch-norm statistics as weights, PyTorch keeps them as buffers, not parameters)."""

    def save(self, model: Model, models_dir: str | Path, metadata: dict) -> Path:
        """The model and metadata.json under `<models_dir>/<FRAMEWORK>`, atomically (trainer/store.py)."""

    def load(self, folder: str | Path) -> tuple[Model, dict]:
        """A saved model, on its device, ready to predict, and its metadata; runs no code from the file."""

    def versions(self) -> dict:
        """The framework's package versions, saved in metadata.json."""
