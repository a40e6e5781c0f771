"""Per-example image transforms: encoded bytes -> normalised float32 (S, S, 3), PIL + numpy.

Train ("imagenet" preset, the official sMLPNet/DeiT recipe through timm): RandomResizedCrop
(scale, ratio, bicubic) -> horizontal flip -> RandAugment -> normalise -> random erasing.
Train ("simple" preset, small inputs): resize to S -> random translation by up to `pad`
pixels -> flip -> [RandAugment] -> normalise -> [random erasing].
Eval: resize the short side to floor(S / crop_pct) (bicubic), centre crop S, normalise.

Every random draw comes from the `np.random.Generator` passed in, which the pipeline seeds
from (seed, process, example position), so an example's augmentation does not depend on
worker processes or threads. Images of any mode (L, LA, P, RGBA, CMYK, I;16) become RGB.
For JPEGs, decoding happens at a reduced DCT scale (PIL draft mode) only when the crop is
going to be shrunk by at least that factor anyway: the same pixels, less work. YCbCr JPEGs
decode through simplejpeg when it is installed (libjpeg-turbo like Pillow's decoder: the
same pixels, 1.2-1.4x faster; benchmarks/jpeg_decoders.py).
"""

from __future__ import annotations

import io
import math

import numpy as np
from PIL import Image

from smlp_jax.data import device_resize

try:  # optional: JPEGs decode faster through it, to the same pixels (`_fast_jpeg`)
    import simplejpeg
except ImportError:  # pragma: no cover - a requirement; Pillow decodes everything without it
    simplejpeg = None
from smlp_jax.data.randaugment import INTERPOLATIONS, RandAugment, pick_resample

# What a corrupt, truncated or non-image file raises while opening or decoding.
UNREADABLE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError)


# Datasets refuse an image of more pixels than this (2^26, e.g. 8192 x 8192: 201 MB decoded
# as RGB), as unreadable: a training file is skipped and named, an eval one masked out. Below
# Pillow's own warning threshold (89.5M pixels, its `Image.MAX_IMAGE_PIXELS` default, which
# still warns first above it), so the limit is ours whatever that global is set to. `predict`
# passes `max_pixels=None`: it decodes large images at a reduced size (`reduced_resize`).
MAX_IMAGE_PIXELS = 2**26


def open_image(data: bytes | Image.Image, max_pixels: int | None = MAX_IMAGE_PIXELS) -> Image.Image:
    """Lazily opened image (header parsed, pixels not decoded yet); an image of more than
    `max_pixels` pixels raises `Image.DecompressionBombError` (one of UNREADABLE_ERRORS).
    An image already decoded (`data.decoded_cache`, which checked it here) is returned as
    it is."""
    if isinstance(data, Image.Image):
        return data
    img = Image.open(io.BytesIO(data))
    width, height = img.size
    if max_pixels is not None and width * height > max_pixels:
        raise Image.DecompressionBombError(
            f"{width}x{height} image: {width * height} pixels, more than the "
            f"{max_pixels} a dataset image may have (smlp_jax.data.transforms.MAX_IMAGE_PIXELS)"
        )
    return img


def _draft_request(img: Image.Image, box, out_size) -> tuple[int, int]:
    """The smallest decoded size that keeps the crop `box` at least `out_size`."""
    left, top, right, bottom = box
    return (
        max(1, math.ceil(img.size[0] * out_size[0] / max(right - left, 1e-6))),
        max(1, math.ceil(img.size[1] * out_size[1] / max(bottom - top, 1e-6))),
    )


def _draft(img: Image.Image, box, out_size) -> tuple[Image.Image, tuple[float, ...]]:
    """Asks the JPEG decoder for a 1/2, 1/4 or 1/8 scale that keeps `box` >= out_size."""
    if img.format != "JPEG":
        return img, box
    full_width = img.size[0]
    result = img.draft("RGB", _draft_request(img, box, out_size))
    if result is None:
        return img, box
    scale = result[1][2] / full_width  # decoded width / original width = 1/s
    return img, tuple(v * scale for v in box)


def _draft_scale(img: Image.Image, box, out_size) -> int:
    """The DCT scale s (1, 2, 4 or 8) Pillow's JPEG draft picks for `_draft`'s request."""
    request = _draft_request(img, box, out_size)
    largest = min(img.size[0] // request[0], img.size[1] // request[1])
    return next((s for s in (8, 4, 2) if largest >= s), 1)  # 1 also when upscaling


def _fast_jpeg(img: Image.Image, scale: int) -> Image.Image | None:
    """A YCbCr JPEG decoded to RGB at 1/`scale` by simplejpeg: libjpeg-turbo, as Pillow's
    decoder, with the same IDCT and upsampling, so the same pixels (checked in the tests and
    benchmarks/jpeg_decoders.py) at 1.2-1.4x the speed. None (Pillow decodes) when
    simplejpeg is not installed, for other images (grey, CMYK, not a JPEG) and whatever it
    refuses: then Pillow's own errors and pixels stand."""
    if simplejpeg is None or img.format != "JPEG" or img.mode != "RGB" or len(img.tile) != 1:
        return None
    source = getattr(img, "fp", None)
    if not isinstance(source, io.BytesIO):
        return None
    width, height = img.size
    want = (-(-height // scale), -(-width // scale))  # libjpeg's size at 1/scale
    try:
        # At least ceil(size / s) picks the scale 8/s of eighths: Pillow's 1/s exactly.
        array = simplejpeg.decode_jpeg(
            source.getvalue(), colorspace="RGB", min_width=want[1], min_height=want[0]
        )
    except ValueError:
        return None
    return Image.fromarray(array) if array.shape[:2] == want else None


def decode(img: Image.Image, box, out_size, draft: bool) -> tuple[Image.Image, tuple]:
    """`img`'s pixels as RGB, and the crop `box` in them. With `draft`, a JPEG is decoded at
    the reduced DCT scale (1/2, 1/4, 1/8) that keeps the box at least `out_size`: the same
    pixels the resize would make, less work."""
    scale = _draft_scale(img, box, out_size) if draft and img.format == "JPEG" else 1
    fast = _fast_jpeg(img, scale)
    if fast is not None:
        return fast, tuple(v / scale for v in box)
    if draft:
        img, box = _draft(img, box, out_size)
    return _rgb(img), box


def _rgb(img: Image.Image) -> Image.Image:
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit PNGs: scale to 8 bits first
        array = np.asarray(img, dtype=np.float32) * (255.0 / 65535.0)
        img = Image.fromarray(np.clip(array, 0, 255).astype(np.uint8), mode="L")
    return img.convert("RGB")


def crop_resize(img: Image.Image, box, out_size, resample, draft: bool) -> Image.Image:
    """Decodes `img` and resamples region box=(left, top, right, bottom) to out_size, RGB."""
    img, box = decode(img, box, out_size, draft)
    return img.resize(out_size, resample=resample, box=box)


# `predict`'s reducing gap: the image is decoded / box-reduced to no less than 3x the size
# it is resized to, then resampled (Pillow's `reducing_gap`, as `Image.thumbnail` uses; at 3
# Pillow calls the result indistinguishable from a full-size resample).
PREDICT_REDUCING_GAP = 3.0


def reduced_resize(img: Image.Image, out_size, resample, reducing_gap: float) -> Image.Image:
    """`img` (opened, not decoded) resized to `out_size`, RGB, at a fraction of the cost of a
    full-size decode and resample for a large image: a JPEG is decoded at the DCT scale
    (1/2, 1/4, 1/8; `Image.draft`) that keeps it at least `reducing_gap` x `out_size`; any
    other format is decoded, then shrunk by the integer factor that keeps that size (a box
    filter, `Image.reduce`), and resampled to `out_size` with `resample`."""
    width, height = img.size
    want = tuple(math.ceil(side * reducing_gap) for side in out_size)
    img, box = decode(img, (0, 0, width, height), want, draft=True)
    return img.resize(out_size, resample=resample, box=box, reducing_gap=reducing_gap)


def rrc_box(width: int, height: int, rng: np.random.Generator, scale, ratio):
    """timm/torchvision RandomResizedCrop.get_params: (left, top, right, bottom) in pixels."""
    area = width * height
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target_area = rng.uniform(*scale) * area
        aspect = math.exp(rng.uniform(*log_ratio))
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            return left, top, left + w, top + h
    in_ratio = width / height  # fallback: central crop at the clamped aspect ratio
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        w, h = int(round(height * max(ratio))), height
    else:
        w, h = width, height
    top, left = (height - h) // 2, (width - w) // 2
    return left, top, left + w, top + h


def random_erasing(
    array: np.ndarray,
    rng: np.random.Generator,
    *,
    prob: float,
    mode: str = "pixel",
    max_count: int = 1,
    min_area: float = 0.02,
    max_area: float = 1 / 3,
    min_aspect: float = 0.3,
) -> np.ndarray:
    """timm RandomErasing on a normalised (H, W, C) array, in place: with probability `prob`,
    1..max_count boxes (area fraction in [min_area, max_area] / count, log-uniform aspect in
    [min_aspect, 1/min_aspect]) are filled with N(0, 1) per pixel ('pixel'), per channel
    ('rand') or zeros ('const')."""
    if prob <= 0 or rng.random() > prob:
        return array
    height, width, channels = array.shape
    count = max_count if max_count <= 1 else int(rng.integers(1, max_count + 1))
    log_aspect = (math.log(min_aspect), math.log(1 / min_aspect))
    for _ in range(count):
        for _attempt in range(10):
            target_area = rng.uniform(min_area, max_area) * height * width / count
            aspect = math.exp(rng.uniform(*log_aspect))
            h = int(round(math.sqrt(target_area * aspect)))
            w = int(round(math.sqrt(target_area / aspect)))
            if w < width and h < height:
                top = int(rng.integers(0, height - h + 1))
                left = int(rng.integers(0, width - w + 1))
                if mode == "pixel":
                    fill = rng.standard_normal((h, w, channels), dtype=np.float32)
                elif mode == "rand":
                    fill = rng.standard_normal((1, 1, channels), dtype=np.float32)
                elif mode == "const":
                    fill = np.float32(0.0)
                else:
                    raise ValueError(f"random erasing mode must be pixel|rand|const, not {mode!r}")
                array[top : top + h, left : left + w] = fill
                break
    return array


class Normalize:
    """uint8 RGB image -> float32 (H, W, 3) with (x / 255 - mean) / std."""

    def __init__(self, mean, std):
        self.offset = np.asarray(mean, np.float32) * 255.0
        self.scale = 1.0 / (np.asarray(std, np.float32) * 255.0)

    def __call__(self, img: Image.Image) -> np.ndarray:
        array = np.subtract(np.asarray(img), self.offset, dtype=np.float32)
        array *= self.scale
        return array


def check_input(cfg: dict) -> None:
    if cfg["preset"] not in ("imagenet", "simple"):
        raise ValueError(
            f"config.input.preset must be 'imagenet' or 'simple', not {cfg['preset']!r}"
        )
    if cfg["interpolation"] not in INTERPOLATIONS:
        raise ValueError(
            f"config.input.interpolation={cfg['interpolation']!r}; use one of "
            f"{', '.join(INTERPOLATIONS)}."
        )
    if cfg.get("eval_interpolation", "") not in ("", *EVAL_INTERPOLATIONS):
        raise ValueError(
            f"config.input.eval_interpolation={cfg['eval_interpolation']!r}; use '' (as in "
            f"training) or one of {', '.join(EVAL_INTERPOLATIONS)}."
        )
    if cfg["re_mode"] not in ("pixel", "rand", "const"):
        raise ValueError(f"config.input.re_mode must be pixel|rand|const, not {cfg['re_mode']!r}")
    if not 0 < cfg["crop_pct"] <= 1:
        raise ValueError(f"config.input.crop_pct must be in (0, 1], got {cfg['crop_pct']}.")


EVAL_INTERPOLATIONS = ("bicubic", "bilinear", "nearest")


def eval_resample(cfg: dict) -> int:
    """The eval resize filter: `eval_interpolation`, else the train one (bicubic when that is
    "random", the default of timm's models)."""
    name = cfg.get("eval_interpolation", "") or cfg["interpolation"]
    return INTERPOLATIONS["bicubic" if name == "random" else name]


class TrainTransform:
    """(encoded bytes, rng) -> one example, a dict; raises UNREADABLE_ERRORS for a bad file.

    What the host does is the input plan's part (`input_plan.plan(config).host_transform()`
    builds this after checking `config.input.on_device`): with "" everything,
    {"image": float32 (S, S, 3)}; with "augment" only the crop, {"image": uint8 (S, S, 3)}
    (the rest runs in the train step, device_augment.py); with "resize_and_augment" only the
    decode, {"image": uint8 (P, P, 3) zero-padded, "resize_box": float32 (4,) the crop box,
    "image_hw": int32 (2,) the decoded size}, resized in the train step (device_resize.py);
    an image larger than P (and the "simple" preset) is resized here and sent as a (S, S)
    image with the whole of it as its box."""

    def __init__(self, input_cfg: dict, image_size: int):
        check_input(input_cfg)
        self.cfg = dict(input_cfg)
        self.size = int(image_size)
        self.on_device = self.cfg.get("on_device", "")
        # The decoded-image cache holds full-size pixels, so with it no crop is drafted:
        # cached or not, an example sees the same pixels (data/decoded_cache.py).
        self.draft = bool(self.cfg["jpeg_draft"]) and not self.cfg.get("cache_decoded_mb", 0)
        self.resample = INTERPOLATIONS[self.cfg["interpolation"]]
        self.normalize = Normalize(self.cfg["mean"], self.cfg["std"])
        spec = self.cfg["randaugment"]
        self.randaugment = (
            RandAugment.from_string(
                spec, mean=self.cfg["mean"], interpolation=self.cfg["interpolation"]
            )
            if spec
            else None
        )

    def _geometry(self, img: Image.Image, rng: np.random.Generator) -> Image.Image:
        size, cfg = self.size, self.cfg
        if cfg["preset"] == "imagenet":
            box = rrc_box(*img.size, rng, cfg["scale"], cfg["ratio"])
            resample = pick_resample(self.resample, rng)
            return crop_resize(img, box, (size, size), resample, self.draft)
        full = (0, 0, *img.size)
        resample = pick_resample(self.resample, rng)
        img = crop_resize(img, full, (size, size), resample, self.draft)
        pad = int(cfg["pad"])
        if pad > 0:  # crop outside the image fills with black: a translation by dx, dy
            dx, dy = (int(v) - pad for v in rng.integers(0, 2 * pad + 1, size=2))
            img = img.crop((dx, dy, dx + size, dy + size))
        return img

    def _decoded(self, img: Image.Image, rng: np.random.Generator) -> dict:
        """The decoded image, padded, and its crop box (on_device="resize_and_augment")."""
        size, cfg, padded = self.size, self.cfg, int(self.cfg["resize_max"])
        if cfg["preset"] == "imagenet":
            box = rrc_box(*img.size, rng, cfg["scale"], cfg["ratio"])
            img, box = decode(img, box, (size, size), self.draft)
            if max(img.size) > padded:  # resized here; its box the whole of the crop
                img, box = crop_resize(img, box, (size, size), self.resample, False), None
        else:
            img, box = self._geometry(img, rng), None
        width, height = img.size
        return {
            "image": device_resize.pad_image(np.asarray(img, np.uint8), padded),
            "resize_box": np.asarray(box or (0, 0, width, height), np.float32),
            "image_hw": np.asarray((height, width), np.int32),
        }

    def __call__(
        self, data: bytes | Image.Image, rng: np.random.Generator
    ) -> dict[str, np.ndarray]:
        if self.on_device == "resize_and_augment":
            return self._decoded(open_image(data), rng)
        img = self._geometry(open_image(data), rng)
        if self.on_device == "augment":
            return {"image": np.asarray(img, np.uint8)}
        if self.cfg["hflip"] > 0 and rng.random() < self.cfg["hflip"]:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
        if self.randaugment is not None:
            img = self.randaugment(img, rng)
        array = self.normalize(img)
        erased = random_erasing(
            array,
            rng,
            prob=self.cfg["re_prob"],
            mode=self.cfg["re_mode"],
            max_count=int(self.cfg["re_count"]),
        )
        return {"image": erased}


class EvalTransform:
    """encoded bytes -> float32 (S, S, 3): resize short side to floor(S / crop_pct), centre
    crop S (torchvision rounding), normalise; raises UNREADABLE_ERRORS for a bad file.
    Decodes at full size (no JPEG draft) unless called with `reducing_gap`."""

    def __init__(self, input_cfg: dict, image_size: int):
        check_input(input_cfg)
        self.size = int(image_size)
        self.scale_size = math.floor(self.size / float(input_cfg["crop_pct"]))
        self.resample = eval_resample(input_cfg)
        self.normalize = Normalize(input_cfg["mean"], input_cfg["std"])

    def __call__(
        self,
        data: bytes | Image.Image,
        *,
        reducing_gap: float | None = None,
        max_pixels: int | None = MAX_IMAGE_PIXELS,
    ) -> np.ndarray:
        """With `reducing_gap` (`predict`'s `PREDICT_REDUCING_GAP`), a large image is decoded
        and shrunk at a reduced size first (`reduced_resize`); `max_pixels`: `open_image`'s."""
        img = open_image(data, max_pixels)
        width, height = img.size
        if width <= height:
            new_w, new_h = self.scale_size, int(self.scale_size * height / width)
        else:
            new_w, new_h = int(self.scale_size * width / height), self.scale_size
        if reducing_gap:
            img = reduced_resize(img, (new_w, new_h), self.resample, reducing_gap)
        else:
            # Full-resolution decoding, as timm evaluates: accuracy numbers stay comparable.
            img = crop_resize(img, (0, 0, width, height), (new_w, new_h), self.resample, False)
        top = int(round((new_h - self.size) / 2.0))
        left = int(round((new_w - self.size) / 2.0))
        return self.normalize(img.crop((left, top, left + self.size, top + self.size)))
