"""The train augmentation after the crop, on the accelerator: flip, RandAugment, normalise,
random erasing; jittable and vmapped over the batch (`config.input.on_device="augment"`).

`DeviceAugment(input_cfg, image_size)(key, images)`: uint8 (B, S, S, 3), the host's
RandomResizedCrop (or the simple preset's resize + translation), -> float32 (B, S, S, 3),
what the host path (`transforms.TrainTransform`) returns for the same recipe. Example b
draws from `fold_in(key, b)`; the train step passes `fold_in(seed, step)`, so the
augmentation is a function of (seed, step, row of the global batch): a resumed run replays
it, and it does not depend on the number of devices or processes.

RandAugment is timm's (`rand-m9-mstd0.5-inc1`): per layer an op drawn uniformly from the
spec's list, fired with probability 0.5, its magnitude ~ N(m, mstd) clipped to [0, mmax],
its sign (for signed ops) + or - with probability 0.5. The ops compute what Pillow computes
on uint8 images, in float32 holding integers:
- lookup-table ops (AutoContrast, Equalize, Invert, Posterize, Solarize, SolarizeAdd): a
  (3, 256) table per image from its per-channel histogram, exact (AutoContrast includes
  the entries where Pillow's float64 arithmetic lands one below the exact quotient);
- blends (Color, Contrast, Brightness, Sharpness): `trunc(d + f * (x - d))` with Pillow's
  degenerate images (ITU-R 601 luma in Pillow's fixed point, its rounded mean, black, the
  3x3 SMOOTH filter with unfiltered borders), exact;
- affine warps (Rotate, ShearX/Y, TranslateX/YRel): Pillow's inverse mapping at pixel
  centres, its bicubic (a = -1, Horner form, edge clamping, truncation) or bilinear
  filter, and the fill colour outside; float32 against Pillow's float64: within one level.
Every op is an exact identity when not chosen, so each layer runs the three stages (table,
blend, warp) with two of them idle: under `vmap`, a per-example `switch` would run every
branch anyway.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from smlp_jax.data.randaugment import LEVEL_DENOM, RandAugment

_LUT_OPS = {
    "AutoContrast": 1, "Equalize": 2, "Invert": 3, "Posterize": 4, "PosterizeIncreasing": 4,
    "Solarize": 5, "SolarizeIncreasing": 5, "SolarizeAdd": 6,
}  # fmt: skip
_BLEND_OPS = {
    "Color": 1, "ColorIncreasing": 1, "Contrast": 2, "ContrastIncreasing": 2,
    "Brightness": 3, "BrightnessIncreasing": 3, "Sharpness": 4, "SharpnessIncreasing": 4,
}  # fmt: skip
_AFFINE_OPS = {"Rotate": 1, "ShearX": 2, "ShearY": 3, "TranslateXRel": 4, "TranslateYRel": 5}
DEVICE_OPS = (*_LUT_OPS, *_BLEND_OPS, *_AFFINE_OPS)
DEVICE_INTERPOLATIONS = ("bicubic", "bilinear")


def check_device_input(cfg: dict) -> None:
    """ValueError (one line) for a `config.input` the device path cannot run as the host does."""
    if cfg["interpolation"] not in DEVICE_INTERPOLATIONS and cfg["randaugment"]:
        raise ValueError(
            f"config.input.on_device={cfg.get('on_device')!r} runs RandAugment's warps with "
            f"{' or '.join(DEVICE_INTERPOLATIONS)}, not interpolation={cfg['interpolation']!r} "
            "(a filter drawn per op on the host); set config.input.interpolation='bicubic' "
            "(the official recipe) or config.input.on_device=''."
        )
    if cfg["randaugment"]:
        ops = RandAugment.from_string(cfg["randaugment"]).ops
        lacking = [op for op in ops if op not in DEVICE_OPS]
        if lacking:
            raise ValueError(
                f"config.input.on_device={cfg.get('on_device')!r} has no {', '.join(lacking)} "
                f"(RandAugment {cfg['randaugment']!r}); it runs {', '.join(DEVICE_OPS)}. Use "
                "config.input.on_device=''."
            )


@functools.cache
def _autocontrast_corrections() -> np.ndarray:
    """Sorted keys lo * 65536 + hi * 256 + i where Pillow's `int(i * scale + offset)`
    (float64, scale = 255 / (hi - lo), offset = -lo * scale) is one below the exact
    floor((i - lo) * 255 / (hi - lo)) in [0, 255] (at exact integers; 12,094 entries)."""
    i = np.arange(256, dtype=np.float64)
    keys = []
    for lo in range(255):
        hi = np.arange(lo + 1, 256)[:, None]
        scale = 255.0 / (hi - lo)
        pillow = np.clip(np.trunc(i * scale + (-lo * scale)), 0, 255)
        exact = np.clip(((np.arange(256) - lo) * 255) // (hi - lo), 0, 255)
        rows, cols = np.nonzero(pillow != exact)
        assert np.all(pillow[rows, cols] == exact[rows, cols] - 1)
        keys.append(lo * 65536 + hi[rows, 0] * 256 + cols)
    return np.sort(np.concatenate(keys)).astype(np.int32)


def _histogram(x: jax.Array) -> jax.Array:
    """(H, W, 3) int32 in [0, 255] -> (3, 256) int32 counts per channel."""
    return jnp.zeros((3, 256), jnp.int32).at[jnp.arange(3), x].add(1)


def _autocontrast_lut(hist: jax.Array) -> jax.Array:
    """ImageOps.autocontrast (cutoff 0): each channel's [lo, hi] stretched to [0, 255]."""
    i = jnp.arange(256)
    nonzero = hist > 0
    lo = jnp.argmax(nonzero, axis=1)[:, None]
    hi = 255 - jnp.argmax(nonzero[:, ::-1], axis=1)[:, None]
    value = ((i - lo) * 255) // jnp.maximum(hi - lo, 1)
    keys = jnp.asarray(_autocontrast_corrections())
    key = lo * 65536 + hi * 256 + i
    found = keys[jnp.clip(jnp.searchsorted(keys, key), 0, keys.shape[0] - 1)] == key
    value = jnp.clip(value - found, 0, 255)
    return jnp.where(hi > lo, value, i)


def _equalize_lut(hist: jax.Array) -> jax.Array:
    """ImageOps.equalize: lut[i] = (step // 2 + #pixels below i) // step, step =
    (#pixels - #pixels at the top value) // 255; identity for flat or near-flat channels."""
    i = jnp.arange(256)
    nonzero = hist > 0
    top = 255 - jnp.argmax(nonzero[:, ::-1], axis=1)
    at_top = jnp.take_along_axis(hist, top[:, None], axis=1)
    step = (hist.sum(1, keepdims=True) - at_top) // 255
    below = jnp.cumsum(hist, axis=1) - hist
    value = jnp.clip((step // 2 + below) // jnp.maximum(step, 1), 0, 255)
    usable = (nonzero.sum(1, keepdims=True) > 1) & (step > 0)
    return jnp.where(usable, value, i)


def _luma(x: jax.Array) -> jax.Array:
    """Pillow's RGB -> L: (R 19595 + G 38470 + B 7471 + 2^15) >> 16. (H, W, 3) -> (H, W, 1)."""
    xi = x.astype(jnp.int32)
    luma = (xi[..., 0] * 19595 + xi[..., 1] * 38470 + xi[..., 2] * 7471 + 0x8000) >> 16
    return luma[..., None].astype(jnp.float32)


def _smooth(x: jax.Array) -> jax.Array:
    """ImageFilter.SMOOTH: round((sum of the 3x3 neighbourhood + 4 centre) / 13) inside, the
    border pixels unchanged."""
    xi = x.astype(jnp.int32)
    height, width = x.shape[:2]
    window = sum(
        xi[dy : height - 2 + dy, dx : width - 2 + dx] for dy in range(3) for dx in range(3)
    )
    total = window + 4 * xi[1:-1, 1:-1]
    inner = (2 * total + 13) // 26
    return xi.at[1:-1, 1:-1].set(inner).astype(jnp.float32)


def _cubic(v1, v2, v3, v4, d):
    """Pillow's bicubic (a = -1) through v1..v4 at fraction d of the way from v2 to v3."""
    p2 = v3 - v1
    p3 = 2.0 * (v1 - v2) + v3 - v4
    p4 = v2 - v1 - v3 + v4
    return v2 + d * (p2 + d * (p3 + d * p4))


def _warp(x: jax.Array, matrix: jax.Array, fill: jax.Array, bicubic: bool) -> jax.Array:
    """Image.transform(AFFINE, matrix): output pixel (i, j) samples the input at
    (a (j + .5) + b (i + .5) + c, d (j + .5) + e (i + .5) + f); fill outside the image."""
    height, width = x.shape[:2]
    rows, cols = jnp.meshgrid(
        jnp.arange(height, dtype=jnp.float32) + 0.5,
        jnp.arange(width, dtype=jnp.float32) + 0.5,
        indexing="ij",
    )
    a, b, c, d, e, f = (matrix[k] for k in range(6))
    xin = a * cols + b * rows + c
    yin = d * cols + e * rows + f
    inside = (xin >= 0) & (xin < width) & (yin >= 0) & (yin < height)
    u, v = xin - 0.5, yin - 0.5
    x0, y0 = jnp.floor(u), jnp.floor(v)
    dx, dy = (u - x0)[..., None], (v - y0)[..., None]
    x0, y0 = x0.astype(jnp.int32), y0.astype(jnp.int32)
    taps = range(-1, 3) if bicubic else range(2)
    col = [jnp.clip(x0 + t, 0, width - 1) for t in taps]
    row = [jnp.clip(y0 + t, 0, height - 1) for t in taps]
    if bicubic:
        lines = [_cubic(*(x[r, q] for q in col), dx) for r in row]
        value = _cubic(*lines, dy)
    else:
        top, bottom = (x[r, col[0]] + (x[r, col[1]] - x[r, col[0]]) * dx for r in row)
        value = top + (bottom - top) * dy
    value = jnp.floor(jnp.clip(value, 0.0, 255.0))
    return jnp.where(inside[..., None], value, fill)


def _rotation(angle, width: int, height: int) -> jax.Array:
    """Image.rotate(angle) (degrees, counter-clockwise, about the centre) as the affine
    output -> input mapping Image.transform takes."""
    theta = -angle * (math.pi / 180.0)
    cos, sin = jnp.cos(theta), jnp.sin(theta)
    cx, cy = width / 2.0, height / 2.0
    return jnp.stack([cos, sin, -cos * cx - sin * cy + cx, -sin, cos, sin * cx - cos * cy + cy])


class DeviceAugment:
    """`(key, uint8 (B, S, S, 3)) -> float32 (B, S, S, 3)`; see the module docstring."""

    def __init__(self, input_cfg: dict, image_size: int):
        check_device_input(input_cfg)
        cfg = dict(input_cfg)
        self.image_size = int(image_size)
        self.hflip = float(cfg["hflip"])
        mean = np.asarray(cfg["mean"], np.float32)
        # The host's Normalize constants, so both paths normalise bit for bit alike.
        self.offset = mean * 255.0
        self.scale = 1.0 / (np.asarray(cfg["std"], np.float32) * 255.0)
        self.randaugment = (
            RandAugment.from_string(cfg["randaugment"], mean=cfg["mean"])
            if cfg["randaugment"]
            else None
        )
        self.bicubic = cfg["interpolation"] != "bilinear"
        self.re_prob, self.re_mode = float(cfg["re_prob"]), cfg["re_mode"]
        self.re_count = int(cfg["re_count"])
        if self.randaugment is not None:
            ops = self.randaugment.ops
            self._lut_kind = np.asarray([_LUT_OPS.get(op, 0) for op in ops], np.int32)
            self._blend_kind = np.asarray([_BLEND_OPS.get(op, 0) for op in ops], np.int32)
            self._affine_kind = np.asarray([_AFFINE_OPS.get(op, 0) for op in ops], np.int32)
            self._increasing = np.asarray([op.endswith("Increasing") for op in ops])
            self._histograms = any(op in ("AutoContrast", "Equalize") for op in ops)

    # -- RandAugment ------------------------------------------------------------------------

    def sample_layers(self, key: jax.Array) -> dict[str, jax.Array]:
        """One example's RandAugment draws: op (n,) int32 index into the spec's op list,
        fire (n,) bool, level (n,) float32 in [0, mmax], sign (n,) float32 +-1."""
        ra = self.randaugment
        n = ra.num_layers
        k_op, k_fire, k_level, k_sign = jax.random.split(key, 4)
        op = jax.random.randint(k_op, (n,), 0, len(ra.ops))
        fire = jax.random.uniform(k_fire, (n,)) <= 0.5
        if ra.magnitude_std == float("inf"):
            level = jax.random.uniform(k_level, (n,), maxval=ra.magnitude)
        elif ra.magnitude_std > 0:
            level = ra.magnitude + ra.magnitude_std * jax.random.normal(k_level, (n,))
        else:
            level = jnp.full((n,), ra.magnitude)
        level = jnp.clip(level, 0.0, ra.magnitude_max)
        sign = jnp.where(jax.random.uniform(k_sign, (n,)) > 0.5, -1.0, 1.0)
        return {"op": op, "fire": fire, "level": level, "sign": sign}

    def apply_op(self, x: jax.Array, op, level, sign) -> jax.Array:
        """Op number `op` of the spec's list at `level` in [0, 10] with `sign` (+-1) on one
        float32 (H, W, 3) image holding integers in [0, 255]; timm's level -> argument maps."""
        height, width = x.shape[:2]
        frac = level / LEVEL_DENOM
        inc = jnp.asarray(self._increasing)[op]
        lut_kind = jnp.asarray(self._lut_kind)[op]
        blend_kind = jnp.asarray(self._blend_kind)[op]
        affine_kind = jnp.asarray(self._affine_kind)[op]

        # Lookup tables; kind 0 is the identity.
        i = jnp.arange(256)
        xi = x.astype(jnp.int32)
        bits = jnp.floor(frac * 4).astype(jnp.int32)
        bits = jnp.where(inc, 4 - bits, bits)
        thresh = jnp.floor(frac * 256).astype(jnp.int32)
        thresh = jnp.where(inc, 256 - thresh, thresh)
        add = jnp.floor(frac * 110).astype(jnp.int32)
        shift = 8 - bits
        luts = [
            jnp.broadcast_to(i, (3, 256)),
            None,
            None,
            jnp.broadcast_to(255 - i, (3, 256)),
            jnp.broadcast_to((i >> shift) << shift, (3, 256)),
            jnp.broadcast_to(jnp.where(i < thresh, i, 255 - i), (3, 256)),
            jnp.broadcast_to(jnp.where(i < 128, jnp.minimum(i + add, 255), i), (3, 256)),
        ]
        if self._histograms:
            hist = _histogram(xi)
            luts[1], luts[2] = _autocontrast_lut(hist), _equalize_lut(hist)
        else:
            luts[1] = luts[2] = luts[0]
        lut = jnp.stack(luts)[lut_kind]
        x = lut[jnp.arange(3), xi].astype(jnp.float32)

        # Blends trunc(d + f (x - d)); f = 1 is the identity, whatever d.
        factor = jnp.where(inc, jnp.maximum(0.1, 1.0 + sign * frac * 0.9), frac * 1.8 + 0.1)
        factor = jnp.where(blend_kind > 0, factor, 1.0)
        luma = _luma(x)
        area = height * width
        mean = (2 * jnp.sum(luma.astype(jnp.int32)) + area) // (2 * area)
        degenerate = jnp.select(
            [blend_kind == 1, blend_kind == 2, blend_kind == 3],
            [jnp.broadcast_to(luma, x.shape), jnp.full(x.shape, mean, jnp.float32), 0.0 * x],
            _smooth(x),
        )
        x = jnp.floor(jnp.clip(degenerate + factor * (x - degenerate), 0.0, 255.0))

        # Affine warps; the identity matrix samples every pixel at its centre, unchanged.
        angle = sign * frac * 30.0
        shear = sign * frac * 0.3
        shift_x = sign * frac * 0.45 * width
        shift_y = sign * frac * 0.45 * height
        one, zero = jnp.ones(()), jnp.zeros(())
        matrices = jnp.stack(
            [
                jnp.stack([one, zero, zero, zero, one, zero]),
                _rotation(angle, width, height),
                jnp.stack([one, shear, zero, zero, one, zero]),
                jnp.stack([one, zero, zero, shear, one, zero]),
                jnp.stack([one, zero, shift_x, zero, one, zero]),
                jnp.stack([one, zero, zero, zero, one, shift_y]),
            ]
        )
        fill = jnp.asarray(self.randaugment.fill, jnp.float32)
        return _warp(x, matrices[affine_kind], fill, self.bicubic)

    # -- random erasing ---------------------------------------------------------------------

    def erasing_boxes(self, key: jax.Array, height: int, width: int) -> dict[str, jax.Array]:
        """timm RandomErasing's boxes for one image: for each of re_count slots, valid (bool;
        the draw fired, the slot is within the drawn count and one of 10 attempts fitted),
        top, left, h, w (int32)."""
        slots = max(self.re_count, 1)
        k_fire, k_count, k_area, k_aspect, k_top, k_left = jax.random.split(key, 6)
        fire = jax.random.uniform(k_fire) <= self.re_prob
        if self.re_count <= 1:
            count = jnp.ones((), jnp.int32)
        else:
            count = jax.random.randint(k_count, (), 1, self.re_count + 1)
        min_area, max_area, min_aspect = 0.02, 1 / 3, 0.3
        area = jax.random.uniform(k_area, (slots, 10), minval=min_area, maxval=max_area)
        target = area * (height * width) / count
        log_aspect = jax.random.uniform(
            k_aspect, (slots, 10), minval=math.log(min_aspect), maxval=math.log(1 / min_aspect)
        )
        aspect = jnp.exp(log_aspect)
        h = jnp.round(jnp.sqrt(target * aspect)).astype(jnp.int32)
        w = jnp.round(jnp.sqrt(target / aspect)).astype(jnp.int32)
        fits = (w < width) & (h < height)
        first = jnp.argmax(fits, axis=1)
        h = jnp.take_along_axis(h, first[:, None], 1)[:, 0]
        w = jnp.take_along_axis(w, first[:, None], 1)[:, 0]
        top = jnp.floor(jax.random.uniform(k_top, (slots,)) * (height - h + 1)).astype(jnp.int32)
        left = jnp.floor(jax.random.uniform(k_left, (slots,)) * (width - w + 1)).astype(jnp.int32)
        valid = fire & fits.any(axis=1) & (jnp.arange(slots) < count)
        return {"valid": valid, "top": top, "left": left, "h": h, "w": w}

    def _erase(self, key: jax.Array, x: jax.Array) -> jax.Array:
        height, width, channels = x.shape
        k_box, k_fill = jax.random.split(key)
        boxes = self.erasing_boxes(k_box, height, width)
        rows = jnp.arange(height)[:, None]
        cols = jnp.arange(width)[None, :]
        for slot in range(max(self.re_count, 1)):
            top, left = boxes["top"][slot], boxes["left"][slot]
            inside = (rows >= top) & (rows < top + boxes["h"][slot])
            inside = inside & (cols >= left) & (cols < left + boxes["w"][slot])
            inside = (inside & boxes["valid"][slot])[..., None]
            k_slot = jax.random.fold_in(k_fill, slot)
            if self.re_mode == "pixel":
                fill = jax.random.normal(k_slot, x.shape)
            elif self.re_mode == "rand":
                fill = jax.random.normal(k_slot, (1, 1, channels))
            else:
                fill = jnp.zeros((1, 1, channels))
            x = jnp.where(inside, fill, x)
        return x

    # -- the whole recipe -------------------------------------------------------------------

    def augment_one(self, key: jax.Array, image: jax.Array) -> jax.Array:
        """One uint8 (H, W, 3) crop -> float32 (H, W, 3): flip, RandAugment, normalise, erase."""
        k_flip, k_ra, k_erase = (jax.random.fold_in(key, tag) for tag in range(3))
        x = image.astype(jnp.float32)
        if self.hflip > 0:
            x = jnp.where(jax.random.uniform(k_flip) < self.hflip, x[:, ::-1], x)
        if self.randaugment is not None:
            draws = self.sample_layers(k_ra)
            for layer in range(self.randaugment.num_layers):
                out = self.apply_op(
                    x, draws["op"][layer], draws["level"][layer], draws["sign"][layer]
                )
                x = jnp.where(draws["fire"][layer], out, x)
        x = (x - self.offset) * self.scale
        if self.re_prob > 0:
            x = self._erase(k_erase, x)
        return x

    def __call__(self, key: jax.Array, images: jax.Array) -> jax.Array:
        keys = jax.vmap(functools.partial(jax.random.fold_in, key))(jnp.arange(images.shape[0]))
        return jax.vmap(self.augment_one)(keys, images)
