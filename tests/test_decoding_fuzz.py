"""Fuzzing the one decoding function: whatever bytes a visitor sends, `data.load_rgb` returns an RGB
image or raises ImageError naming the file. Any other exception would fail a whole Predict request,
data check or upload.

Seeds are small images in every format Pillow writes (plus hand-made XPM and PSD, which it only
reads); each is mutated with a seeded RNG: bytes flipped, header fields set to extreme values,
truncated, spliced with another format, or its magic number followed by noise.
"""

import io
import random
import struct
import time

import numpy as np
import pytest
from PIL import Image, features

from trainer import data

pytestmark = pytest.mark.filterwarnings("ignore")  # Pillow warns about much of what it then refuses

SEED = 10
MUTANTS_PER_SEED = 250
EXTREMES = (0, 1, 0x7F, 0xFF, 0x7FFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF)


def saved(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def xpm(width=3, height=2) -> bytes:
    rows = "".join(f'"{"." * width}",\n' for _ in range(height))
    return (f'/* XPM */\nstatic char *x[] = {{\n"{width} {height} 2 1",\n"  c None",\n". c #FF0000",\n'
            f"{rows}}};\n").encode()


def psd(width=4, height=3) -> bytes:
    """A raw (uncompressed) 8-bit RGB Photoshop file: header, three empty sections, channel planes."""
    header = b"8BPS" + struct.pack(">H6xHIIHH", 1, 3, height, width, 8, 3)
    return header + b"\0" * 12 + struct.pack(">H", 0) + bytes(range(3 * width * height))


def seeds() -> dict[str, bytes]:
    rng = np.random.default_rng(SEED)
    rgb = Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8))
    found = {
        "png": saved(rgb, "PNG"), "png-palette": saved(rgb.convert("P"), "PNG"),
        "png-rgba": saved(rgb.convert("RGBA"), "PNG"),
        "png-16bit": saved(Image.fromarray(rng.integers(0, 65535, (6, 5), dtype=np.uint16)), "PNG"),
        "jpeg": saved(rgb, "JPEG"), "jpeg-progressive": saved(rgb, "JPEG", progressive=True),
        "jpeg-cmyk": saved(rgb.convert("CMYK"), "JPEG"),
        "gif": saved(rgb.convert("P"), "GIF", save_all=True, append_images=[rgb.convert("P").rotate(90)]),
        "bmp": saved(rgb, "BMP"), "dib": saved(rgb, "DIB"),
        "tiff": saved(rgb, "TIFF"), "tiff-deflate": saved(rgb, "TIFF", compression="tiff_adobe_deflate"),
        "tiff-packbits": saved(rgb.convert("L"), "TIFF", compression="packbits"),
        "webp": saved(rgb, "WEBP"), "webp-lossless": saved(rgb, "WEBP", lossless=True),
        "ico": saved(rgb.resize((16, 16)), "ICO", sizes=[(16, 16)]),
        "ppm": saved(rgb, "PPM"), "pgm": saved(rgb.convert("L"), "PPM"),
        "tga": saved(rgb, "TGA"), "tga-rle": saved(rgb, "TGA", compression="tga_rle"),
        "pcx": saved(rgb, "PCX"), "sgi": saved(rgb, "SGI"), "qoi": saved(rgb, "QOI"),
        "dds": saved(rgb, "DDS"), "blp": saved(rgb.convert("P"), "BLP"), "im": saved(rgb, "IM"),
        "msp": saved(rgb.convert("1"), "MSP"), "xbm": saved(rgb.convert("1"), "XBM"),
        "spider": saved(rgb.convert("F"), "SPIDER"), "xpm": xpm(), "psd": psd(),
    }
    for fmt, name in (("JPEG2000", "jpeg2000"), ("AVIF", "avif")):
        if features.check(name.replace("jpeg2000", "jpg_2000")):
            found[name] = saved(rgb, fmt)
    return found


def mutate(payload: bytes, others: list[bytes], rng: random.Random) -> bytes:
    """One hostile variant of `payload`."""
    data_ = bytearray(payload)
    kind = rng.randrange(5)
    if kind == 0:  # flip a few bytes, mostly in the header
        for _ in range(rng.randint(1, 8)):
            end = min(len(data_), 64) if rng.random() < 0.7 else len(data_)
            data_[rng.randrange(end)] = rng.randrange(256)
    elif kind == 1:  # a header field set to an extreme value
        width = rng.choice((1, 2, 4))
        at = rng.randrange(max(1, min(len(data_), 64) - width))
        value = rng.choice(EXTREMES) & (256 ** width - 1)
        data_[at:at + width] = value.to_bytes(width, rng.choice(("big", "little")))
    elif kind == 2:  # truncated
        del data_[rng.randrange(1, len(data_)):]
    elif kind == 3:  # a span replaced by a piece of another format
        other = rng.choice(others)
        at, cut = rng.randrange(len(data_)), rng.randrange(len(other))
        data_[at:at + rng.randint(1, 200)] = other[cut:cut + rng.randint(1, 200)]
    else:  # its magic number, then noise
        data_ = data_[:rng.randint(2, 16)] + bytes(rng.randrange(256) for _ in range(rng.randint(0, 300)))
    return bytes(data_)


def test_seeds_decode():
    for name, payload in seeds().items():
        assert data.load_rgb(payload, name).mode == "RGB", name


def test_mutated_images_decode_or_are_refused_by_name(monkeypatch):
    monkeypatch.setattr(data, "MAX_PIXELS", 1_000_000)  # mutated sizes: refuse rather than decode for long
    rng = random.Random(SEED)
    found = seeds()
    others = list(found.values())
    escaped = []
    started = time.process_time()
    for fmt, payload in found.items():
        for i in range(MUTANTS_PER_SEED):
            name = f"{fmt}-{i}.jpg"
            try:
                assert data.load_rgb(mutate(payload, others, rng), name).mode == "RGB"
            except data.ImageError as error:
                assert str(error).startswith(f"{name}: ") and "Traceback" not in str(error)
            except Exception as error:  # noqa: BLE001 - what this test is looking for
                escaped.append(f"{name}: {type(error).__name__}: {error}")
    assert not escaped, f"{len(escaped)} escaped:\n" + "\n".join(escaped[:20])
    assert time.process_time() - started < 30  # a decoder that spins on hostile input fails here


@pytest.mark.parametrize("size", [0, 1, 7, 100, 5000])
def test_random_bytes_are_refused_by_name(size):
    payload = random.Random(size).randbytes(size)
    with pytest.raises(data.ImageError, match="^noise.png: "):
        data.load_rgb(payload, "noise.png")
