"""The feature bank (trainer/bank.py): a run with a warm bank trains exactly as a run without it,
any change of a setting in the key misses it, a damaged entry is never trained on, and the bank
stays under its size cap."""

import numpy as np
import pytest

from trainer import frameworks, runner
from trainer.augment import AugmentConfig, draw
from trainer.bank import FeatureBank
from trainer.constants import FEATURE_DIM


def history(results: dict, framework: str) -> list[float]:
    """Per epoch: train loss, validation loss, validation accuracy, one after the other."""
    return [h[key] for h in results[framework]["history"] for key in ("train_loss", "val_loss", "val_accuracy")]


def bank_message(events: list[dict]) -> str:
    (event,) = [e for e in events if e["type"] == "bank"]
    return event["message"]


def run(config, bank, out):
    events = []
    results = runner.train(config.with_changes(out_dir=str(out)), events.append, bank=bank)
    return results, events


@pytest.fixture
def bank(tmp_path):
    return FeatureBank(tmp_path / "bank", 2**30)


def test_view_e_of_image_i_is_the_same_whatever_the_batch():
    aug = AugmentConfig(rotation_deg=10, shift=0.1)
    together = draw(aug, 7, 2, [0, 1, 2, 3], 64, 64)
    apart = draw(aug, 7, 2, [3, 1], 64, 64)
    for key in together:
        np.testing.assert_array_equal(apart[key], together[key][[3, 1]])
    assert not np.array_equal(draw(aug, 7, 3, [0], 64, 64)["zoom"], together["zoom"][:1])  # another view


@pytest.mark.parametrize("framework", frameworks.NAMES)
def test_a_warm_bank_trains_exactly_as_without_it(framework, tiny_config, bank, tmp_path):
    config = tiny_config.with_changes(framework=framework, epochs=3)
    without, _ = run(config, None, tmp_path / "a")
    cold, cold_events = run(config, bank, tmp_path / "b")
    warm, warm_events = run(config, bank, tmp_path / "c")
    assert bank_message(cold_events).startswith("augmented features computed fresh (the first run with these")
    assert bank_message(warm_events) == ("augmented features of all 3 epochs from the feature bank; "
                                         "validation features from the bank")
    assert len(history(warm, framework)) == 9
    assert history(warm, framework) == pytest.approx(history(without, framework), rel=1e-4, abs=1e-5)
    assert history(cold, framework) == pytest.approx(history(without, framework), rel=1e-4, abs=1e-5)


@pytest.mark.parametrize("change", [{"seed": 43}, {"augment": AugmentConfig(shear_deg=5)}, {"image_size": 40}],
                         ids=["seed", "augmentation", "image size"])
def test_a_changed_setting_in_the_key_misses_the_bank(change, tiny_config, bank, tmp_path):
    config = tiny_config.with_changes(framework="pytorch", epochs=2)
    run(config, bank, tmp_path / "a")
    _, events = run(config.with_changes(**change), bank, tmp_path / "b")
    assert bank_message(events).startswith("augmented features computed fresh")


def test_a_damaged_entry_is_ignored_and_written_again(tiny_config, bank, tmp_path):
    config = tiny_config.with_changes(framework="pytorch", epochs=2)
    clean, _ = run(config, None, tmp_path / "a")
    run(config, bank, tmp_path / "b")
    entries = sorted(bank.root.glob("*.npz"))
    assert len(entries) == 3  # two views of the training set, one of the validation set
    entries[0].write_bytes(entries[0].read_bytes()[:200])  # cut off, as by a crash
    for entry in entries[1:]:
        raw = bytearray(entry.read_bytes())
        raw[-len(raw) // 3] ^= 0xFF  # one flipped byte in the array
        entry.write_bytes(bytes(raw))
    (bank.root / "leftover.tmp").write_bytes(b"half")  # a write that never got renamed: no entry
    again, events = run(config, bank, tmp_path / "c")
    assert bank_message(events) == ("augmented features computed fresh (the first run with these settings), "
                                    "now in the feature bank; validation features computed, now in the bank")
    assert history(again, "pytorch") == pytest.approx(history(clean, "pytorch"), rel=1e-4, abs=1e-5)
    _, events = run(config, bank, tmp_path / "d")  # written again, intact
    assert bank_message(events).startswith("augmented features of all 2 epochs from the feature bank")


def test_unfreezing_bypasses_the_bank_and_says_so(tiny_config, bank, tmp_path):
    _, events = run(tiny_config.with_changes(framework="pytorch", unfreeze=1), bank, tmp_path / "a")
    assert "feature bank not used: unfreezing 1 stage(s)" in bank_message(events)
    assert not list(bank.root.glob("*.npz"))


def test_the_bank_evicts_the_least_recently_used_past_its_cap(tmp_path):
    features = np.zeros((100, FEATURE_DIM), np.float32)
    size = 100 * FEATURE_DIM * 4
    bank = FeatureBank(tmp_path / "bank", int(size * 2.5))
    for key in ("a", "b"):
        bank.put(key, features)
    assert bank.get("a", 100) is not None  # a is now the most recently used
    bank.put("c", features)
    assert sorted(p.stem for p in bank.root.glob("*.npz")) == ["a", "c"]
    assert bank.get("c", 99) is None and not (bank.root / "c.npz").exists()  # wrong shape: not trusted


def test_whole_numbers_and_floats_of_the_same_augmentation_share_a_key(tiny_config, bank):
    """The page's sliders send 10, the defaults and the API 10.0: the same augmentation, one entry."""
    from types import SimpleNamespace

    from trainer.config import TrainConfig
    arrays = SimpleNamespace(x_train=np.zeros((4, 8, 8, 3), np.uint8), x_val=np.ones((2, 8, 8, 3), np.uint8))
    info = {"library": "x", "weights_id": "random:seed=42", "precision": "float32", "engine": "eager"}
    as_given = {"shear_deg": 10, "zoom_min": 1, "zoom_max": 2, "rotation_deg": 0, "shift": 0}
    ints = TrainConfig.from_dict({**tiny_config.to_dict(), "augment": as_given})
    floats = TrainConfig.from_dict({**tiny_config.to_dict(),
                                    "augment": {k: float(v) for k, v in as_given.items()}})
    key = lambda config, view: bank.for_run("pytorch", config, info, arrays).key("train", view)  # noqa: E731
    assert key(ints, 0) == key(floats, 0) and key(ints, 1) == key(floats, 1)
    assert key(ints, 0) != key(floats.with_changes(augment=AugmentConfig(shear_deg=10.5)), 0)
