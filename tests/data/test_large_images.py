"""Large images: the pixel limit of datasets (`transforms.MAX_IMAGE_PIXELS`) and the reduced
decoding `predict` uses (`transforms.reduced_resize`)."""

import io
import logging
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
from PIL import Image

from smlp_jax import data
from smlp_jax.data import transforms
from tests.data.conftest import make_config


def header_only_png(width: int, height: int) -> bytes:
    """A PNG that declares `width` x `height` RGB pixels and holds one row: `Image.open`
    (which reads the header) sees the size; decoding would fail (truncated)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + body))
        return struct.pack(">I", len(body)) + kind + body + crc

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    row = zlib.compress(b"\0" * (1 + 3 * width))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", row) + chunk(b"IEND", b"")


def test_dataset_images_above_the_pixel_limit_are_unreadable():
    assert transforms.MAX_IMAGE_PIXELS == 8192 * 8192
    assert transforms.MAX_IMAGE_PIXELS < Image.MAX_IMAGE_PIXELS  # Pillow never warns first
    over = header_only_png(8193, 8192)
    with pytest.raises(Image.DecompressionBombError) as err:
        transforms.open_image(over)
    assert str(err.value) == (
        "8193x8192 image: 67117056 pixels, more than the 67108864 a dataset image may have "
        "(smlp_jax.data.transforms.MAX_IMAGE_PIXELS)"
    )
    assert isinstance(err.value, transforms.UNREADABLE_ERRORS)
    cfg = dict(data.default_input_config("imagenet"))
    with pytest.raises(Image.DecompressionBombError):
        transforms.EvalTransform(cfg, 32)(over)
    assert transforms.open_image(header_only_png(8192, 8192)).size == (8192, 8192)
    assert transforms.open_image(over, max_pixels=None).size == (8193, 8192)  # predict's


def test_a_training_image_above_the_limit_is_skipped_by_name(tmp_path, caplog):
    for name, grey in (("dark", 40), ("light", 200)):
        (tmp_path / "train" / name).mkdir(parents=True)
        for i in range(3):
            Image.new("L", (20, 20), grey).save(tmp_path / "train" / name / f"{i}.png")
    (tmp_path / "train" / "dark" / "huge.png").write_bytes(header_only_png(9000, 8000))
    config = make_config(f"folder:{tmp_path}", batch_size=7, **{"input.val_fraction": 0.2})
    iterator = data.create_train_iterator(config, process_index=0, process_count=1)
    with caplog.at_level(logging.WARNING, logger="smlp_jax.data"):
        batch = next(iterator)
    assert batch["image"].shape == (7, 16, 16, 3)
    skipped = [r.getMessage() for r in caplog.records if "huge.png" in r.getMessage()]
    assert len(skipped) == 1 and "DecompressionBombError: 9000x8000 image" in skipped[0]


def _encoded(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def _photo_like(width: int, height: int) -> Image.Image:
    """Smooth random colour fields with some edges: a stand-in for a photo."""
    rng = np.random.default_rng(0)
    coarse = Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8))
    fine = rng.integers(-20, 21, (height, width, 3))
    smooth = np.asarray(coarse.resize((width, height), Image.BICUBIC), np.int64)
    return Image.fromarray(np.clip(smooth + fine, 0, 255).astype(np.uint8))


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_reduced_decoding_is_close_to_full_decoding(fmt):
    """predict's reduced decoding (JPEG draft, else a box reduce, then the resample) against
    the full-size decode and resample: within 3 levels of 255; identical when the image is
    less than `PREDICT_REDUCING_GAP` times the output (nothing to reduce)."""
    cfg = dict(data.default_input_config("imagenet"), mean=(0.0,) * 3, std=(1.0,) * 3)
    transform = transforms.EvalTransform(cfg, 32)  # resized to 36, cropped to 32
    gap = transforms.PREDICT_REDUCING_GAP
    large = _encoded(_photo_like(1600, 1200), fmt)
    full, reduced = transform(large), transform(large, reducing_gap=gap)
    levels = np.abs(full - reduced) * 255
    assert levels.max() <= 3 and levels.mean() <= 0.5, (levels.max(), levels.mean())
    small = _encoded(_photo_like(100, 80), fmt)  # < 3 x 36 on its short side
    np.testing.assert_array_equal(transform(small), transform(small, reducing_gap=gap))


def test_predict_reads_a_9000_pixel_png(tmp_path):
    """A 9000x9000 PNG (258 kB, 81M pixels: above the dataset limit) is predicted: the
    tool decodes it with no dataset limit, then reduces it before the resample."""
    from tests.train.tiny import REPO, subprocess_env

    Image.new("RGB", (9000, 9000), (10, 120, 200)).save(tmp_path / "big.png")
    done = subprocess.run(
        [sys.executable, "-m", "smlp_jax.tools.predict", str(tmp_path / "big.png"),
         "--model", "mixer_s16", "--model-arg", "num_blocks=1", "--image-size", "32",
         "--num-classes", "10"],
        env=subprocess_env(), capture_output=True, text=True, timeout=300, cwd=REPO,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert str(tmp_path / "big.png") in done.stdout and "1. class" in done.stdout, done.stdout
