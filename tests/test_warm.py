"""The warm-up (trainer/warm.py): the reference models written all at once, the feature bank filled so
that the next run at the same settings takes its features from it, random initialisation only when
allowed, and a warm-up that does not finish leaves the previous reference models as they were."""

import json
import time

import pytest

from trainer import runner, store, warm, weights
from trainer.augment import AugmentConfig
from trainer.bank import FeatureBank
from trainer.config import TrainConfig


def bank_messages(events: list[dict]) -> dict[str, str]:
    return {e["framework"]: e["message"] for e in events if e["type"] == "bank"}


@pytest.fixture
def bank(tmp_path):
    return FeatureBank(tmp_path / "bank", 2**30)


@pytest.fixture
def offline(no_network, monkeypatch, tmp_path):
    """No ImageNet weights to be had: empty caches, no network."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras-home"))
    weights.reachable.cache_clear()
    yield
    weights.reachable.cache_clear()


def test_a_warm_up_writes_both_reference_models_and_the_next_run_reads_the_bank(tiny_config, bank, tmp_path):
    models = tmp_path / "reference"
    config = tiny_config.with_changes(framework="pytorch", epochs=2, out_dir=str(models), allow_random_init=True)
    events = []
    outcome = warm.warm(config, events.append, bank=bank)

    assert set(outcome["installed"]) == {"keras", "pytorch"}  # both, whatever the settings named
    assert outcome["random_init"] == ["pytorch", "keras"]
    assert any(e["type"] == "warning" and "randomly initialised" in e["message"] for e in events)
    found = store.find_models(models)
    assert set(found) == {"keras", "pytorch"}
    for folder in found.values():
        metadata = store.read_metadata(folder)
        assert metadata["warm_up"] is True and metadata["pretrained"] is False
        assert metadata["config"]["out_dir"] == str(models) and len(metadata["history"]) == 2
    assert sorted(p.name for p in models.iterdir()) == ["keras", "pytorch"]  # no staging folder left
    assert len(list(bank.root.glob("*.npz"))) == 6  # per framework: 2 views of the training set, 1 validation
    assert all(m.startswith("augmented features computed fresh") for m in bank_messages(events).values())

    # A student's run at the same settings, the augmentation as the page's sliders send it (whole numbers).
    student = TrainConfig.from_dict({**config.to_dict(), "framework": "both", "out_dir": str(tmp_path / "student"),
                                     "augment": {**AugmentConfig().to_dict(), "shear_deg": 10, "rotation_deg": 0,
                                                 "shift": 0}})
    assert isinstance(student.augment.shear_deg, int)
    student_events = []
    started = time.perf_counter()
    runner.train(student, student_events.append, bank=bank)
    seconds = time.perf_counter() - started
    assert bank_messages(student_events) == {
        fw: "augmented features of all 2 epochs from the feature bank; validation features from the bank"
        for fw in ("pytorch", "keras")}
    print(f"\nthe run after a warm-up: {seconds:.1f} s (tiny settings, both frameworks, every feature from the bank)")


def test_without_imagenet_weights_a_warm_up_needs_the_tick(tiny_config, offline, tmp_path):
    models = tmp_path / "reference"
    config = tiny_config.with_changes(weights="imagenet", out_dir=str(models))
    with pytest.raises(weights.WeightsUnavailable, match="--allow-random-init"):
        warm.warm(config)
    with pytest.raises(weights.WeightsUnavailable, match="random initialisation: allow it explicitly"):
        warm.prepare(config.with_changes(weights="none"))
    assert not models.exists()  # refused before anything was written
    prepared, random_init = warm.prepare(config.with_changes(allow_random_init=True))
    assert prepared.weights == "none" and random_init == ["pytorch", "keras"]  # no download is tried


def test_a_warm_up_that_does_not_finish_leaves_the_reference_models(tiny_config, bank, tmp_path):
    models = tmp_path / "reference"
    old = {}
    for framework in ("keras", "pytorch"):  # the reference models of before
        folder = models / framework
        folder.mkdir(parents=True)
        (folder / store.model_file(framework)).write_bytes(b"previous model")
        (folder / store.METADATA).write_text(json.dumps({"framework": framework, "trained_at": "before"}))
        old[framework] = (folder / store.METADATA).read_text()
    stop = []
    config = tiny_config.with_changes(out_dir=str(models), allow_random_init=True, epochs=2)
    keras_starts = lambda e: stop.append(1) if e["type"] == "start" and e["framework"] == "keras" else None
    outcome = warm.warm(config, keras_starts, should_stop=lambda: bool(stop), bank=bank)  # PyTorch trained, Keras not
    assert outcome["installed"] == {}
    assert outcome["results"]["pytorch"]["stopped"] is False and outcome["results"]["keras"]["stopped"] is True
    assert {fw: (models / fw / store.METADATA).read_text() for fw in old} == old
    assert sorted(p.name for p in models.iterdir()) == ["keras", "pytorch"]


def test_install_refuses_an_incomplete_model_before_changing_anything(tmp_path):
    models = tmp_path / "reference"
    (models / "pytorch").mkdir(parents=True)
    (models / "pytorch" / store.METADATA).write_text("{}")
    (models / "pytorch" / store.model_file("pytorch")).write_bytes(b"kept")
    staged = tmp_path / "staged"
    (staged / "pytorch").mkdir(parents=True)
    (staged / "pytorch" / store.model_file("pytorch")).write_bytes(b"new")  # no metadata.json: not complete
    with pytest.raises(ValueError, match="pytorch"):
        store.install({"pytorch": staged / "pytorch"}, models)
    assert (models / "pytorch" / store.model_file("pytorch")).read_bytes() == b"kept"
    (staged / "pytorch" / store.METADATA).write_text("{}")
    store.install({"pytorch": staged / "pytorch"}, models)
    assert (models / "pytorch" / store.model_file("pytorch")).read_bytes() == b"new"
    assert sorted(p.name for p in models.iterdir()) == ["pytorch"]
