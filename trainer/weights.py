"""Where each framework keeps its ImageNet ResNet-50 weights, and whether they are there.

No framework import: the app asks this before a training starts, to say plainly when the weights
cannot be had. The file names are the frameworks' own (tests check them against torchvision's
weights enum and keras.applications); an offline machine works when these files are pre-seeded:
- PyTorch: `$TORCH_HOME/hub/checkpoints/resnet50-0676ba61.pth` (TORCH_HOME defaults to
  `$XDG_CACHE_HOME/torch`, i.e. `~/.cache/torch`), torchvision's ResNet50_Weights.IMAGENET1K_V1,
  the weights the seed notebook's `pretrained=True` loaded.
- Keras: `$KERAS_HOME/models/resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5` (KERAS_HOME
  defaults to `~/.keras`).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

from trainer import frameworks


class WeightsUnavailable(RuntimeError):
    """ImageNet weights could not be loaded, and random initialisation was not allowed."""


def torch_home() -> Path:
    default = Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "torch"
    return Path(os.environ.get("TORCH_HOME", default)).expanduser()


def keras_home() -> Path:
    return Path(os.environ.get("KERAS_HOME", "~/.keras")).expanduser()


def cache_path(framework: str) -> Path:
    """The file each framework's standard loader reads before it tries to download."""
    record = frameworks.get(framework)
    folder = {"torch": torch_home() / "hub" / "checkpoints", "keras": keras_home() / "models"}[record.weights_cache]
    return folder / record.weights_url.rsplit("/", 1)[1]


def is_cached(framework: str) -> bool:
    return cache_path(framework).is_file()


def unavailable_message(framework: str, error: BaseException | None = None) -> str:
    reason = f" ({type(error).__name__}: {error})" if error else ""
    url = frameworks.get(framework).weights_url
    return (f"ImageNet weights for {framework} could not be loaded{reason}. Connect to the internet "
            f"once, or put {url} at {cache_path(framework)}; or train from random initialisation "
            "(--weights none, or allow it in the app), which learns far less from so few images.")


def random_init_message(framework: str) -> str:
    """The one plain line a run allowed to start from random initialisation says when the ImageNet
    weights could not be loaded (the error and the remedies are for a run that was not allowed)."""
    where = "could not be read from the cache" if is_cached(framework) else "are not available here"
    return (f"ImageNet weights for {framework} {where}: training from random initialisation, as allowed "
            "(expect far lower accuracy)")


@functools.cache  # asked once per process: every page load wants it, and an offline ask waits timeout_s
def reachable(framework: str, timeout_s: float = 3.0) -> bool:
    """True when the weights file's server answered (a HEAD request; nothing is downloaded)."""
    import urllib.request
    url = frameworks.get(framework).weights_url
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout_s):
            return True
    except Exception:  # offline, DNS failure, proxy refusal: all mean "cannot download now"
        return False


def status(framework: str) -> str:
    """cached, downloadable or unavailable."""
    if is_cached(framework):
        return "cached"
    return "downloadable" if reachable(framework) else "unavailable"


def default_choice() -> str:
    """The weights a run starts from unless told otherwise: imagenet where every framework's can be
    had, else none (random initialisation), so that a first Start on an offline server trains."""
    return "imagenet" if all(status(name) != "unavailable" for name in frameworks.NAMES) else "none"


def identity(config, pretrained: bool) -> str:
    """Which backbone weights a run used, for the feature bank's key: random ones depend on the seed,
    a weights file on its bytes."""
    if not pretrained:
        return f"random:seed={config.seed}"
    if config.weights == "imagenet":
        return "imagenet"
    import hashlib
    with open(config.weights, "rb") as file:
        return "file:" + hashlib.file_digest(file, "sha256").hexdigest()
