"""Settings: defaults are the seed recipe, bad values are refused by name, JSON round-trips."""

import pytest

from trainer.augment import AugmentConfig
from trainer.config import TrainConfig


def test_defaults_are_the_seed_recipe():
    config, aug = TrainConfig(), TrainConfig().augment
    assert (config.epochs, config.batch_size, config.lr, config.image_size) == (3, 32, 1e-3, 224)
    assert config.head_units == 128
    assert (aug.shear_deg, aug.zoom_min, aug.zoom_max, aug.hflip) == (10, 0.8, 1.2, True)
    assert config.weights == "imagenet" and config.unfreeze == 0


def test_data_dir_defaults_to_env(monkeypatch):
    monkeypatch.setenv("AVP_DATA_DIR", "/somewhere/avp")
    assert TrainConfig().data_dir == "/somewhere/avp"
    monkeypatch.delenv("AVP_DATA_DIR")
    assert TrainConfig().data_dir == "data"


@pytest.mark.parametrize("change, words", [
    ({"epochs": 0}, "epochs"), ({"image_size": 16}, "image_size"), ({"lr": 2.0}, "lr"),
    ({"framework": "jax"}, "framework"), ({"weights": "/no/such/file.pt"}, "weights"),
    ({"unfreeze": 5}, "unfreeze"), ({"augment": AugmentConfig(zoom_min=1.5, zoom_max=1.2)}, "zoom"),
    ({"feature_cache": True, "unfreeze": 1}, "feature_cache"), ({"device": "tpu"}, "device"),
])
def test_bad_settings_are_refused_by_name(change, words):
    with pytest.raises(ValueError, match=words):
        TrainConfig(**change).validate()


def test_every_problem_is_listed_at_once():
    with pytest.raises(ValueError) as error:
        TrainConfig(epochs=0, batch_size=0).validate()
    assert "epochs" in str(error.value) and "batch_size" in str(error.value)


def test_json_round_trip():
    config = TrainConfig(epochs=5, augment=AugmentConfig(rotation_deg=15, vflip=True))
    assert TrainConfig.from_json(config.to_json()) == config
    with pytest.raises(ValueError, match="unknown training settings: colour"):
        TrainConfig.from_dict({"colour": "red"})


def test_feature_cache_turns_augmentation_off():
    assert TrainConfig().augment_active
    assert not TrainConfig(feature_cache=True).augment_active
    assert not TrainConfig(augment=AugmentConfig(enabled=False)).augment_active
