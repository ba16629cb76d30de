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


def test_the_command_lines_flags_fill_the_same_settings():
    from trainer.cli import build_parser, config_from_args
    parse = lambda *flags: config_from_args(build_parser().parse_args(["train", "--data", "d", *flags]))
    assert parse() == TrainConfig(data_dir="d")
    changed = parse("--epochs", "2", "--lr", "0.01", "--shear", "5", "--zoom", "0.9", "1.1", "--rotation", "30",
                    "--shift", "0.1", "--no-hflip", "--vflip", "--feature-cache")
    assert changed == TrainConfig(data_dir="d", epochs=2, lr=0.01, feature_cache=True, augment=AugmentConfig(
        shear_deg=5, zoom_min=0.9, zoom_max=1.1, rotation_deg=30, shift=0.1, hflip=False, vflip=True))
    assert parse("--no-augment").augment == AugmentConfig(enabled=False)


def test_every_setting_has_its_help_beside_it():
    from dataclasses import fields

    from trainer import augment, config
    assert set(config.HELP) == {f.name for f in fields(TrainConfig)} - {"augment"}
    assert set(augment.HELP) == {f.name for f in fields(AugmentConfig)}
