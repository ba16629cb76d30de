"""The real Alien vs. Predator images (../shared/data/avp), when present."""

import numpy as np
import pytest

from conftest import AVP, needs_avp
from trainer import data, runner
from trainer.config import TrainConfig

pytestmark = [pytest.mark.slow, needs_avp()]
PNG_NAMED_JPG = ["train/alien/192.jpg", "validation/alien/18.jpg", "validation/alien/20.jpg",
                 "validation/alien/93.jpg", "validation/predator/53.jpg"]


def test_discovery_finds_and_decodes_all_894_images():
    found = data.discover(AVP)
    assert found.classes == ["alien", "predator"]
    assert found.counts("train") == {"alien": 347, "predator": 347}
    assert found.counts("val") == {"alien": 100, "predator": 100}
    assert not found.skipped
    arrays = data.load_dataset(found, size=64)
    assert arrays.x_train.shape == (694, 64, 64, 3) and arrays.x_val.shape == (200, 64, 64, 3)
    assert arrays.x_train.std() > 10  # real pictures, not blanks


@pytest.mark.parametrize("name", PNG_NAMED_JPG)
def test_pngs_named_jpg_decode(name):
    assert (AVP / name).read_bytes()[:4] == b"\x89PNG"
    assert data.load_rgb(AVP / name).mode == "RGB"


@pytest.mark.parametrize("framework", ["keras", "pytorch"])
def test_one_short_epoch_on_a_limited_subset(framework, tmp_path):
    config = TrainConfig(framework=framework, data_dir=str(AVP), out_dir=str(tmp_path), epochs=1,
                         image_size=64, limit=32, batch_size=16, weights="none")
    events = []
    results = runner.train(config, events.append)
    summary = results[framework]
    assert summary["train_images"] == 32 and summary["val_images"] == 32
    assert np.isfinite(summary["history"][0]["train_loss"])
    assert np.array(summary["confusion"]).sum() == 32
    assert (tmp_path / framework / "metadata.json").is_file()
    assert [e["type"] for e in events if e["type"] in ("start", "end")] == ["start", "end"]
