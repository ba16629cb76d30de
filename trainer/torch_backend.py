"""PyTorch side: torchvision ResNet-50, frozen, with a new head; train, evaluate, save, load.

Implements trainer/backend.py's `Backend`, as trainer/keras_backend.py does: same public functions,
same arguments, same kinds of values; helpers private to this file start with `_`. The model returns
logits (PyTorch's convention; the loss applies log-softmax itself), and `predict_proba` applies
the softmax. Preprocessing is torchvision's: scale to 0-1, normalise with the ImageNet mean/std.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torchvision
from torch import nn
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from trainer import augment, bank, loop, onnx_engine, store, weights
from trainer.augment import AugmentConfig
from trainer.config import TrainConfig, backbone_engine, prepare_engine, race_key, use_bfloat16
from trainer.constants import FEATURE_DIM, IMAGENET_MEAN, IMAGENET_STD

FRAMEWORK = "pytorch"
_STAGES = ("layer1", "layer2", "layer3", "layer4")  # ResNet stages, input to output
_EVAL_BATCH = 64
# The engines a frozen backbone can run in, by the names runs, the bank and the bench give them.
ENGINES = {"eager": "eager", "compiled": "torch.compile", "onnxruntime": "ONNX Runtime"}
# On a CPU in float32 auto takes ONNX Runtime, else torch.compile: measured 2.9x and 2.1x eager on
# every CPU tried (the README's engine table). In bfloat16 ONNX Runtime is not offered (it computes
# float32) and torch.compile's gain depends on the CPU (1.8x eager on an avx512_bf16 EPYC, batch 32,
# 2 cores), so auto takes it only for the settings `prepare` timed it faster at, as Keras does XLA.
_PREFERRED = ("onnxruntime", "compiled")
_raced: dict[tuple, str] = {}  # trainer.config.race_key -> the engine `prepare` timed faster (bfloat16)


# ---------------------------------------------------------------- device

def select_device(preference: str = "auto") -> str:
    """Return "gpu" (CUDA) or "cpu"."""
    if preference in ("auto", "gpu") and torch.cuda.is_available():
        torch.backends.cudnn.benchmark = True  # fixed input sizes: let cuDNN pick the fastest kernels
        return "gpu"
    if preference == "gpu":
        raise RuntimeError("device gpu was asked for, but PyTorch sees no CUDA GPU")
    return "cpu"


def _torch_device(preference: str = "auto") -> torch.device:
    return torch.device("cuda" if select_device(preference) == "gpu" else "cpu")


def describe_device(preference: str = "auto") -> str:
    """The device in words, for the page and the logs."""
    device = _torch_device(preference)
    if device.type == "cuda":
        return f"GPU ({torch.cuda.get_device_name(device)})"
    import os
    return f"CPU ({os.cpu_count()} cores)"  # as trainer/keras_backend.py says it


# ---------------------------------------------------------------- augmentation and preprocessing

def build_augmenter(aug: AugmentConfig, seed: int | None = None) -> v2.Compose:
    """torchvision.transforms.v2 pipeline for one uint8 CHW image.

    The transforms draw from torch's global random state (they take no generator), so a seed
    seeds that state: the draws then follow the seed, as the Keras layer's do.
    """
    if seed is not None:
        torch.manual_seed(seed)
    if not aug.enabled:
        return v2.Compose([v2.Identity()])
    steps = []
    if aug.hflip:
        steps.append(v2.RandomHorizontalFlip())
    if aug.vflip:
        steps.append(v2.RandomVerticalFlip())
    steps.append(v2.RandomAffine(
        degrees=aug.rotation_deg, translate=(aug.shift, aug.shift) if aug.shift else None,
        scale=(aug.zoom_min, aug.zoom_max), shear=(-aug.shear_deg, aug.shear_deg),
        interpolation=v2.InterpolationMode.BILINEAR, fill=0))
    return v2.Compose(steps)


def augment_samples(image: np.ndarray, aug: AugmentConfig, count: int, seed: int):
    """`count` augmented copies of one uint8 HWC image, with the values each drew: the values
    training draws (trainer.augment.draw, view 0 of images 0..count-1), applied as training applies
    them, so the preview shows what training does. Both frameworks draw the same values."""
    if not aug.enabled:
        return [(image.copy(), {}) for _ in range(count)]
    height, width = image.shape[:2]
    drawn = augment.draw(aug, seed, 0, range(count), width, height)
    images = _apply_views(torch.tensor(image).permute(2, 0, 1).expand(count, -1, -1, -1), drawn)
    return [(out.permute(1, 2, 0).numpy(), augment.describe(drawn, i, aug)) for i, out in enumerate(images)]


def _to_tensor(images: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) uint8 numpy -> (N, 3, H, W) uint8 tensor, no copy."""
    return torch.from_numpy(np.require(images, requirements=("C", "W"))).permute(0, 3, 1, 2)


def preprocess(images: np.ndarray, device: str = "cpu") -> torch.Tensor:
    """uint8 NHWC RGB -> the backbone's input (see `_normalise`), placed on `device`."""
    return _normalise(_to_tensor(images).to(_torch_device(device)))


def _normalise(images: torch.Tensor) -> torch.Tensor:
    """uint8 NCHW -> float, 0-1, normalised with the ImageNet mean and std (torchvision's way)."""
    mean = torch.tensor(IMAGENET_MEAN, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=images.device).view(1, 3, 1, 1)
    return ((images.float() / 255 - mean) / std).contiguous(memory_format=torch.channels_last)


def network_view(image: np.ndarray) -> np.ndarray:
    """What the network sees: one uint8 HWC image after `preprocess`, as float HWC (RGB)."""
    return preprocess(image[None])[0].permute(1, 2, 0).numpy()


# ---------------------------------------------------------------- model

def _load_backbone(config: TrainConfig) -> tuple[nn.Module, bool, list[str]]:
    """ResNet-50 with ImageNet weights when it can be had; (model, pretrained, warnings)."""
    if config.weights == "none":
        return torchvision.models.resnet50(weights=None), False, [
            "training from random initialisation (weights none): expect far lower accuracy"]
    if config.weights != "imagenet":
        model = torchvision.models.resnet50(weights=None)
        state = torch.load(config.weights, map_location="cpu", weights_only=True)
        missing, _ = model.load_state_dict(state, strict=False)
        if [k for k in missing if not k.startswith("fc.")]:
            raise ValueError(f"{config.weights}: not a ResNet-50 state_dict ({len(missing)} missing keys)")
        return model, True, []
    try:
        return torchvision.models.resnet50(
            weights=torchvision.models.ResNet50_Weights.IMAGENET1K_V1), True, []
    except Exception as error:  # offline, or a damaged cache: the message says what to do
        if not config.allow_random_init:
            raise weights.WeightsUnavailable(weights.unavailable_message(FRAMEWORK, error)) from error
        return torchvision.models.resnet50(weights=None), False, [
            weights.random_init_message(FRAMEWORK)]


def build_model(num_classes: int, config: TrainConfig) -> tuple[nn.Module, dict]:
    """Frozen ResNet-50 + new head (Linear(2048, units), ReLU, Linear(units, classes)), on its device."""
    torch.manual_seed(config.seed)
    model, pretrained, warnings = _load_backbone(config)
    model.requires_grad_(False)
    for stage in _STAGES[len(_STAGES) - config.unfreeze:] if config.unfreeze else ():
        getattr(model, stage).requires_grad_(True)
    model.fc = nn.Sequential(nn.Linear(FEATURE_DIM, config.head_units), nn.ReLU(),
                             nn.Linear(config.head_units, num_classes))
    # The whole network stays in eval mode, also while training: the head has no batch norm or
    # dropout, and the backbone's batch norm must keep its ImageNet statistics. In train mode they
    # would drift towards each small batch (the seed notebook's loop let them), which hurts when
    # fine-tuning on a few hundred images.
    model.eval()
    on_gpu = select_device(config.device) == "gpu"
    model.bfloat16 = use_bfloat16(config.precision, on_gpu)
    raced = _raced.get(race_key(config, model.bfloat16))
    preferred = _PREFERRED if not model.bfloat16 else (raced,) if raced else ()
    model.engine = backbone_engine(engines(model.bfloat16, on_gpu), preferred, on_gpu, config.unfreeze == 0)
    model.engine_batch = config.batch_size  # the one batch shape the compiled or exported backbone takes
    # channels_last lets oneDNN (CPU) and cuDNN (GPU) pick their fastest convolutions.
    return model.to(_torch_device(config.device), memory_format=torch.channels_last), {
        "pretrained": pretrained, "warnings": warnings, "precision": "bfloat16" if model.bfloat16 else "float32",
        "engine": ENGINES[model.engine]}


def engines(bfloat16: bool, on_gpu: bool) -> tuple[str, ...]:
    """The engines a frozen backbone can run in here: torch.compile's CPU code is C++ (it needs a
    compiler on the machine); ONNX Runtime computes float32 on the CPU, where it is installed."""
    cxx = any(shutil.which(name) for name in ("g++", "c++", "clang++"))
    return ("eager", *(("compiled",) if cxx or on_gpu else ()),
            *(("onnxruntime",) if not bfloat16 and not on_gpu and onnx_engine.available() else ()))


def prepare(config: TrainConfig) -> str:
    """Export (or compile) the frozen backbone for runs with `config` in this process, where auto
    takes an engine other than the eager one: runs with the same weights and shape reuse it. In
    bfloat16, where auto could take torch.compile, compile it and time it against eager in turns (on
    zeros); runs with these settings then take the faster. The engine they take."""
    model, _ = build_model(2, config)
    device = select_device(config.device)
    key = race_key(config, model.bfloat16)
    racing = ("compiled",) if model.bfloat16 else ()
    could = backbone_engine(engines(model.bfloat16, device == "gpu"), racing, device == "gpu", config.unfreeze == 0)
    zeros = preprocess(np.zeros((config.batch_size, config.image_size, config.image_size, 3), np.uint8), device)
    return prepare_engine(model.engine, could, key, _raced, lambda engine: backbone(model, engine), zeros)


def _backbone_features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """ResNet-50 without its head: (N, 3, H, W) normalised -> (N, 2048)."""
    x = model.maxpool(model.relu(model.bn1(model.conv1(x))))
    x = model.layer4(model.layer3(model.layer2(model.layer1(x))))
    return torch.flatten(model.avgpool(x), 1)


def backbone(model: nn.Module, engine: str | None = None) -> Callable[[torch.Tensor], np.ndarray]:
    """The backbone alone, in the model's engine (or `engine`: eager, compiled, onnxruntime): a batch from
    `preprocess` -> (N, 2048) features as numpy."""
    device = next(model.parameters()).device
    engine = engine or model.engine

    def run(x: torch.Tensor) -> np.ndarray:
        with torch.inference_mode(), _autocast(model, device):
            return _engine_features(model, x, engine).float().cpu().numpy()
    return run


def _engine_features(model: nn.Module, x: torch.Tensor, engine: str) -> torch.Tensor:
    """`_backbone_features` in `engine`. The compiled and the exported backbones take one batch shape
    (a new shape would compile or export again, for seconds): larger batches go through them in
    slices, a smaller one (an epoch's last) is padded with zeros, which in eval mode change no other
    image's features."""
    if engine == "eager":
        return _backbone_features(model, x)
    size = model.engine_batch
    if len(x) > size:
        return torch.cat([_engine_features(model, x[i:i + size], engine) for i in range(0, len(x), size)])
    # Always a tensor made here, under the callers' inference mode: the compiled graph's guards
    # check the input's dispatch keys, so an input made outside it (the warm-up's, the validation's)
    # and one made inside it (a training batch's) would each compile the backbone, for tens of seconds.
    padded = torch.cat([x, x.new_zeros((size - len(x), *x.shape[1:]))]) if len(x) < size else x.clone()
    if engine == "onnxruntime":
        shape = tuple(padded.shape)
        run = onnx_engine.session((_digest(model), shape), model, _backbone_features, shape)
        return torch.from_numpy(run(padded.float().contiguous().numpy()))[:len(x)]
    from torch._inductor import config as inductor  # loaded with torch.compile, not before

    compiled = _compiled_backbone(model, tuple(padded.shape))
    with inductor.patch(freezing=True):  # (torch.compile's options={"freezing": True} does not freeze)
        return compiled(padded.contiguous(memory_format=torch.channels_last))[:len(x)]


_compiled: list = []  # [(key, compiled function)]: the last backbone this process compiled


def _compiled_backbone(model: nn.Module, shape: tuple) -> Callable[[torch.Tensor], torch.Tensor]:
    """torch.compile of the frozen backbone (inductor with freezing: the weights become constants,
    batch norm folds into the convolutions, oneDNN prepacks them), for one input shape, kept per
    process under a digest of the weights: a warm worker compiles once for all runs with the same
    weights and size. Inductor's FX graph cache on disk (TORCHINDUCTOR_CACHE_DIR) shortens a new
    process's compile."""
    key = (_digest(model), shape, str(next(model.parameters()).device), model.bfloat16)
    if not _compiled or _compiled[0][0] != key:
        _compiled.clear()
        torch.compiler.reset()  # the previous graph, and the model its guards hold, go
        _compiled.append((key, torch.compile(lambda x: _backbone_features(model, x), dynamic=False)))
    return _compiled[0][1]


def _digest(model: nn.Module) -> str:
    """The backbone's weights' digest, once per model (its weights are frozen)."""
    if not hasattr(model, "_engine_digest"):
        model._engine_digest = bank.digest(*[t.detach().cpu().numpy() for name, t in model.state_dict().items()
                                             if not name.startswith("fc.")])
    return model._engine_digest


def features_of(model: nn.Module, images: np.ndarray) -> torch.Tensor:
    """Backbone features of uint8 NHWC images, in batches, without autograd, on the model's device."""
    device = next(model.parameters()).device
    chunks = []
    with torch.inference_mode(), _autocast(model, device):
        for start in range(0, len(images), _EVAL_BATCH):
            batch = _to_tensor(images[start:start + _EVAL_BATCH]).to(device, non_blocking=True)
            chunks.append(_backbone_features(model, _normalise(batch)).float())
    return torch.cat(chunks) if chunks else torch.zeros((0, FEATURE_DIM), device=device)


def _autocast(model: nn.Module, device: torch.device):
    """bfloat16 mixed precision where build_model chose it (no loss scaling needed)."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=model.bfloat16)


# ---------------------------------------------------------------- training

def train(model: nn.Module, data, config: TrainConfig, on_event=loop.ignore, should_stop=loop.never,
          views=None) -> dict:
    """Train the head (and the unfrozen stages) on `data` (trainer.data.Arrays): PyTorch's steps, run
    by trainer/loop.py's `fit`. zero_grad, backward, step; the loss takes the head's logits."""
    device = _torch_device(config.device)
    model.to(device)
    backbone_params = [p for p in model.parameters() if p.requires_grad and not _is_head(model, p)]
    optimizer = torch.optim.Adam([{"params": model.fc.parameters(), "lr": config.lr},
                                  {"params": backbone_params, "lr": config.fine_tune_lr}])
    loss_fn = nn.CrossEntropyLoss()
    # The decoded images live on the training device once (AvP at 224 px: ~100 MB), so a GPU never
    # waits for JPEG decoding or host-to-device copies; augmentation runs there too.
    x_train = _to_tensor(data.x_train).to(device)
    y_train = torch.from_numpy(data.y_train).to(device)

    def inputs_of(index: np.ndarray, view: int) -> tuple[torch.Tensor, float]:
        """View `view` of the images at `index` (uint8 NCHW), and how long making it took."""
        waited = time.perf_counter()
        images = x_train[torch.from_numpy(index).to(device)]
        if config.augment_active:
            height, width = images.shape[-2:]
            images = _apply_views(images, augment.draw(config.augment, config.seed, view, index, width, height))
        _synchronize(device)  # so the data time is the data's, not the queued GPU work's
        return images, time.perf_counter() - waited

    def features(index: np.ndarray, view: int) -> tuple[np.ndarray, float]:
        images, data_s = inputs_of(index, view)
        with torch.inference_mode(), _autocast(model, device):
            return _engine_features(model, _normalise(images), model.engine).float().cpu().numpy(), data_s

    def step(backbone_features: torch.Tensor, index: np.ndarray) -> tuple[float, int]:
        labels = y_train[torch.from_numpy(index).to(device)]
        logits = model.fc(backbone_features.float())
        loss = loss_fn(logits, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.item(), int((logits.argmax(1) == labels).sum())

    def head_step(head_input: np.ndarray, index: np.ndarray) -> tuple[float, int]:
        return step(torch.from_numpy(head_input).to(device), index)

    def full_step(index: np.ndarray, view: int) -> tuple[float, int, float]:
        images, data_s = inputs_of(index, view)
        with _autocast(model, device):
            backbone_features = _backbone_features(model, _normalise(images))
        loss, correct = step(backbone_features, index)
        return loss, correct, data_s

    steps = loop.Steps(features, head_step, full_step,
                       val_features=lambda: _features_numpy(model, data.x_val, model.engine),
                       evaluate=lambda features: evaluate(model, data.x_val, data.y_val, features))
    return loop.fit(FRAMEWORK, steps, len(data.y_train), config, on_event, should_stop, views)


def _apply_views(images: torch.Tensor, drawn: dict) -> torch.Tensor:
    """Each uint8 CHW image flipped and affine-transformed by its drawn values (trainer.augment.draw),
    as torchvision's RandomHorizontalFlip, RandomVerticalFlip and RandomAffine apply them."""
    out = []
    for i, image in enumerate(images):
        if drawn["hflip"][i]:
            image = F.horizontal_flip(image)
        if drawn["vflip"][i]:
            image = F.vertical_flip(image)
        out.append(F.affine(image, angle=float(drawn["rotation_deg"][i]),
                            translate=[int(v) for v in drawn["shift_px"][i]], scale=float(drawn["zoom"][i]),
                            shear=[float(drawn["shear_deg"][i]), 0.0],
                            interpolation=v2.InterpolationMode.BILINEAR, fill=0))
    return torch.stack(out)


def _features_numpy(model: nn.Module, images: np.ndarray, engine: str = "eager") -> np.ndarray:
    """The features of a training's validation images, in the training's engine (features_of, for
    predictions, stays eager: a loaded model predicting one image should not compile first)."""
    if engine == "eager" or not len(images):
        return features_of(model, images).float().cpu().numpy()
    run, size = backbone(model, engine), model.engine_batch
    device = next(model.parameters()).device
    return np.concatenate([run(_normalise(_to_tensor(images[i:i + size]).to(device)))
                           for i in range(0, len(images), size)])


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _is_head(model: nn.Module, parameter: torch.Tensor) -> bool:
    return any(parameter is p for p in model.fc.parameters())


def evaluate(model: nn.Module, images: np.ndarray, labels: np.ndarray, features=None):
    """(mean loss, accuracy, probabilities) on uint8 images, or on their features (numpy or tensor)."""
    device = next(model.parameters()).device
    with torch.inference_mode():
        features = features_of(model, images) if features is None else torch.as_tensor(features, device=device)
        logits = model.fc(features.float())
        target = torch.from_numpy(labels).to(device)
        loss = float(nn.functional.cross_entropy(logits, target)) if len(labels) else float("nan")
        probabilities = logits.softmax(1).cpu().numpy()
    accuracy = float((probabilities.argmax(1) == labels).mean()) if len(labels) else float("nan")
    return loss, accuracy, probabilities


def predict_proba(model: nn.Module, images: np.ndarray) -> np.ndarray:
    """Class probabilities (N, classes) for uint8 NHWC images."""
    with torch.inference_mode():
        return model.fc(features_of(model, images)).float().softmax(1).cpu().numpy()


def gradcam(model: nn.Module, images: np.ndarray, class_index: int | None = None) -> np.ndarray:
    """Grad-CAM (Selvaraju et al. 2017): layer4's channels weighted by the mean gradient of the
    class logit, ReLU, upsampled to the images and scaled to [0, 1] per image. A forward hook keeps
    layer4's output, made a leaf that requires grad, so autograd stops there: no gradient flows
    into the frozen backbone."""
    if not len(images):
        return np.zeros((0, *images.shape[1:3]), np.float32)
    device = next(model.parameters()).device
    kept = {}

    def keep(module, inputs, output):
        kept["activation"] = output if output.requires_grad else output.detach().requires_grad_()
        return kept["activation"]

    hook = model.layer4.register_forward_hook(keep)
    try:
        with torch.enable_grad():
            logits = model(_normalise(_to_tensor(images).to(device)))
            chosen = logits.argmax(1) if class_index is None else torch.full((len(images),), class_index,
                                                                              device=device)
            score = logits.gather(1, chosen[:, None]).sum()
            gradients, = torch.autograd.grad(score, kept["activation"])  # (N, C, h, w)
    finally:
        hook.remove()
    activation = kept["activation"].detach()
    weights = gradients.mean(dim=(2, 3), keepdim=True)
    cam = torch.relu((weights * activation).sum(1, keepdim=True))
    cam = nn.functional.interpolate(cam, size=images.shape[1:3], mode="bilinear", align_corners=False)
    return _scaled(cam[:, 0].cpu().numpy())


def _scaled(cam: np.ndarray) -> np.ndarray:
    """Each map divided by its maximum (an all-zero map stays zero), as float32."""
    peak = cam.reshape(len(cam), -1).max(1).reshape(-1, 1, 1)
    return (cam / np.maximum(peak, 1e-12)).astype(np.float32)


def parameter_counts(model: nn.Module) -> dict:
    """Trainable and total parameters, as PyTorch counts them (batch-norm statistics are buffers)."""
    params = list(model.parameters())
    return {"trainable_params": sum(p.numel() for p in params if p.requires_grad),
            "total_params": sum(p.numel() for p in params)}


# ---------------------------------------------------------------- save and load

def save(model: nn.Module, models_dir: str | Path, metadata: dict) -> Path:
    """The weights as safetensors (tensors only: loading runs no code) + metadata.json under
    `<models_dir>/pytorch`, atomically."""
    from safetensors.torch import save_file
    # contiguous: the model is channels_last, and safetensors stores plain row-major tensors
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    return store.save_atomically(models_dir, FRAMEWORK, lambda path: save_file(state, str(path)), metadata)


def load(folder: str | Path) -> tuple[nn.Module, dict]:
    """Rebuild the model from metadata.json and load its weights: model.safetensors, or the
    model.pt state_dict older versions saved (weights_only: no pickle code runs)."""
    from safetensors.torch import load_file
    metadata = store.read_metadata(folder)
    config = TrainConfig.from_dict(metadata["config"]).with_changes(weights="none")
    model, _ = build_model(len(metadata["classes"]), config)
    path = store.saved_file(folder, FRAMEWORK)
    if path is None:
        raise FileNotFoundError(f"no saved {FRAMEWORK} model in {Path(folder).name}")
    if path.suffix == ".safetensors":
        state = load_file(path)
    else:  # model.pt, a torch.save'd state_dict (before safetensors)
        state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return model.eval(), metadata



def versions() -> dict:
    """The framework's package versions, saved in metadata.json."""
    return {"torch": torch.__version__, "torchvision": torchvision.__version__}

