"""PyTorch's frozen backbone run by ONNX Runtime: float32, on the CPU, from the model's own weights.

On a CPU without native bfloat16 neither torch's eager pass nor torch.compile reaches what the CPU
can do; ONNX Runtime's convolutions come closest (the README's engine table). The backbone is
exported with torch.onnx (the dynamo exporter, which needs onnxscript) for one input shape and
kept, with its ONNX Runtime session, per process under the weights' digest: a warm worker exports
once (about 10 s for ResNet-50 on 2 cores) for every run with the same weights and size.

    run = onnx_engine.session(key, model, features, (32, 3, 224, 224))
    run(x)   # float32 NCHW numpy of that shape -> its features, as numpy

Nothing is written to disk: a stranger's new seed (random initialisation) costs an export in their
own run, never server storage.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Hashable

import numpy as np


def available() -> bool:
    """onnxruntime and onnxscript (torch.onnx's exporter) installed."""
    return all(importlib.util.find_spec(name) is not None for name in ("onnxruntime", "onnxscript"))


_sessions: list = []  # [(key, run)]: the last backbone this process exported


def session(key: Hashable, model, features: Callable, shape: tuple[int, ...]) -> Callable[[np.ndarray], np.ndarray]:
    """`features(model, x)` for inputs of `shape`, run by ONNX Runtime; exported on the first call
    for `key` (the weights' digest and the shape), the previous session dropped first."""
    if not _sessions or _sessions[0][0] != key:
        _sessions.clear()
        _sessions.append((key, _export(model, features, shape)))
    return _sessions[0][1]


def _export(model, features: Callable, shape: tuple[int, ...]) -> Callable[[np.ndarray], np.ndarray]:
    import onnxruntime
    import torch

    class Backbone(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, x):
            return features(self.model, x)

    # Outside the callers' inference mode: the exporter traces with autograd's bookkeeping.
    with torch.inference_mode(False), torch.no_grad():
        program = torch.onnx.export(Backbone().eval(), (torch.zeros(shape),), dynamo=True, verbose=False)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    # Between batches the training's own work (augmentation, the head) needs the cores: no spinning.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    runtime = onnxruntime.InferenceSession(program.model_proto.SerializeToString(), options,
                                           providers=["CPUExecutionProvider"])
    name = runtime.get_inputs()[0].name
    return lambda x: runtime.run(None, {name: x})[0]
