"""Data rules: layouts, class checks, decoding by content, skipping with names, limits."""

import io
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import make_dataset
from trainer import data


def test_train_validation_layout(dataset):
    found = data.discover(dataset)
    assert found.classes == ["bright", "dark"]
    assert found.counts("train") == {"bright": 6, "dark": 6}
    assert found.counts("val") == {"bright": 3, "dark": 3}
    assert not found.skipped and not found.notes


@pytest.mark.parametrize("name", ["val", "valid", "Validation"])
def test_other_validation_names(tmp_path, name):
    root = make_dataset(tmp_path, splits=("train", name))
    assert len(data.discover(root).val) == 6


def test_bare_class_folders_are_split_80_20_by_seed(tmp_path):
    root = make_dataset(tmp_path, per_class=(10,), splits=())
    found = data.discover(root, seed=1)
    assert found.counts("train") == {"bright": 8, "dark": 8}
    assert found.counts("val") == {"bright": 2, "dark": 2}
    assert "20%" in found.notes[0]
    again, other = data.discover(root, seed=1), data.discover(root, seed=2)
    assert [s.path for s in again.val] == [s.path for s in found.val]
    assert [s.path for s in other.val] != [s.path for s in found.val]


def test_missing_validation_split_is_made(tmp_path):
    root = make_dataset(tmp_path, per_class=(10,), splits=("train",))
    found = data.discover(root)
    assert len(found.val) == 4 and "no validation folder" in found.notes[0]


def test_one_wrapping_folder_is_looked_into(tmp_path):
    make_dataset(tmp_path / "avp")
    assert data.discover(tmp_path).root == tmp_path / "avp"


def test_missing_folder_says_what_to_do(tmp_path):
    with pytest.raises(data.DataError, match="does not exist.*fetch-data"):
        data.discover(tmp_path / "nothing")


def test_single_class_is_refused(tmp_path):
    root = make_dataset(tmp_path, classes=("only",))
    with pytest.raises(data.DataError, match="need at least 2"):
        data.discover(root)


def test_validation_classes_must_match(tmp_path):
    root = make_dataset(tmp_path)
    (root / "validation" / "dark").rename(root / "validation" / "darker")
    with pytest.raises(data.DataError, match="only in train: dark; only in validation: darker"):
        data.discover(root)


def test_class_without_decodable_image_is_refused(tmp_path):
    root = make_dataset(tmp_path)
    for path in (root / "train" / "dark").iterdir():
        path.write_bytes(b"not an image")
    with pytest.raises(data.DataError, match="class 'dark' has no decodable image in the train split"):
        data.discover(root)


def test_unreadable_files_are_skipped_and_named_relative_to_the_data_set(tmp_path):
    root = make_dataset(tmp_path)
    (root / "train" / "dark" / "notes.txt").write_text("hello")
    (root / "train" / "dark" / "cut.jpg").write_bytes((root / "train" / "dark" / "0.jpg").read_bytes()[:200])
    (root / "train" / "dark" / ".DS_Store").write_bytes(b"\0\0")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a library returns what went wrong; it does not warn
        found = data.discover(root)
    assert sorted(str(p) for p, _ in found.skipped) == ["train/dark/cut.jpg", "train/dark/notes.txt"]
    assert [why.split(" (")[0] for _, why in found.skipped] == [
        "damaged or unsupported image", "not an image, or a format Pillow cannot read"]
    assert found.counts("train")["dark"] == 6
    summary = found.summary()
    assert "train/dark/notes.txt: not an image" in summary and "skipped 2" in summary
    assert str(tmp_path) not in summary.split("\n", 1)[1]  # only the first line names the folder


def test_load_data_reports_skipped_files_without_server_paths(tiny_config):
    from trainer import runner
    (Path(tiny_config.data_dir) / "validation" / "dark" / "notes.txt").write_text("hello")
    events = []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        runner.load_data(tiny_config, events.append)
    messages = [e["message"] for e in events if e["type"] == "warning"]
    assert messages[0].startswith("skipped validation/dark/notes.txt: not an image")
    assert not any(tiny_config.data_dir in m for m in messages)


def encoded(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


RED = Image.new("RGB", (8, 6), (255, 0, 0))


@pytest.mark.parametrize("payload", [
    encoded(RED, "PNG"), encoded(RED.convert("P"), "PNG"), encoded(RED.convert("RGBA"), "PNG"),
    encoded(RED, "WEBP", lossless=True), encoded(RED, "BMP"), encoded(RED.convert("P"), "GIF"),
    encoded(RED.convert("CMYK"), "JPEG", quality=100),
], ids=["png", "palette", "rgba", "webp", "bmp", "gif", "cmyk-jpeg"])
def test_formats_decode_to_rgb_by_content(payload):
    image = data.load_rgb(payload, "x.jpg")  # the extension does not matter
    assert image.mode == "RGB" and image.size == (8, 6)
    red, green, blue = image.getpixel((3, 3))
    assert red > 200 and green < 60 and blue < 60


def test_grayscale_16_bit_keeps_its_range():
    values = np.full((4, 4), 60000, dtype=np.uint16)
    values[0, 0] = 0
    image = data.load_rgb(encoded(Image.fromarray(values), "PNG"))
    assert image.getpixel((2, 2))[0] > 200 and image.getpixel((0, 0))[0] == 0


def test_transparency_becomes_white():
    clear = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    assert data.load_rgb(encoded(clear, "PNG")).getpixel((1, 1)) == (255, 255, 255)


def test_exif_orientation_is_applied():
    wide = Image.new("RGB", (20, 10), (0, 0, 255))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    assert data.load_rgb(encoded(wide, "JPEG", exif=exif)).size == (10, 20)


@pytest.mark.parametrize("payload, words", [
    (b"", "empty file"), (b"<html><body>hi</body></html>", "not an image"),
    (encoded(Image.effect_noise((64, 64), 50).convert("RGB"), "JPEG")[:900],
     r"damaged or unsupported image \(image file is truncated"),
])
def test_bad_images_are_refused_by_name(payload, words):
    with pytest.raises(data.ImageError, match=f"upload.png: {words}"):
        data.load_rgb(payload, "upload.png")


def debian_style_xpm() -> bytes:
    """Like Debian's /usr/share/pixmaps/python3.xpm: over 256 colours, one of them transparent."""
    keys = ["  "] + [a + b for a in "abcdefghijklmnopq" for b in "abcdefghijklmnopq"][:256]
    colours = ['"  \tc None",'] + [f'"{k}\tc #{i:06X}",' for i, k in enumerate(keys[1:])]
    return "\n".join(["/* XPM */", "static char * icon_xpm[] = {", '"3 1 257 2",', *colours,
                      '"    ab"};']).encode()


@pytest.mark.parametrize("payload", [
    debian_style_xpm(),  # Pillow: KeyError
    b"qoif\0\0\0\x10\0\0\0\x0c\x03\x01\xfe\x877\xcaN\x9c",  # Pillow: IndexError
    b"BLP2\x01\0\x7f\0\x01\0\0\0\x10\0\0\0\x0c\0\0\0" + bytes(1344),  # Pillow: BLPFormatError
], ids=["xpm-keyerror", "qoi-indexerror", "blp-notimplemented"])
def test_any_decoder_failure_is_refused_by_name(payload):
    with pytest.raises(data.ImageError, match=r"^icon.png: damaged or unsupported image \(the \w+ decoder"):
        data.load_rgb(payload, "icon.png")


def test_messages_name_the_file_not_its_folder(tmp_path):
    for content in (b"", b"text", debian_style_xpm(), encoded(RED, "JPEG")[:300]):
        (tmp_path / "cut.jpg").write_bytes(content)
        with pytest.raises(data.ImageError, match="^cut.jpg: ") as error:
            data.load_rgb(tmp_path / "cut.jpg")
        assert str(tmp_path) not in str(error.value)
    with pytest.raises(data.ImageError, match="^gone.jpg: no such file$"):
        data.load_rgb(str(tmp_path / "gone.jpg"))


def test_decompression_bomb_is_refused():
    bomb = encoded(Image.new("1", (10_000, 10_000)), "PNG")  # 10 kB declaring 100 megapixels
    assert len(bomb) < 100_000
    with pytest.raises(data.ImageError, match="bomb.png: declares 10000x10000 pixels"):
        data.load_rgb(bomb, "bomb.png")


def test_pixel_budget_is_shared_by_the_images_of_a_request():
    budget = data.PixelBudget(1000, "this prediction")
    data.load_rgb(encoded(Image.new("RGB", (20, 30)), "PNG"), "a.png", budget=budget)
    with pytest.raises(data.BudgetError, match="^b.png: brings the pixels to decode to 1,200, "
                                               "more than the 1,000 allowed for this prediction"):
        data.load_rgb(encoded(Image.new("RGB", (20, 30)), "PNG"), "b.png", budget=budget)
    assert issubclass(data.BudgetError, data.ImageError)


def smooth(width: int, height: int) -> Image.Image:
    """A photo-like image: gradients and a disc, so that scaled decoding can be compared."""
    y, x = np.mgrid[0:height, 0:width] / max(width, height)
    disc = ((x - 0.5) ** 2 + (y - 0.4) ** 2 < 0.05) * 120
    return Image.fromarray(np.stack([x * 255, y * 255, disc + 60], -1).astype(np.uint8))


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_large_images_decode_only_what_the_caller_needs(fmt):
    payload = encoded(smooth(2400, 1800), fmt)
    full, scaled = data.load_rgb(payload), data.load_rgb(payload, max_side=224)
    assert full.size == (2400, 1800) and 448 <= min(scaled.size) and max(scaled.size) <= 1200
    assert data.load_rgb(payload, max_side=data.CHECK_SIDE).size <= (300, 225)  # checks are cheap
    difference = np.abs(data.to_array(full, 224).astype(int) - data.to_array(scaled, 224)).mean()
    assert difference < 0.5  # gray levels of 255, on average


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_images_under_4x_the_size_needed_decode_exactly_as_before(fmt):
    payload = encoded(smooth(890, 600), fmt)
    assert np.array_equal(data.load_array(payload, 224), data.to_array(data.load_rgb(payload), 224))


def test_a_data_set_declaring_too_many_pixels_is_refused(tmp_path):
    root = make_dataset(tmp_path)  # 18 images of 40x40: 28,800 pixels
    assert data.discover(root, max_pixels=28_800)
    with pytest.raises(data.DataError, match=r"^validation/bright/0.jpg: brings the pixels to decode to "
                                             "20,800, more than the 20,000 allowed for one data set"):
        data.discover(root, max_pixels=20_000)


def test_one_bit_images_are_reduced_before_conversion():
    payload = encoded(Image.new("1", (2000, 1000), 1), "PNG")
    assert data.load_rgb(payload, max_side=100).size == (400, 200)
    assert data.load_rgb(payload, max_side=100).getpixel((5, 5)) == (255, 255, 255)


def test_limit_is_class_balanced_and_seeded(tmp_path):
    found = data.discover(make_dataset(tmp_path, per_class=(9, 3)))
    subset = data.limit_samples(found.train, 6, seed=3)
    assert len(subset) == 6 and sorted(s.label for s in subset) == [0, 0, 0, 1, 1, 1]
    assert subset == data.limit_samples(found.train, 6, seed=3)
    assert subset != data.limit_samples(found.train, 6, seed=4)
    assert len(data.limit_samples(found.train, 0, seed=3)) == 18


def test_load_dataset_gives_uint8_arrays(dataset):
    arrays = data.load_dataset(data.discover(dataset), size=24, limit=4)
    assert arrays.x_train.shape == (4, 24, 24, 3) and arrays.x_train.dtype == np.uint8
    assert list(arrays.y_train) == [0, 0, 1, 1] and len(arrays.val_paths) == 4
