"""The frozen backbone's engine (AVP_BACKBONE_ENGINE; trainer/config.py `backbone_engine`): the
compiled backbone (torch.compile with frozen weights, XLA) and PyTorch's backbone exported to ONNX
Runtime compute what the framework's own forward pass computes, to float32's rounding, whatever the
batch; a run says which engine computed its features, and the feature bank keeps the engines apart."""

import numpy as np
import pytest

from trainer import bank, frameworks, onnx_engine, runner
from trainer.config import backbone_engine
from trainer.frameworks import backend

# torch.compile takes tens of seconds per model on a small CPU; XLA and an ONNX export a few.
NAMES = {"keras": {"eager": "tf.function", "compiled": "XLA"},
         "pytorch": {"eager": "eager", "compiled": "torch.compile", "onnxruntime": "ONNX Runtime"}}
FAST = [("keras", "compiled"), ("pytorch", "onnxruntime"), pytest.param("pytorch", "compiled", marks=pytest.mark.slow)]


@pytest.fixture
def compiled(monkeypatch):
    monkeypatch.setenv("AVP_BACKBONE_ENGINE", "compiled")


def test_onnx_runtime_is_installed_for_pytorch_on_a_cpu_in_float32():
    assert onnx_engine.available()  # requirements.txt: the app's engine on a CPU Space
    assert backend("pytorch").engines(bfloat16=False, on_gpu=False) == ("eager", "compiled", "onnxruntime")
    assert "onnxruntime" not in backend("pytorch").engines(bfloat16=True, on_gpu=False)  # it computes float32
    assert backend("keras").engines(bfloat16=False, on_gpu=False) == ("eager", "compiled")


def test_the_engine_follows_the_setting_and_the_precision(monkeypatch):
    torch_like = {"offered": ("eager", "compiled", "onnxruntime"), "prefers": ("onnxruntime", "compiled")}
    keras_like = {"offered": ("eager", "compiled"), "prefers": ()}
    monkeypatch.setenv("AVP_BACKBONE_ENGINE", "auto")
    assert backbone_engine(**torch_like, bfloat16=False, on_gpu=False, frozen=True) == "onnxruntime"
    assert backbone_engine(("eager", "compiled"), ("onnxruntime", "compiled"), False, False, True) == "compiled"
    assert backbone_engine(**keras_like, bfloat16=False, on_gpu=False, frozen=True) == "eager"
    assert backbone_engine(**torch_like, bfloat16=True, on_gpu=False, frozen=True) == "eager"  # bfloat16 is native
    assert backbone_engine(**torch_like, bfloat16=False, on_gpu=True, frozen=True) == "eager"
    assert backbone_engine(**torch_like, bfloat16=False, on_gpu=False, frozen=False) == "eager"  # unfrozen stages
    monkeypatch.setenv("AVP_BACKBONE_ENGINE", "compiled")
    assert backbone_engine(**keras_like, bfloat16=True, on_gpu=False, frozen=True) == "compiled"
    assert backbone_engine(**torch_like, bfloat16=False, on_gpu=False, frozen=False) == "eager"
    monkeypatch.setenv("AVP_BACKBONE_ENGINE", "onnxruntime")
    assert backbone_engine(**keras_like, bfloat16=False, on_gpu=False, frozen=True) == "eager"  # not Keras'
    monkeypatch.setenv("AVP_BACKBONE_ENGINE", "eager")
    assert backbone_engine(**torch_like, bfloat16=False, on_gpu=False, frozen=True) == "eager"
    monkeypatch.setenv("AVP_BACKBONE_ENGINE", "fast")
    with pytest.raises(ValueError, match="AVP_BACKBONE_ENGINE must be one of auto, eager, compiled, onnxruntime"):
        backbone_engine(**torch_like, bfloat16=False, on_gpu=False, frozen=True)


def assert_same_features(ours, theirs):
    scale = np.abs(theirs).max()
    assert ours.shape == theirs.shape and scale > 0
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5 * scale)


@pytest.mark.parametrize(("framework", "engine"), FAST)
def test_each_engine_computes_the_frameworks_own_features(framework, engine, tiny_config, monkeypatch):
    """Batches of the training's size, smaller ones (padded) and larger ones (in slices), for two
    models with different weights: each gets its own features, not the first compiled model's."""
    monkeypatch.setenv("AVP_BACKBONE_ENGINE", engine)
    module = backend(framework)
    images = np.random.default_rng(0).integers(0, 255, (9, 64, 64, 3), dtype=np.uint8)
    for seed in (1, 2):
        config = tiny_config.with_changes(image_size=64, precision="float32", seed=seed)
        model, info = module.build_model(2, config)
        assert info["engine"] == NAMES[framework][engine]
        for count in (4, 3, 9):
            x = module.preprocess(images[:count])
            assert_same_features(module.backbone(model)(x), module.backbone(model, "eager")(x))
        if seed == 1:
            first = module.backbone(model)(module.preprocess(images[:4]))
    assert not np.allclose(module.backbone(model)(module.preprocess(images[:4])), first)


@pytest.mark.slow
@pytest.mark.parametrize("framework", frameworks.NAMES)
def test_a_run_names_its_engine_and_trains_as_the_eager_one(framework, tiny_config, tmp_path, monkeypatch):
    config = tiny_config.with_changes(framework=framework, image_size=64, precision="float32", epochs=2)
    results = {}
    for engine in NAMES[framework]:
        monkeypatch.setenv("AVP_BACKBONE_ENGINE", engine)
        events = []
        out = runner.train(config.with_changes(out_dir=str(tmp_path / engine)), events.append)[framework]
        (start,) = [e for e in events if e["type"] == "start"]
        assert start["engine"] == out["engine"] == NAMES[framework][engine]
        results[engine] = [h[key] for h in out["history"] for key in ("train_loss", "val_loss")]
    for engine in NAMES[framework]:
        assert results[engine] == pytest.approx(results["eager"], rel=1e-3, abs=1e-5), engine


@pytest.mark.slow
def test_a_run_after_the_warm_up_exports_nothing_more(tiny_config, tmp_path, monkeypatch):
    """ONNX Runtime's session is made as a warm worker starts; a run with the same weights and size
    then computes its training batches and its validation through it, exporting nothing again."""
    import torch.onnx

    monkeypatch.setenv("AVP_BACKBONE_ENGINE", "auto")
    config = tiny_config.with_changes(framework="pytorch", image_size=64, precision="float32", epochs=1,
                                      out_dir=str(tmp_path))
    assert set(runner.warm_up(config)) == {"pytorch"}
    exports = []
    monkeypatch.setattr(torch.onnx, "export", lambda *args, **kwargs: exports.append(args))
    events = []
    runner.train(config, events.append)
    assert [e["engine"] for e in events if e["type"] == "start"] == ["ONNX Runtime"] and exports == []


@pytest.mark.slow
def test_a_run_after_the_warm_up_compiles_nothing_more(tiny_config, tmp_path, monkeypatch):
    """A warm worker compiles the backbone as it starts (runner.warm_up); a run with the same weights
    and size then reuses it for its training batches and its validation (a second compile would
    cost a student tens of seconds before the first chart point)."""
    import torch._dynamo.utils

    monkeypatch.setenv("AVP_BACKBONE_ENGINE", "compiled")
    config = tiny_config.with_changes(framework="pytorch", image_size=64, precision="float32", epochs=1,
                                      out_dir=str(tmp_path))
    assert set(runner.warm_up(config)) == {"pytorch"}
    compiles = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    runner.train(config)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == compiles


def test_the_bank_keeps_the_engines_apart(tiny_config):
    class Arrays:
        x_train, x_val = np.zeros((4, 8, 8, 3), np.uint8), np.zeros((2, 8, 8, 3), np.uint8)

    store = bank.FeatureBank.__new__(bank.FeatureBank)
    keys = {engine: bank.RunViews(store, "pytorch", tiny_config, {"precision": "float32", "engine": engine},
                                  Arrays()).key("train", 0) for engine in NAMES["pytorch"].values()}
    assert len(set(keys.values())) == 3


def test_warm_up_compiles_only_a_compiled_engine(tiny_config, monkeypatch):
    monkeypatch.setenv("AVP_BACKBONE_ENGINE", "eager")
    assert {name: engine for name, (engine, _) in runner.warm_up(tiny_config).items()} == {
        "keras": "eager", "pytorch": "eager"}
    monkeypatch.setenv("AVP_BACKBONE_ENGINE", "compiled")
    ((engine, seconds),) = runner.warm_up(tiny_config.with_changes(framework="keras", precision="float32")).values()
    assert engine == "compiled" and seconds > 0


@pytest.fixture
def keras_race(monkeypatch):
    """Keras' race of XLA against tf.function, fresh, with the times `prepare` measures set by the test."""
    module = backend("keras")
    monkeypatch.setattr(module, "_raced", {})
    monkeypatch.setenv("AVP_BACKBONE_ENGINE", "auto")
    timed = {}
    monkeypatch.setattr(module, "_fastest_calls", lambda model, x, engines: {e: timed[e] for e in engines})
    return timed


def test_keras_takes_xla_only_for_the_settings_it_was_timed_faster_at(keras_race, tiny_config):
    """On an AVX2-only CPU XLA is 1.2x tf.function at 224 px; at 64 px it is 10x slower anywhere."""
    module, config = backend("keras"), tiny_config.with_changes(framework="keras", precision="float32")
    assert module.build_model(2, config)[1]["engine"] == "tf.function"  # nothing timed yet: no compile in a run
    keras_race.update(eager=1.0, compiled=0.8)
    assert module.prepare(config) == "compiled"
    assert module.build_model(2, config)[1]["engine"] == "XLA"
    assert module.build_model(2, config.with_changes(image_size=config.image_size * 2))[1]["engine"] == "tf.function"
    assert module.build_model(2, config.with_changes(unfreeze=1))[1]["engine"] == "tf.function"
    keras_race.update(eager=1.0, compiled=0.98)  # a tie keeps TensorFlow's own executor
    other = config.with_changes(batch_size=config.batch_size + 1)
    assert module.prepare(other) == "eager" and module.build_model(2, other)[1]["engine"] == "tf.function"


def test_keras_in_bfloat16_or_asked_for_tf_function_runs_no_race(keras_race, tiny_config, monkeypatch):
    module, config = backend("keras"), tiny_config.with_changes(framework="keras")
    assert module.prepare(config.with_changes(precision="bfloat16")) == "eager"  # keras_race is empty: not timed
    monkeypatch.setenv("AVP_BACKBONE_ENGINE", "eager")
    assert module.prepare(config.with_changes(precision="float32")) == "eager"


@pytest.mark.slow
def test_a_keras_run_after_the_warm_up_takes_the_engine_it_timed_faster(tiny_config, tmp_path, monkeypatch):
    """The real race (no times set by the test), then a run with the same settings."""
    monkeypatch.setattr(backend("keras"), "_raced", {})
    monkeypatch.setenv("AVP_BACKBONE_ENGINE", "auto")
    config = tiny_config.with_changes(framework="keras", image_size=64, precision="float32", epochs=1,
                                      out_dir=str(tmp_path))
    ((engine, _),) = runner.warm_up(config).values()
    events = []
    runner.train(config, events.append)
    assert [e["engine"] for e in events if e["type"] == "start"] == [NAMES["keras"][engine]]
