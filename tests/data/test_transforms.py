"""Per-example transforms: timm semantics of RRC, RandAugment, erasing, eval crop; modes."""

import io
import math

import numpy as np
import pytest
from PIL import Image

from smlp_jax.data import default_input_config, randaugment, transforms


def _encode(img: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def _photo(width=120, height=90, seed=0, block=10) -> Image.Image:
    """A smooth random RGB image (JPEG-friendly, like a photo)."""
    rng = np.random.default_rng(seed)
    shape = (height // block + 1, width // block + 1, 3)
    small = rng.integers(0, 256, shape, dtype=np.uint8)
    return Image.fromarray(small).resize((width, height), Image.BICUBIC)


def test_random_resized_crop_box_follows_scale_and_ratio():
    rng = np.random.default_rng(0)
    for _ in range(300):
        left, top, right, bottom = transforms.rrc_box(500, 375, rng, (0.08, 1.0), (3 / 4, 4 / 3))
        w, h = right - left, bottom - top
        assert 0 <= left and right <= 500 and 0 <= top and bottom <= 375
        assert 0.08 * 0.95 <= w * h / (500 * 375) <= 1.0
        assert 3 / 4 * 0.95 <= w / h <= 4 / 3 * 1.05
    # A very wide image cannot fit the ratio range: central crop at the clamped ratio.
    box = transforms.rrc_box(1000, 50, np.random.default_rng(0), (0.99, 1.0), (3 / 4, 4 / 3))
    assert box == (466, 0, 533, 50)  # w = round(50 * 4 / 3) = 67, left = (1000 - 67) // 2


def test_randaugment_spec_parses_like_timm():
    ra = randaugment.RandAugment.from_string("rand-m9-mstd0.5-inc1")
    assert ra.ops == randaugment.RAND_INCREASING_TRANSFORMS and len(ra.ops) == 15
    assert (ra.magnitude, ra.num_layers, ra.magnitude_std, ra.magnitude_max) == (9, 2, 0.5, 10)
    assert ra.fill == (124, 116, 104)  # round(255 * ImageNet mean)
    plain = randaugment.RandAugment.from_string("rand-m7-n3-mstd101")
    assert plain.ops == randaugment.RAND_TRANSFORMS
    assert (plain.num_layers, plain.magnitude_std) == (3, float("inf"))
    with pytest.raises(ValueError, match="Unknown section"):
        randaugment.RandAugment.from_string("rand-m9-q1")


@pytest.mark.parametrize(
    "name", sorted(set(randaugment.RAND_INCREASING_TRANSFORMS) | set(randaugment.RAND_TRANSFORMS))
)
def test_every_randaugment_op_keeps_size_and_mode(name):
    img = _photo(40, 30)
    out = randaugment._apply(
        name, img, 9.0, np.random.default_rng(0), (124, 116, 104), Image.BICUBIC
    )
    assert out.size == img.size and out.mode == "RGB"
    if name not in ("AutoContrast", "Equalize"):  # these can be near no-ops on some images
        assert not np.array_equal(np.asarray(out), np.asarray(img)), name


def test_randaugment_levels_follow_timm_mappings():
    img = Image.new("RGB", (8, 8), (200, 100, 20))
    fill, bicubic, rng = (0, 0, 0), Image.BICUBIC, np.random.default_rng(0)
    # SolarizeIncreasing at level 5: threshold 256 - 128 = 128 -> 200 inverted, 100 and 20 kept.
    out = np.asarray(randaugment._apply("SolarizeIncreasing", img, 5.0, rng, fill, bicubic))
    assert out[0, 0].tolist() == [55, 100, 20]
    # PosterizeIncreasing at level 10 keeps 4 - 4 = 0 bits; level 5 keeps 2.
    out = np.asarray(randaugment._apply("PosterizeIncreasing", img, 10.0, rng, fill, bicubic))
    assert out.max() == 0
    out = np.asarray(randaugment._apply("PosterizeIncreasing", img, 5.0, rng, fill, bicubic))
    assert out[0, 0].tolist() == [192, 64, 0]
    # SolarizeAdd at level 10 adds 110 below 128.
    out = np.asarray(randaugment._apply("SolarizeAdd", img, 10.0, rng, fill, bicubic))
    assert out[0, 0].tolist() == [200, 210, 130]


def test_random_erasing_fills_one_box_with_noise():
    rng = np.random.default_rng(3)
    array = np.full((32, 32, 3), 7.0, np.float32)
    transforms.random_erasing(array, rng, prob=1.0, mode="pixel")
    erased = (array != 7.0).all(-1)
    rows, cols = np.flatnonzero(erased.any(1)), np.flatnonzero(erased.any(0))
    assert erased[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1].all()
    assert 0.02 * 0.8 <= erased.mean() <= 1 / 3 * 1.2
    assert 0.5 < array[erased].std() < 1.5  # N(0, 1) per pixel
    untouched = np.full((8, 8, 3), 7.0, np.float32)
    transforms.random_erasing(untouched, rng, prob=0.0)
    assert (untouched == 7.0).all()


@pytest.mark.parametrize(
    "mode, fmt",
    [("L", "PNG"), ("LA", "PNG"), ("RGBA", "PNG"), ("P", "PNG"), ("I;16", "PNG"), ("L", "JPEG"),
     ("CMYK", "JPEG"), ("RGB", "JPEG")],
)  # fmt: skip
def test_any_image_mode_becomes_normalised_rgb(mode, fmt):
    img = _photo(50, 40).convert(mode if mode != "I;16" else "L")
    if mode == "I;16":
        img = Image.fromarray(np.asarray(img).astype(np.uint16) * 257)
    cfg = default_input_config()
    train = transforms.TrainTransform(cfg, 24)(_encode(img, fmt), np.random.default_rng(0))
    assert set(train) == {"image"}  # one batch form: a dict, whatever the input plan
    train = train["image"]
    evaluation = transforms.EvalTransform(cfg, 24)(_encode(img, fmt))
    for out in (train, evaluation):
        assert out.shape == (24, 24, 3) and out.dtype == np.float32
        assert np.isfinite(out).all()
    low = (0 - np.array(cfg.mean)) / np.array(cfg.std)
    high = (1 - np.array(cfg.mean)) / np.array(cfg.std)
    assert (evaluation >= low - 1e-5).all() and (evaluation <= high + 1e-5).all()


def test_eval_resizes_short_side_then_centre_crops():
    img = _photo(100, 50)
    cfg = default_input_config()
    out = transforms.EvalTransform(cfg, 32)(_encode(img, "PNG"))
    scale_size = math.floor(32 / 0.875)  # 36: short side; long side int(36 * 100 / 50) = 72
    want = img.resize((72, 36), Image.BICUBIC).crop((20, 2, 52, 34))
    mean, std = np.array(cfg.mean), np.array(cfg.std)
    np.testing.assert_allclose(out, (np.asarray(want) / 255.0 - mean) / std, atol=1e-5)
    assert scale_size == 36


def test_random_interpolation_picks_bilinear_or_bicubic_per_image():
    """timm's `--train-interpolation random`: each crop resize is bilinear or bicubic."""
    data = _encode(_photo(), "PNG")
    cfg = dict(default_input_config(), randaugment="", re_prob=0.0, hflip=0.0, jpeg_draft=False)
    runs = {
        name: [
            transforms.TrainTransform(dict(cfg, interpolation=name), 32)(
                data, np.random.default_rng(seed)
            )["image"]
            for seed in range(12)
        ]
        for name in ("random", "bilinear", "bicubic")
    }
    picked = []  # the box is drawn first, so seed by seed one fixed filter gives the same crop
    for mixed, bilinear, bicubic in zip(*runs.values(), strict=True):
        assert np.array_equal(mixed, bilinear) != np.array_equal(mixed, bicubic)
        picked.append(np.array_equal(mixed, bicubic))
    assert 0 < sum(picked) < len(picked)
    # Geometric RandAugment ops draw their filter too; eval falls back to bicubic.
    choices = {randaugment.pick_resample(randaugment.INTERPOLATIONS["random"], rng)
               for rng in [np.random.default_rng(s) for s in range(20)]}  # fmt: skip
    assert choices == {Image.BILINEAR, Image.BICUBIC}
    assert transforms.eval_resample(dict(cfg, interpolation="random")) == Image.BICUBIC
    assert transforms.eval_resample(dict(cfg, eval_interpolation="bilinear")) == Image.BILINEAR


def test_jpeg_draft_decoding_matches_full_decoding_closely():
    data = _encode(_photo(800, 600, block=50), "JPEG", quality=95)
    cfg = dict(default_input_config(), randaugment="", re_prob=0.0, hflip=0.0, scale=(1.0, 1.0))
    cfg["ratio"] = (4 / 3, 4 / 3)
    draft = transforms.TrainTransform(cfg, 64)(data, np.random.default_rng(0))["image"]
    full = transforms.TrainTransform(dict(cfg, jpeg_draft=False), 64)(
        data, np.random.default_rng(0)
    )["image"]
    assert not np.array_equal(draft, full)  # the reduced decode was used (800 / 64 >= 8)
    assert np.abs(draft - full).mean() < 0.05  # ~1% of the normalised range


def test_simple_preset_translates_without_flipping_digits():
    img = Image.new("L", (28, 28))
    img.paste(255, (10, 10, 18, 18))
    cfg = default_input_config("simple")
    outs = [
        transforms.TrainTransform(cfg, 28)(_encode(img, "PNG"), np.random.default_rng(s))["image"]
        for s in range(20)
    ]
    centres = {tuple(np.argwhere(o[..., 0] > 0).mean(0).round().astype(int)) for o in outs}
    assert len(centres) > 1 and all(max(abs(c - 13.5) for c in ctr) <= 3 for ctr in centres)


def test_eval_decodes_large_jpegs_at_full_resolution():
    data = _encode(_photo(800, 600, block=50), "JPEG", quality=90)
    cfg = default_input_config()
    out = transforms.EvalTransform(cfg, 64)(data)
    full = Image.open(io.BytesIO(data)).convert("RGB")  # no draft: every DCT coefficient
    want = full.resize((97, 73), Image.BICUBIC).crop((16, 4, 80, 68))  # short side 73 = 64/0.875
    mean, std = np.array(cfg.mean), np.array(cfg.std)
    np.testing.assert_allclose(out, (np.asarray(want) / 255.0 - mean) / std, atol=1e-5)


@pytest.mark.parametrize(
    "override, message",
    [({"preset": "fancy"}, "preset"), ({"re_mode": "blur"}, "re_mode"),
     ({"crop_pct": 1.5}, "crop_pct"), ({"randaugment": "rand-x9"}, "Unknown section"),
     ({"randaugment": "rand-m"}, "Cannot parse"),
     ({"interpolation": "lanczos"}, "interpolation='lanczos'; use one of"),
     ({"eval_interpolation": "random"}, "eval_interpolation='random'; use ''")],
)  # fmt: skip
def test_bad_input_config_fails_at_construction(override, message):
    cfg = dict(default_input_config(), **override)
    with pytest.raises(ValueError, match=message):
        transforms.TrainTransform(cfg, 32)


@pytest.mark.skipif(transforms.simplejpeg is None, reason="simplejpeg is not installed")
def test_simplejpeg_decodes_the_same_pixels_as_pillow(monkeypatch):
    """Every transform gives the same arrays with simplejpeg's decode as with Pillow's: whole
    images (eval), every draft scale (1, 1/2, 1/4, 1/8: crops shrunk 1-8x), the device
    resize's decode, progressive and 4:4:4 JPEGs; grey and CMYK JPEGs and PNGs are Pillow's."""
    photo = _photo(500, 375, seed=3, block=25)
    noise = np.random.default_rng(0).integers(-10, 11, (375, 500, 3))
    photo = Image.fromarray(np.clip(np.asarray(photo) + noise, 0, 255).astype(np.uint8))
    images = [
        _encode(photo, "JPEG", quality=90),
        _encode(photo, "JPEG", quality=95, progressive=True),
        _encode(photo, "JPEG", quality=90, subsampling=0),
        _encode(photo.convert("L"), "JPEG", quality=90),
        _encode(photo.convert("CMYK"), "JPEG", quality=90),
        _encode(photo, "PNG"),
        _encode(_photo(40, 30), "JPEG", quality=90),  # smaller than the crops: upscaled
    ]
    cfg = dict(default_input_config(), randaugment="", re_prob=0.0, hflip=0.0)
    kinds = [
        transforms.TrainTransform(dict(cfg, scale=(0.08, 1.0)), 32),  # crops shrunk up to 8x+
        transforms.TrainTransform(dict(cfg, on_device="resize_and_augment", resize_max=512), 32),
        transforms.TrainTransform(dict(cfg, scale=(1.0, 1.0), ratio=(4 / 3, 4 / 3)), 224),
        transforms.TrainTransform(dict(cfg, scale=(1.0, 1.0), ratio=(4 / 3, 4 / 3)), 160),
    ]
    evaluation = transforms.EvalTransform(cfg, 64)
    scales = set()

    def outputs():
        out = []
        for blob in images:
            out.append(evaluation(blob))
            for kind in kinds:
                for seed in range(6):
                    out.extend(kind(blob, np.random.default_rng(seed)).values())
        return out

    real_scale = transforms._draft_scale
    monkeypatch.setattr(
        transforms, "_draft_scale", lambda *a: scales.add(real_scale(*a)) or real_scale(*a)
    )
    fast = outputs()
    assert scales == {1, 2, 4, 8}, scales
    monkeypatch.setattr(transforms, "simplejpeg", None)
    pillow = outputs()
    assert len(fast) == len(pillow)
    for a, b in zip(fast, pillow, strict=True):
        np.testing.assert_array_equal(a, b)
