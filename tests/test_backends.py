"""Both backends, same tests: one surface, learning, stopping, saving, loading, weights, augmentation."""

import ast
import inspect
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from trainer import data, frameworks, loop, store, weights
from trainer.augment import AugmentConfig
from trainer.backend import Backend
from trainer.frameworks import backend

FRAMEWORKS = frameworks.NAMES
SURFACE = {name for name in vars(Backend) if not name.startswith("_")} | set(Backend.__annotations__)


def defined_public_names(module) -> set[str]:
    """The names a module defines at its top level (not those it imports) without a leading `_`."""
    names = set()
    for node in ast.parse(Path(module.__file__).read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(target.id for target in node.targets if isinstance(target, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return {name for name in names if not name.startswith("_")}


def parameters(function, skip_self=False) -> list[tuple]:
    """Names, kinds and defaults of a function's parameters (annotations name each framework's types)."""
    found = list(inspect.signature(function).parameters.values())[1 if skip_self else 0:]
    return [(p.name, p.kind, p.default) for p in found]


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_each_backend_offers_exactly_the_shared_surface(framework):
    module = backend(framework)
    assert "train" in SURFACE and "FRAMEWORK" in SURFACE  # the Protocol was read
    assert defined_public_names(module) == SURFACE
    assert isinstance(module, Backend) and module.FRAMEWORK == framework
    for name in sorted(SURFACE - set(Backend.__annotations__)):  # the functions (FRAMEWORK, ENGINES are data)
        assert parameters(getattr(module, name)) == parameters(getattr(Backend, name), skip_self=True), name


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_devices_and_preprocessing_have_one_meaning(framework):
    module = backend(framework)
    assert module.select_device("cpu") == "cpu" and module.select_device("auto") in ("cpu", "gpu")
    assert module.describe_device("cpu").startswith("CPU (")
    images = np.zeros((2, 8, 8, 3), np.uint8)
    view = module.network_view(images[0])
    assert isinstance(view, np.ndarray) and view.shape == (8, 8, 3)
    np.testing.assert_allclose(np.asarray(module.preprocess(images, "cpu")[0]).reshape(-1),
                               np.moveaxis(view, -1, 0 if framework == "pytorch" else -1).reshape(-1))


@pytest.fixture
def arrays(tiny_config):
    return data.load_dataset(data.discover(tiny_config.data_dir), tiny_config.image_size)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_loss_falls_on_a_learnable_task(framework, tiny_config, arrays):
    # A random-init backbone gives large, all-positive features: a 16-unit head at lr 1e-3 pushes
    # every ReLU negative within a few steps and stays at chance. 128 units at 3e-4 learn.
    config = tiny_config.with_changes(epochs=4, head_units=128, lr=3e-4)
    module = backend(framework)
    model, info = module.build_model(2, config)
    assert info["pretrained"] is False and "random initialisation" in info["warnings"][0]
    events = []
    result = module.train(model, arrays, config, events.append)
    losses = [h["train_loss"] for h in result["history"]]
    assert len(losses) == 4 and losses[-1] < losses[0] / 2
    batches = [e for e in events if e["type"] == "batch"]
    assert len(batches) == 4 * 3 and all(e["images_per_s"] > 0 and e["eta_s"] >= 0 for e in batches)
    assert [e["epoch"] for e in events if e["type"] == "epoch"] == [1, 2, 3, 4]
    probabilities = result["val_probabilities"]
    assert probabilities.shape == (6, 2) and np.allclose(probabilities.sum(1), 1, atol=1e-5)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_stop_takes_effect_within_one_batch(framework, tiny_config, arrays):
    config = tiny_config.with_changes(epochs=3)
    module = backend(framework)
    model, _ = module.build_model(2, config)
    events = []
    stop_after = 2
    should_stop = lambda: sum(e["type"] == "batch" for e in events) >= stop_after
    result = module.train(model, arrays, config, events.append, should_stop)
    assert result["stopped"] and result["history"] == []
    assert sum(e["type"] == "batch" for e in events) == stop_after
    assert events[-1]["type"] == "stopped"


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_feature_cache_trains_the_head(framework, tiny_config, arrays):
    config = tiny_config.with_changes(epochs=3, feature_cache=True, batch_size=4)
    module = backend(framework)
    model, _ = module.build_model(2, config)
    result = module.train(model, arrays, config)
    assert result["history"][-1]["train_loss"] < result["history"][0]["train_loss"]


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_save_then_load_gives_the_same_probabilities(framework, tiny_config, arrays, tmp_path):
    module = backend(framework)
    model, _ = module.build_model(2, tiny_config)
    module.train(model, arrays, tiny_config)
    before = module.predict_proba(model, arrays.x_val)
    metadata = {"classes": ["bright", "dark"], "config": tiny_config.to_dict()}
    folder = module.save(model, tmp_path / "models", metadata)
    assert store.find_models(tmp_path / "models") == {framework: folder}
    assert [p.name for p in (tmp_path / "models").iterdir()] == [framework]  # no staging left
    loaded, meta = module.load(folder)
    assert meta["classes"] == ["bright", "dark"]
    np.testing.assert_allclose(module.predict_proba(loaded, arrays.x_val), before, atol=1e-5)


def test_a_pytorch_model_saved_before_safetensors_still_predicts(tiny_config, arrays, tmp_path):
    """Reference models saved as model.pt (a state_dict) by earlier versions are found and loaded."""
    import torch
    module = backend("pytorch")
    model, _ = module.build_model(2, tiny_config)
    before = module.predict_proba(model, arrays.x_val)
    folder = module.save(model, tmp_path / "models", {"classes": ["bright", "dark"], "config": tiny_config.to_dict()})
    (folder / store.model_file("pytorch")).unlink()
    torch.save(model.state_dict(), folder / "model.pt")
    assert store.find_models(tmp_path / "models") == {"pytorch": folder}
    loaded, _ = module.load(folder)
    np.testing.assert_allclose(module.predict_proba(loaded, arrays.x_val), before, atol=1e-5)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_a_failed_save_keeps_the_previous_model(framework, tiny_config, tmp_path):
    module = backend(framework)
    model, _ = module.build_model(2, tiny_config)
    folder = module.save(model, tmp_path, {"classes": ["a", "b"], "config": tiny_config.to_dict(), "n": 1})

    def crash(path: Path):
        path.write_bytes(b"half a model")
        raise OSError("disk full")
    with pytest.raises(OSError):
        store.save_atomically(tmp_path, framework, crash, {"n": 2})
    assert store.read_metadata(folder)["n"] == 1
    module.load(folder)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_preseeded_weight_cache_loads_offline(framework, tiny_config, tmp_path, monkeypatch, no_network):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    path = weights.cache_path(framework)
    path.parent.mkdir(parents=True)
    seed_random_weights(framework, path, tiny_config.image_size)
    model, info = backend(framework).build_model(2, tiny_config.with_changes(weights="imagenet"))
    assert info["pretrained"] is True and info["warnings"] == []


def seed_random_weights(framework, path, size):
    """Random weights in the exact file each framework's loader looks for."""
    if framework == "pytorch":
        import torch
        import torchvision
        assert path.name == Path(torchvision.models.ResNet50_Weights.IMAGENET1K_V1.url).name
        torch.save(torchvision.models.resnet50().state_dict(), path)
    else:
        import h5py
        import keras
        from keras.src.legacy.saving import legacy_h5_format
        resnet = keras.applications.ResNet50(include_top=False, weights=None, input_shape=(size, size, 3))
        assert path.name == "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
        with h5py.File(path, "w") as file:
            legacy_h5_format.save_weights_to_hdf5_group(file, resnet)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_missing_weights_offline_fail_unless_random_init_allowed(framework, tiny_config, tmp_path, monkeypatch,
                                                                  no_network):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    module = backend(framework)
    with pytest.raises(weights.WeightsUnavailable, match="could not be loaded.*put .* at"):
        module.build_model(2, tiny_config.with_changes(weights="imagenet"))
    _, info = module.build_model(2, tiny_config.with_changes(weights="imagenet", allow_random_init=True))
    assert info["pretrained"] is False and len(info["warnings"]) == 1
    warning = info["warnings"][0]  # one plain line: no exception, no address, no remedy for another case
    assert "random initialisation, as allowed" in warning and not re.search(r"Error|http|--weights", warning)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_augmentation_previews_report_the_values_drawn(framework):
    image = np.zeros((48, 48, 3), np.uint8)
    image[:, :24] = 255  # a vertical edge: flips and shears move it
    aug = AugmentConfig(shear_deg=20, zoom_min=0.8, zoom_max=1.2, rotation_deg=10, shift=0.1)
    samples = backend(framework).augment_samples(image, aug, 6, seed=0)
    assert len(samples) == 6
    for out, drawn in samples:
        assert out.shape == image.shape and out.dtype == np.uint8
        assert abs(drawn["shear_deg"]) <= 20 and 0.8 <= drawn["zoom"] <= 1.2 and abs(drawn["rotation_deg"]) <= 10
        assert {"hflip", "shift_px"} <= set(drawn)
    assert len({out.tobytes() for out, _ in samples}) == 6
    again = backend(framework).augment_samples(image, aug, 6, seed=0)
    assert [d for _, d in again] == [d for _, d in samples]


def test_both_frameworks_preview_what_training_draws_and_agree():
    """The Augment tab's two columns draw training's values (view 0 of images 0..n-1), the same in
    both frameworks, and so give the same pixels (up to rounding and the fill's edge)."""
    from trainer import augment
    grid = np.random.default_rng(1).random((6, 8, 3)) * 255
    image = np.asarray(Image.fromarray(grid.astype(np.uint8)).resize((64, 48), Image.BILINEAR))
    aug = AugmentConfig(rotation_deg=15, shift=0.1)
    keras, torch = (backend(fw).augment_samples(image, aug, 4, seed=3) for fw in ("keras", "pytorch"))
    expected = [augment.describe(augment.draw(aug, 3, 0, range(4), 64, 48), i, aug) for i in range(4)]
    assert [d for _, d in keras] == [d for _, d in torch] == expected
    for (ours, _), (theirs, _) in zip(keras, torch):
        assert np.abs(ours.astype(int) - theirs.astype(int)).mean() < 2


@pytest.mark.parametrize("values", [
    dict(hflip=False, vflip=False, rotation_deg=30, shear_deg=0, zoom=1, shift_px=(0, 0)),
    dict(hflip=True, vflip=False, rotation_deg=20, shear_deg=10, zoom=0.8, shift_px=(4, 2)),
    dict(hflip=False, vflip=True, rotation_deg=-25, shear_deg=-12, zoom=1.2, shift_px=(-3, 5)),
], ids=["rotation", "flip-shear-zoom-out-shift", "vflip-zoom-in"])
def test_keras_affine_matches_torchvision_given_the_same_values(values):
    """The two frameworks' augmentations are one transform: same values, same pixels (away from
    the black fill's edge, where the two libraries blend the border differently)."""
    import tensorflow as tf
    import torch
    from torchvision.transforms.v2 import InterpolationMode, functional as F

    from trainer.keras_affine import RandomAffine
    grid = np.random.default_rng(0).random((1, 8, 10, 3)).astype(np.float32) * 255
    image = tf.image.resize(grid, (64, 80)).numpy()  # smooth, so a misplaced pixel shows
    drawn = {key: tf.constant([value]) for key, value in values.items()}
    ours = RandomAffine().transform_images(image, drawn).numpy()[0]
    theirs = torch.from_numpy(image[0]).permute(2, 0, 1)
    theirs = F.horizontal_flip(theirs) if values["hflip"] else theirs
    theirs = F.vertical_flip(theirs) if values["vflip"] else theirs
    theirs = F.affine(theirs, angle=values["rotation_deg"], translate=list(values["shift_px"]), scale=values["zoom"],
                      shear=[values["shear_deg"], 0.0], interpolation=InterpolationMode.BILINEAR, fill=0)
    theirs = theirs.permute(1, 2, 0).numpy()
    np.testing.assert_allclose(ours[20:-20, 24:-24], theirs[20:-20, 24:-24], atol=0.05)
    assert np.abs(ours - theirs).mean() < 1.5  # the fill's edge


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_network_view_uses_each_frameworks_normalisation(framework):
    from trainer.constants import CAFFE_MEAN_BGR, IMAGENET_MEAN, IMAGENET_STD
    image = np.zeros((4, 4, 3), np.uint8)
    image[..., 0] = 255  # pure red
    view = backend(framework).network_view(image)[0, 0]
    if framework == "keras":  # BGR, mean subtracted, 0-255 units
        np.testing.assert_allclose(view, [-CAFFE_MEAN_BGR[0], -CAFFE_MEAN_BGR[1], 255 - CAFFE_MEAN_BGR[2]], atol=1e-3)
    else:
        expected = [(v - m) / s for v, m, s in zip((1, 0, 0), IMAGENET_MEAN, IMAGENET_STD)]
        np.testing.assert_allclose(view, expected, atol=1e-5)


def test_training_loop_runs_every_epoch_with_the_default_sink_and_stop_flag():
    def train_batches(epoch):
        yield from [(1.0 / epoch, 4, 2, 0.0)] * 3

    result = loop.run_epochs("keras", 2, 12, 4, train_batches, lambda: (0.5, 0.75, None))
    assert not result["stopped"] and [h["epoch"] for h in result["history"]] == [1, 2]
    assert [h["train_loss"] for h in result["history"]] == [1.0, 0.5]


def backbone_weights(framework, model, stage):
    """A copy of one ResNet stage's first convolution weights (stage 1-4)."""
    if framework == "pytorch":
        return getattr(model, f"layer{stage}")[0].conv1.weight.detach().cpu().numpy().copy()
    base = model.get_layer("resnet50")
    return np.array(base.get_layer(f"conv{stage + 1}_block1_1_conv").kernel).copy()


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_unfreeze_trains_only_the_last_stages(framework, tiny_config, arrays):
    config = tiny_config.with_changes(unfreeze=1, fine_tune_lr=1e-3)
    module = backend(framework)
    model, _ = module.build_model(2, config)
    before = {stage: backbone_weights(framework, model, stage) for stage in (3, 4)}
    result = module.train(model, arrays, config)
    assert np.isfinite(result["history"][0]["train_loss"])
    assert np.array_equal(before[3], backbone_weights(framework, model, 3))  # still frozen
    assert not np.array_equal(before[4], backbone_weights(framework, model, 4))  # trained


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_gradcam_gives_one_map_per_image_at_its_resolution(framework, tiny_config):
    module = backend(framework)
    model, _ = module.build_model(2, tiny_config)
    images = np.random.default_rng(0).integers(0, 255, (3, 32, 32, 3), dtype=np.uint8)
    for class_index in (None, 0, 1):
        cams = module.gradcam(model, images, class_index)
        assert cams.shape == (3, 32, 32) and cams.dtype == np.float32
        assert cams.min() >= 0 and cams.max() <= 1 + 1e-6
    assert module.gradcam(model, images[:0]).shape == (0, 32, 32)
