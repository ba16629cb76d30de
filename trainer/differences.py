"""What really differs between the Keras and the PyTorch "same" recipe, read from the installed
libraries at run time: nothing in the table is typed.

    rows = differences.table()   # [{"what": ..., "keras": ..., "pytorch": ...}, ...], computed once, cached

Each row is one function that asks the libraries (a default of an optimizer, a layer built and
measured, a model saved and its file read back), so a new library version, or a patched default
(tests/test_recipe.py), changes the row. The frameworks are imported inside the functions only:
the app imports this module at start-up and computes the table when the Code tab is first opened.
"""

from __future__ import annotations

import inspect
import tempfile
import threading
import zipfile
from pathlib import Path

import numpy as np

SMALL = 32  # pixels: the backbones are built at this size for counting and measuring (weights do not depend on it)
_lock = threading.Lock()
_cached: list[dict] | None = None


def _keras():
    import keras

    from trainer import keras_backend  # noqa: F401 - imports torchvision before TensorFlow, as it must
    return keras


def _torch():
    import torch
    import torchvision
    return torch, torchvision


def _numbers(values) -> str:
    return "(" + ", ".join(f"{float(v):.4g}" for v in values) + ")"


def preprocessing() -> tuple[str, str]:
    """Keras' preprocess_input applied to known pixels; torchvision's ImageNet weights' own transforms."""
    keras = _keras()
    black = np.zeros((1, 1, 1, 3), "float32")
    red = black + np.array([255, 0, 0], "float32")
    subtracted = -np.asarray(keras.applications.resnet50.preprocess_input(black.copy()))[0, 0, 0]
    moved = np.asarray(keras.applications.resnet50.preprocess_input(red.copy()))[0, 0, 0] + subtracted
    order = "BGR" if moved[2] > moved[0] else "RGB"
    scale = float(moved.max()) / 255
    keras_text = (f"resnet50.preprocess_input: channels to {order}, subtracts {_numbers(subtracted)}, "
                  f"scales by {scale:.4g} (0-255 stays 0-255)")
    _, torchvision = _torch()
    transforms = torchvision.models.ResNet50_Weights.IMAGENET1K_V1.transforms()
    torch_text = (f"ResNet50_Weights.IMAGENET1K_V1.transforms(): RGB, 0-1, mean {_numbers(transforms.mean)}, "
                  f"std {_numbers(transforms.std)} (its own recipe also resizes to {transforms.resize_size[0]} "
                  f"and crops {transforms.crop_size[0]}; the app squashes to the image size instead)")
    return keras_text, torch_text


def head_init() -> tuple[str, str]:
    """The initialisers of a new Dense(128) and Linear(2048, 128), measured on the weights they draw."""
    keras = _keras()
    dense = keras.layers.Dense(128)
    dense.build((None, 2048))
    kernel, bias = np.asarray(dense.kernel), np.asarray(dense.bias)
    keras_text = (f"{type(dense.kernel_initializer).__name__} kernel (|w| up to {np.abs(kernel).max():.4f}), "
                  f"{type(dense.bias_initializer).__name__} bias (|b| up to {np.abs(bias).max():.4f})")
    torch, _ = _torch()
    linear = torch.nn.Linear(2048, 128)
    weight, bias = linear.weight.detach().numpy(), linear.bias.detach().numpy()
    calls = [name for name in ("kaiming_uniform_", "xavier_uniform_", "uniform_", "normal_")
             if f"init.{name}(" in inspect.getsource(type(linear).reset_parameters)]
    torch_text = (f"reset_parameters: {', '.join(calls)} (|w| up to {np.abs(weight).max():.4f}, "
                  f"|b| up to {np.abs(bias).max():.4f}: both scaled by 1/sqrt(fan_in))")
    return keras_text, torch_text


def adam_epsilon() -> tuple[str, str]:
    keras = _keras()
    torch, _ = _torch()
    optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))])
    return (f"Adam().epsilon = {keras.optimizers.Adam().epsilon:g}",
            f"Adam(...).defaults['eps'] = {optimizer.defaults['eps']:g}")


def _keras_backbone():
    keras = _keras()
    return keras.applications.ResNet50(include_top=False, weights=None, input_shape=(SMALL, SMALL, 3))


def batch_norm(keras_model, torch_model) -> tuple[str, str]:
    keras = _keras()
    layer = next(layer for layer in keras_model.layers if isinstance(layer, keras.layers.BatchNormalization))
    torch_bn = torch_model.bn1
    return (f"momentum {layer.momentum:g} (keeps {layer.momentum:g} of the old statistics), epsilon {layer.epsilon:g}",
            f"momentum {torch_bn.momentum:g} (takes {torch_bn.momentum:g} of the new statistics), eps {torch_bn.eps:g}")


def stride(keras_model, torch_model) -> tuple[str, str]:
    """Which convolution of the first block of the second stage downsamples."""
    first = [layer for layer in keras_model.layers if layer.name.startswith("conv3_block1_")
             and layer.name.endswith("_conv") and not layer.name.endswith("_0_conv")]
    keras_text = ", ".join(f"{layer.name} {tuple(layer.strides)}" for layer in first)
    block = torch_model.layer2[0]
    torch_text = ", ".join(f"layer2[0].{name} {tuple(getattr(block, name).stride)}"
                           for name in ("conv1", "conv2", "conv3"))
    return keras_text, torch_text


def softmax_or_logits() -> tuple[str, str]:
    keras = _keras()
    torch, torchvision = _torch()
    activation = inspect.signature(keras.applications.ResNet50).parameters["classifier_activation"].default
    from_logits = keras.losses.SparseCategoricalCrossentropy().get_config()["from_logits"]
    logits = torch.tensor([[2.0, -1.0]])
    target = torch.tensor([0])
    applies = torch.allclose(torch.nn.CrossEntropyLoss()(logits, target),
                             torch.nn.functional.nll_loss(torch.log_softmax(logits, 1), target))
    head = type(torchvision.models.resnet50(weights=None).fc).__name__
    return (f"ResNet50(classifier_activation={activation!r}); SparseCategoricalCrossentropy(from_logits="
            f"{from_logits}): the loss takes probabilities",
            f"resnet50().fc is a {head} (logits); CrossEntropyLoss "
            + ("applies log-softmax itself: it takes logits" if applies else "does not apply log-softmax"))


def parameters(keras_model, torch_model) -> tuple[str, str]:
    keras = _keras()
    total = keras_model.count_params()
    statistics = sum(int(np.prod(w.shape)) for layer in keras_model.layers
                     if isinstance(layer, keras.layers.BatchNormalization)
                     for w in (layer.moving_mean, layer.moving_variance))
    backbone = [p for name, p in torch_model.named_parameters() if not name.startswith("fc.")]
    buffers = sum(b.numel() for name, b in torch_model.named_buffers()
                  if name.endswith(("running_mean", "running_var")))
    return (f"count_params() of the backbone: {total:,}, of which {statistics:,} are batch-norm moving means "
            "and variances (weights, not trained)",
            f"sum of parameters() of the backbone: {sum(p.numel() for p in backbone):,}; its {buffers:,} "
            "running means and variances are buffers, not parameters")


def saved_file(keras_model, torch_model) -> tuple[str, str]:
    """Save each backbone and read the file back: its format and size."""
    from safetensors import safe_open
    from safetensors.torch import save_file
    with tempfile.TemporaryDirectory() as folder:
        keras_path, torch_path = Path(folder) / "model.keras", Path(folder) / "model.safetensors"
        keras_model.save(keras_path)
        with zipfile.ZipFile(keras_path) as archive:
            members = ", ".join(sorted(archive.namelist()))
        state = {k: v.detach().contiguous() for k, v in torch_model.state_dict().items()}
        save_file(state, torch_path)
        with safe_open(torch_path, "pt") as opened:
            tensors = len(list(opened.keys()))
        return (f".keras: a zip of {members} (architecture and weights), {keras_path.stat().st_size / 1e6:.1f} MB "
                "for the ResNet-50 backbone",
                f".safetensors: {tensors} named tensors and no code (the architecture is rebuilt in code), "
                f"{torch_path.stat().st_size / 1e6:.1f} MB for the ResNet-50 (with its 1000-class fc)")


def weights_source() -> tuple[str, str]:
    keras = _keras()
    resnet = inspect.getmodule(keras.applications.ResNet50)
    base = getattr(resnet, "BASE_WEIGHTS_PATH", "?")
    name = next((value for key, value in vars(resnet).items() if key == "WEIGHTS_HASHES"), {}).get("resnet50")
    keras_text = f"{base}resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5" + (
        f" (hash {name[1][:12]}…), into ~/.keras/models" if name else ", into ~/.keras/models")
    _, torchvision = _torch()
    weights = torchvision.models.ResNet50_Weights.IMAGENET1K_V1
    metrics = weights.meta.get("_metrics", {}).get("ImageNet-1K", {})
    return keras_text, (f"{weights.url} (ImageNet top-1 {metrics.get('acc@1', '?')}%), into "
                        "~/.cache/torch/hub/checkpoints")


def table() -> list[dict]:
    """Every row, computed once per process (a few seconds: two backbones are built and saved)."""
    global _cached
    with _lock:
        if _cached is None:
            _cached = _compute()
        return _cached


def _compute() -> list[dict]:
    _, torchvision = _torch()
    keras_model, torch_model = _keras_backbone(), torchvision.models.resnet50(weights=None)
    rows = [("Preprocessing", preprocessing()), ("New head's initialisation", head_init()),
            ("Adam's default epsilon", adam_epsilon()), ("Batch norm", batch_norm(keras_model, torch_model)),
            ("Where a bottleneck block downsamples", stride(keras_model, torch_model)),
            ("Softmax", softmax_or_logits()), ("Parameters counted", parameters(keras_model, torch_model)),
            ("Saved file", saved_file(keras_model, torch_model)), ("ImageNet weights from", weights_source())]
    return [{"what": what, "keras": keras, "pytorch": pytorch} for what, (keras, pytorch) in rows]
