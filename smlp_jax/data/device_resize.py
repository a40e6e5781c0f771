"""The RandomResizedCrop's resize on the device: Pillow's `Image.resize(size, filter, box)`.

With `config.input.on_device="resize_and_augment"` the host decodes: each example travels
as its decoded image zero-padded to (P, P, 3) uint8 (`input.resize_max`), the crop box (left,
top, right, bottom; float, in that image's pixels) and the image's true (height, width).
Here, in the train step, the crop is resampled to (S, S, 3) uint8 as Pillow does it
(Resample.c): a separable filter (bicubic a=-0.5 or bilinear) whose support widens by the
downscale factor, the taps of each output pixel taken from the window Pillow takes
(clipped at the image's edges, not the box's), normalised to sum 1; one pass, rounded to
uint8, then the other, rounded to uint8. The order is Pillow's: horizontal first, except
that Pillow >= 13 runs the vertical pass first when the height shrinks by more than
twice as many pixels as the width (`VERTICAL_FIRST`, read from the installed Pillow, so
that this path matches the host's). Each pass is one dense (S, P) weight matrix per
example applied as a matmul at full float32 precision. Pillow rounds fixed-point (22-bit)
weights instead, so a pixel can differ by one level (how often is measured against
Pillow on the same images).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import PIL

FILTERS = ("bicubic", "bilinear")
# Pillow 13 (python-pillow/Pillow#9549) may run the vertical pass first; earlier never.
VERTICAL_FIRST = int(PIL.__version__.split(".")[0]) >= 13
_SUPPORT = {"bicubic": 2.0, "bilinear": 1.0}


def _filter(x: jax.Array, interpolation: str) -> jax.Array:
    x = jnp.abs(x)
    if interpolation == "bilinear":
        return jnp.where(x < 1.0, 1.0 - x, 0.0)
    a = -0.5
    near = ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    far = (((x - 5.0) * x + 8.0) * x - 4.0) * a
    return jnp.where(x < 1.0, near, jnp.where(x < 2.0, far, 0.0))


def pass_weights(
    out_size: int, in0: jax.Array, in1: jax.Array, in_size: jax.Array, padded: int, interpolation
) -> jax.Array:
    """(out_size, padded) float32: row o holds the taps of output pixel o over input pixels
    0..padded-1 for the span [in0, in1) of an axis `in_size` long (Pillow's
    precompute_coeffs; zero outside its window and past `in_size`)."""
    scale = (in1 - in0) / out_size
    filterscale = jnp.maximum(scale, 1.0)
    support = _SUPPORT[interpolation] * filterscale
    center = in0 + (jnp.arange(out_size, dtype=jnp.float32) + 0.5) * scale
    low = jnp.maximum(jnp.floor(center - support + 0.5), 0.0)
    high = jnp.minimum(jnp.floor(center + support + 0.5), in_size.astype(jnp.float32))
    i = jnp.arange(padded, dtype=jnp.float32)[None, :]
    inside = (i >= low[:, None]) & (i < high[:, None])
    taps = jnp.where(inside, _filter((i - center[:, None] + 0.5) / filterscale, interpolation), 0)
    total = taps.sum(axis=1, keepdims=True)
    return jnp.where(total != 0, taps / jnp.where(total != 0, total, 1.0), 0.0)


def _round8(x: jax.Array) -> jax.Array:
    return jnp.clip(jnp.floor(x + 0.5), 0, 255)


def resize_one(
    image: jax.Array, box: jax.Array, hw: jax.Array, size: int, interpolation: str
) -> jax.Array:
    """uint8 (P, P, 3) padded image, box (4,) float32, hw (2,) int32 -> uint8 (size, size, 3)."""
    padded = image.shape[0]
    x = image.astype(jnp.float32)
    across = pass_weights(size, box[0], box[2], hw[1], padded, interpolation)  # (S, P)
    down = pass_weights(size, box[1], box[3], hw[0], padded, interpolation)  # (S, P)
    highest = jax.lax.Precision.HIGHEST  # TF32/bf16 passes would cost several levels

    def horizontal(v):
        return _round8(jnp.einsum("ow,hwc->hoc", across, v, precision=highest))

    def vertical(v):
        return _round8(jnp.einsum("oh,hxc->oxc", down, v, precision=highest))

    out = vertical(horizontal(x))  # (S, S, 3)
    if VERTICAL_FIRST:
        shrink_h, shrink_w = hw[0] - size, hw[1] - size
        out = jnp.where((shrink_h > 0) & (shrink_h > 2 * shrink_w), horizontal(vertical(x)), out)
    return out.astype(jnp.uint8)


def resize_batch(
    images: jax.Array, boxes: jax.Array, hws: jax.Array, size: int, interpolation: str
) -> jax.Array:
    """uint8 (B, P, P, 3), (B, 4), (B, 2) -> uint8 (B, size, size, 3)."""
    if interpolation not in FILTERS:
        raise ValueError(f"device resize has {' and '.join(FILTERS)}, not {interpolation!r}")
    return jax.vmap(lambda i, b, h: resize_one(i, b, h, size, interpolation))(images, boxes, hws)


def pad_image(array: np.ndarray, padded: int) -> np.ndarray:
    """uint8 (h, w, 3) with h, w <= padded -> uint8 (padded, padded, 3), zeros beyond."""
    out = np.zeros((padded, padded, 3), np.uint8)
    out[: array.shape[0], : array.shape[1]] = array
    return out
