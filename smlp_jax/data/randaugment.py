"""RandAugment with timm's semantics, on PIL images, driven by an explicit numpy Generator.

`RandAugment.from_string("rand-m9-mstd0.5-inc1", ...)` reproduces timm's
`rand_augment_transform`: each image gets `n` (default 2) ops drawn uniformly with
replacement from the op list; each op fires with probability 0.5; its magnitude is drawn
from N(m, mstd) and clipped to [0, 10] (mmax); `inc1` selects the variants whose
severity increases with magnitude. Geometric ops fill with the dataset mean colour and
resample with the train interpolation (bicubic; "random" picks bilinear or bicubic per
op). The random draws come from the per-example Generator, so results depend only on
(seed, example index), not on worker processes or threads.
"""

from __future__ import annotations

import re

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

LEVEL_DENOM = 10.0

RAND_TRANSFORMS = (
    "AutoContrast", "Equalize", "Invert", "Rotate", "Posterize", "Solarize", "SolarizeAdd",
    "Color", "Contrast", "Brightness", "Sharpness", "ShearX", "ShearY", "TranslateXRel",
    "TranslateYRel",
)  # fmt: skip
RAND_INCREASING_TRANSFORMS = (
    "AutoContrast", "Equalize", "Invert", "Rotate", "PosterizeIncreasing", "SolarizeIncreasing",
    "SolarizeAdd", "ColorIncreasing", "ContrastIncreasing", "BrightnessIncreasing",
    "SharpnessIncreasing", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel",
)  # fmt: skip

# "random": each resize or geometric op picks bilinear or bicubic at random (timm's
# `--train-interpolation random`, whose RandAugment then keeps its own random default).
INTERPOLATIONS = {
    "bicubic": Image.BICUBIC,
    "bilinear": Image.BILINEAR,
    "nearest": Image.NEAREST,
    "random": (Image.BILINEAR, Image.BICUBIC),
}


def pick_resample(resample, rng: np.random.Generator) -> int:
    """A PIL resampling filter: `resample` itself, or one of its choices at random."""
    if isinstance(resample, tuple):
        return resample[int(rng.integers(len(resample)))]
    return resample


def _negate(value: float, rng: np.random.Generator) -> float:
    """timm's _randomly_negate: the sign flips with probability 0.5."""
    return -value if rng.random() > 0.5 else value


def _affine(img, matrix, fill, resample, rng):
    resample = pick_resample(resample, rng)
    return img.transform(img.size, Image.AFFINE, matrix, resample=resample, fillcolor=fill)


def _posterize(img, bits: int):
    """Keeps the `bits` most significant bits; bits=0 gives black, as ImageOps.posterize did
    before Pillow rejected 0 (timm's PosterizeIncreasing reaches 0 at magnitude 10)."""
    mask = ~(2 ** (8 - bits) - 1) & 0xFF
    return img.point([i & mask for i in range(256)] * len(img.getbands()))


def _solarize_add(img, add: int, thresh: int = 128):
    lut = [min(255, i + add) if i < thresh else i for i in range(256)]
    return img.point(lut * len(img.getbands()))


def _apply(name: str, img, level: float, rng, fill, resample):
    """One op at `level` in [0, 10], with timm's level -> argument mappings."""
    frac = level / LEVEL_DENOM
    if name == "AutoContrast":
        return ImageOps.autocontrast(img)
    if name == "Equalize":
        return ImageOps.equalize(img)
    if name == "Invert":
        return ImageOps.invert(img)
    if name == "Rotate":
        angle = _negate(frac * 30.0, rng)
        return img.rotate(angle, resample=pick_resample(resample, rng), fillcolor=fill)
    if name in ("Posterize", "PosterizeIncreasing"):
        bits = int(frac * 4)
        bits = 4 - bits if name == "PosterizeIncreasing" else bits
        return img if bits >= 8 else _posterize(img, bits)
    if name in ("Solarize", "SolarizeIncreasing"):
        thresh = int(frac * 256)
        return ImageOps.solarize(img, 256 - thresh if name == "SolarizeIncreasing" else thresh)
    if name == "SolarizeAdd":
        return _solarize_add(img, int(frac * 110))
    enhancers = {
        "Color": ImageEnhance.Color,
        "Contrast": ImageEnhance.Contrast,
        "Brightness": ImageEnhance.Brightness,
        "Sharpness": ImageEnhance.Sharpness,
    }
    base = name.removesuffix("Increasing")
    if base in enhancers:
        if name.endswith("Increasing"):
            factor = max(0.1, 1.0 + _negate(frac * 0.9, rng))
        else:
            factor = frac * 1.8 + 0.1
        return enhancers[base](img).enhance(factor)
    if name in ("ShearX", "ShearY"):
        shear = _negate(frac * 0.3, rng)
        matrix = (1, shear, 0, 0, 1, 0) if name == "ShearX" else (1, 0, 0, shear, 1, 0)
        return _affine(img, matrix, fill, resample, rng)
    if name in ("TranslateXRel", "TranslateYRel"):
        pct = _negate(frac * 0.45, rng)
        if name == "TranslateXRel":
            return _affine(img, (1, 0, pct * img.size[0], 0, 1, 0), fill, resample, rng)
        return _affine(img, (1, 0, 0, 0, 1, pct * img.size[1]), fill, resample, rng)
    raise ValueError(f"Unknown RandAugment op {name!r}.")


class RandAugment:
    """`img -> img` (PIL RGB), timm RandAugment; see the module docstring."""

    def __init__(
        self,
        ops: tuple[str, ...],
        *,
        magnitude: float = 10.0,
        num_layers: int = 2,
        magnitude_std: float = 0.0,
        magnitude_max: float = LEVEL_DENOM,
        fill: tuple[int, int, int] = (128, 128, 128),
        interpolation: str = "bicubic",
    ):
        self.ops = tuple(ops)
        self.magnitude = float(magnitude)
        self.num_layers = int(num_layers)
        self.magnitude_std = float(magnitude_std)
        self.magnitude_max = float(magnitude_max)
        self.fill = tuple(int(v) for v in fill)
        self.resample = INTERPOLATIONS[interpolation]

    @classmethod
    def from_string(cls, spec: str, *, mean=(0.485, 0.456, 0.406), interpolation="bicubic"):
        """Parses timm's 'rand-m9-n2-mstd0.5-mmax10-inc1' (sections in any order)."""
        parts = spec.split("-")
        if parts[0] != "rand":
            raise ValueError(f"RandAugment spec must start with 'rand-', got {spec!r}.")
        kwargs: dict = {}
        ops = RAND_TRANSFORMS
        for part in parts[1:]:
            match = re.fullmatch(r"([a-z]+)(\d.*)", part)
            if not match:
                raise ValueError(f"Cannot parse section {part!r} of RandAugment spec {spec!r}.")
            key, value = match.groups()
            if key == "m":
                kwargs["magnitude"] = int(value)
            elif key == "n":
                kwargs["num_layers"] = int(value)
            elif key == "mstd":
                std = float(value)
                kwargs["magnitude_std"] = float("inf") if std > 100 else std
            elif key == "mmax":
                kwargs["magnitude_max"] = int(value)
            elif key == "inc":
                ops = RAND_INCREASING_TRANSFORMS if int(value) else RAND_TRANSFORMS
            else:
                raise ValueError(f"Unknown section {part!r} in RandAugment spec {spec!r}.")
        fill = tuple(min(255, round(255 * v)) for v in mean)
        return cls(ops, fill=fill, interpolation=interpolation, **kwargs)

    def _level(self, rng: np.random.Generator) -> float:
        magnitude = self.magnitude
        if self.magnitude_std == float("inf"):
            magnitude = rng.uniform(0.0, magnitude)
        elif self.magnitude_std > 0:
            magnitude = rng.normal(magnitude, self.magnitude_std)
        return max(0.0, min(magnitude, self.magnitude_max))

    def __call__(self, img: Image.Image, rng: np.random.Generator) -> Image.Image:
        for op_index in rng.integers(0, len(self.ops), size=self.num_layers):
            if rng.random() > 0.5:  # each chosen op fires with probability 0.5
                continue
            img = _apply(self.ops[op_index], img, self._level(rng), rng, self.fill, self.resample)
        return img
