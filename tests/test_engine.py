"""The frozen backbone's engine (AVP_BACKBONE_ENGINE; trainer/config.py `backbone_engine`): the
compiled backbone (torch.compile with frozen weights, XLA) and PyTorch's backbone exported to ONNX
Runtime compute what the framework's own forward pass computes, to float32's rounding, whatever the
batch; a run says which engine computed its features, and the feature bank keeps the engines apart."""

import numpy as np
import pytest

from trainer import bank, config as config_module, frameworks, onnx_engine, runner
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


def test_the_engine_follows_the_setting(monkeypatch):
    torch_like = {"offered": ("eager", "compiled", "onnxruntime"), "prefers": ("onnxruntime", "compiled")}
    keras_like = {"offered": ("eager", "compiled"), "prefers": ()}
    monkeypatch.setenv("AVP_BACKBONE_ENGINE", "auto")
    assert backbone_engine(**torch_like, on_gpu=False, frozen=True) == "onnxruntime"
    assert backbone_engine(("eager", "compiled"), ("onnxruntime", "compiled"), False, True) == "compiled"
    assert backbone_engine(**keras_like, on_gpu=False, frozen=True) == "eager"  # nothing raced: its own pass
    assert backbone_engine(**torch_like, on_gpu=True, frozen=True) == "eager"
    assert backbone_engine(**torch_like, on_gpu=False, frozen=False) == "eager"  # unfrozen stages
    monkeypatch.setenv("AVP_BACKBONE_ENGINE", "compiled")
    assert backbone_engine(**keras_like, on_gpu=False, frozen=True) == "compiled"
    assert backbone_engine(**torch_like, on_gpu=False, frozen=False) == "eager"
    monkeypatch.setenv("AVP_BACKBONE_ENGINE", "onnxruntime")
    assert backbone_engine(**keras_like, on_gpu=False, frozen=True) == "eager"  # not Keras'
    monkeypatch.setenv("AVP_BACKBONE_ENGINE", "eager")
    assert backbone_engine(**torch_like, on_gpu=False, frozen=True) == "eager"
    monkeypatch.setenv("AVP_BACKBONE_ENGINE", "fast")
    with pytest.raises(ValueError, match="AVP_BACKBONE_ENGINE must be one of auto, eager, compiled, onnxruntime"):
        backbone_engine(**torch_like, on_gpu=False, frozen=True)


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
def race(monkeypatch):
    """Both backends' races of their compiler against their own pass, fresh, with the times `prepare`
    measures set by the test (engine -> seconds a call)."""
    for framework in frameworks.NAMES:
        monkeypatch.setattr(backend(framework), "_raced", {})
    monkeypatch.setenv("AVP_BACKBONE_ENGINE", "auto")
    timed = {}
    monkeypatch.setattr(config_module, "fastest_calls", lambda calls: {engine: timed[engine] for engine in calls})
    return timed


def test_keras_takes_xla_only_for_the_settings_it_was_timed_faster_at(race, tiny_config):
    """On an AVX2-only CPU XLA is 1.2x tf.function at 224 px; at 64 px it is 10x slower anywhere."""
    module, config = backend("keras"), tiny_config.with_changes(framework="keras", precision="float32")
    assert module.build_model(2, config)[1]["engine"] == "tf.function"  # nothing timed yet: no compile in a run
    race.update(eager=1.0, compiled=0.8)
    assert module.prepare(config) == "compiled"
    assert module.build_model(2, config)[1]["engine"] == "XLA"
    assert module.build_model(2, config.with_changes(image_size=config.image_size * 2))[1]["engine"] == "tf.function"
    assert module.build_model(2, config.with_changes(unfreeze=1))[1]["engine"] == "tf.function"
    assert module.build_model(2, config.with_changes(precision="bfloat16"))[1]["engine"] == "tf.function"
    race.update(eager=1.0, compiled=0.98)  # a tie keeps TensorFlow's own executor
    other = config.with_changes(batch_size=config.batch_size + 1)
    assert module.prepare(other) == "eager" and module.build_model(2, other)[1]["engine"] == "tf.function"


@pytest.mark.parametrize("framework", frameworks.NAMES)
def test_in_bfloat16_each_framework_takes_its_compiler_only_where_it_was_timed_faster(framework, race, tiny_config):
    """bfloat16 on an avx512_bf16 EPYC: torch.compile 1.8x eager, XLA 0.7x tf.function."""
    module, config = backend(framework), tiny_config.with_changes(framework=framework, precision="bfloat16")
    assert module.build_model(2, config)[1]["engine"] == NAMES[framework]["eager"]
    race.update(eager=1.0, compiled=0.55)
    assert module.prepare(config) == "compiled"
    assert module.build_model(2, config)[1]["engine"] == NAMES[framework]["compiled"]
    race.update(eager=1.0, compiled=1.4)
    other = config.with_changes(image_size=config.image_size * 2)
    assert module.prepare(other) == "eager" and module.build_model(2, other)[1]["engine"] == NAMES[framework]["eager"]


def test_pytorch_in_float32_takes_onnx_runtime_without_a_race(race, tiny_config):
    """ONNX Runtime is the fastest PyTorch engine on every CPU measured: nothing is timed (race is
    empty: a timing would fail), and the warm worker exports it."""
    module = backend("pytorch")
    config = tiny_config.with_changes(framework="pytorch", precision="float32", image_size=64)
    assert module.build_model(2, config)[1]["engine"] == "ONNX Runtime"
    assert module.prepare(config) == "onnxruntime"


def test_asked_for_their_own_pass_the_frameworks_run_no_race(race, tiny_config, monkeypatch):
    monkeypatch.setenv("AVP_BACKBONE_ENGINE", "eager")
    for framework in frameworks.NAMES:
        for precision in ("float32", "bfloat16"):  # race is empty: a timing would fail
            assert backend(framework).prepare(tiny_config.with_changes(precision=precision)) == "eager"


@pytest.mark.slow
@pytest.mark.parametrize(("framework", "precision"), [("keras", "float32"), ("keras", "bfloat16"),
                                                     ("pytorch", "bfloat16")])
def test_a_run_after_the_warm_up_takes_the_engine_it_timed_faster(framework, precision, tiny_config, tmp_path,
                                                                  monkeypatch):
    """The real race (no times set by the test), then a run with the same settings; both engines
    compute the same features to the precision's rounding (the bench's check)."""
    from trainer.bench import SAME_FEATURES

    module = backend(framework)
    monkeypatch.setattr(module, "_raced", {})
    monkeypatch.setenv("AVP_BACKBONE_ENGINE", "auto")
    config = tiny_config.with_changes(framework=framework, image_size=64, precision=precision, epochs=1,
                                      out_dir=str(tmp_path))
    ((engine, _),) = runner.warm_up(config).values()
    assert set(module._raced.values()) == {engine}  # timed, not taken by a fixed preference
    events = []
    runner.train(config, events.append)
    assert [e["engine"] for e in events if e["type"] == "start"] == [NAMES[framework][engine]]
    model, _ = module.build_model(2, config)
    x = module.preprocess(np.random.default_rng(0).integers(0, 255, (config.batch_size, 64, 64, 3), np.uint8))
    rtol, atol = SAME_FEATURES[precision]
    theirs = np.asarray(module.backbone(model, "eager")(x), np.float32)
    for engine in ("compiled", "eager"):
        ours = np.asarray(module.backbone(model, engine)(x), np.float32)
        np.testing.assert_allclose(ours, theirs, rtol=rtol, atol=atol * np.abs(theirs).max())
