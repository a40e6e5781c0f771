"""Depthwise 2-D convolution (stride 1, 'same' zero padding) and how it is computed.

`(B, H, W, C)` with a `(kh, kw, C)` kernel -> `(B, H, W, C)`; every form here gives the same
values. `conv2d(x, kernel, impl)` is the one place that picks the form:

  "xla"    XLA's grouped convolution (`feature_group_count=C`): cuDNN on GPU, the native
           convolution on TPU.
  "shift"  kh*kw shifted multiply-adds with a hand-written VJP (`shifted_conv2d`): on CPU
           a train step 40-50x faster than XLA's grouped convolution (k = 3, 7, 9) with as
           little memory (`benchmarks/depthwise.py`, benchmarks/README.md).
  "auto"   "shift" when traced for the CPU (`backend.platform()`), else "xla".
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from smlp_jax.models import backend, xla_cpu

Array = jax.Array

IMPLS = ("auto", "shift", "xla")

# Bytes of padded input per chunk of images in the kernel gradient: small enough that a
# tap's shifted slice of the chunk stays in cache (see `_kernel_grad`).
KERNEL_GRAD_CHUNK_BYTES = 4 << 20


def same_padding(k: int) -> tuple[int, int]:
    """'same' padding of a stride-1 window: the extra pixel of an even k goes after."""
    return (k - 1) // 2, k - 1 - (k - 1) // 2


def pad_same(x: Array, kh: int, kw: int, mirror: bool = False) -> Array:
    """Zero-pads H and W of `(B, H, W, C)` for a 'same' kh x kw window (`mirror`: the
    transposed window's padding, before and after swapped)."""
    pads = [same_padding(kh), same_padding(kw)]
    if mirror:
        pads = [(hi, lo) for lo, hi in pads]
    return jnp.pad(x, ((0, 0), *pads, (0, 0)))


def _shifted_sum(xp: Array, kernel: Array, h: int, w: int, flip: bool = False) -> Array:
    """`sum_ij xp[:, i:i+h, j:j+w, :] * kernel[i, j]`: one fused elementwise loop in XLA."""
    kh, kw = kernel.shape[:2]
    y = None
    for i in range(kh):
        for j in range(kw):
            a, b = (kh - 1 - i, kw - 1 - j) if flip else (i, j)
            term = xp[:, a : a + h, b : b + w, :] * kernel[i, j]
            y = term if y is None else y + term
    return y


def _shifted_forward(x: Array, kernel: Array) -> Array:
    return _shifted_sum(pad_same(x, *kernel.shape[:2]), kernel, x.shape[1], x.shape[2])


def _kernel_grad(xp: Array, g: Array, kh: int, kw: int, chunk_bytes: int) -> Array:
    """`dk[i, j, c] = sum_{b,y,x} xp[b, y+i, x+j, c] g[b, y, x, c]`, float32, as `(kh*kw, C)`.

    `xp (B, H+kh-1, W+kw-1, C)` is the zero-padded input, `g (B, H, W, C)` the output's
    cotangent. One reduction per tap, in a loop so that one shifted slice exists at a time
    (unrolled, XLA materialises every slice: kh*kw activations). XLA CPU still writes each
    tap's slice out before reducing it, so the images go through in chunks of at most
    `chunk_bytes` (at least one image), taps inside: the slice stays in cache.
    """
    b, hp, wp, c = xp.shape
    h, w = hp - kh + 1, wp - kw + 1
    n = max(1, min(b, chunk_bytes // (hp * wp * c * xp.dtype.itemsize)))
    while b % n:  # the largest chunk that divides the batch
        n -= 1
    xp = xp.reshape(b // n, n, hp, wp, c)
    g = g.astype(jnp.float32).reshape(b // n, n, h, w, c)

    def chunk(acc, xg):
        xc, gc = xg

        def tap(_, t):
            shifted = jax.lax.dynamic_slice(xc, (0, t // kw, t % kw, 0), (n, h, w, c))
            return None, jnp.sum(shifted.astype(jnp.float32) * gc, axis=(0, 1, 2))

        return acc + jax.lax.scan(tap, None, jnp.arange(kh * kw))[1], None

    dk, _ = jax.lax.scan(chunk, jnp.zeros((kh * kw, c), jnp.float32), (xp, g))
    return dk


@functools.cache
def _shifted_with_vjp(chunk_bytes: int):
    @jax.custom_vjp
    def conv(x: Array, kernel: Array) -> Array:
        # On CPU the output is stored: otherwise XLA CPU fuses the whole tap loop into each
        # consumer (activation, BatchNorm statistics, residual add, their backward).
        return xla_cpu.stored(_shifted_forward(x, kernel), "depthwise_output")

    def fwd(x, kernel):
        return conv(x, kernel), (x, kernel)

    def bwd(res, g):
        x, kernel = res
        (kh, kw), (h, w) = kernel.shape[:2], x.shape[1:3]
        # dx is the transposed correlation: the same shifted sum over the cotangent with
        # the kernel flipped and the padding mirrored.
        dx = _shifted_sum(pad_same(g, kh, kw, mirror=True), kernel, h, w, flip=True)
        dk = _kernel_grad(pad_same(x, kh, kw), g, kh, kw, chunk_bytes)
        return dx, dk.reshape(kernel.shape).astype(kernel.dtype)

    conv.defvjp(fwd, bwd)
    return conv


def shifted_conv2d(
    x: Array,
    kernel: Array,
    *,
    custom_vjp: bool = True,
    chunk_bytes: int = KERNEL_GRAD_CHUNK_BYTES,
) -> Array:
    """The depthwise convolution as kh*kw shifted multiply-adds, which XLA fuses into one
    loop. The VJP is written by hand because JAX's autodiff of the sum stores one shifted
    copy of the input per tap (42 GB for a ConvMixer-768/32 train step at batch 8); the
    hand-written backward keeps only `x` and recomputes each shift where it is used.
    `custom_vjp=False` (autodiff) and `chunk_bytes` (the kernel gradient's image chunks)
    exist so that benchmarks/depthwise.py can time the forms this replaced.
    """
    if not custom_vjp:
        return _shifted_forward(x, kernel)
    return _shifted_with_vjp(int(chunk_bytes))(x, kernel)


def xla_conv2d(x: Array, kernel: Array) -> Array:
    """The depthwise convolution as XLA's grouped convolution."""
    kh, kw, _ = kernel.shape
    return jax.lax.conv_general_dilated(
        x,
        kernel[:, :, None, :],
        window_strides=(1, 1),
        padding=(same_padding(kh), same_padding(kw)),
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=x.shape[-1],
    )


def conv2d(x: Array, kernel: Array, impl: str = "auto") -> Array:
    """Depthwise cross-correlation of `x (B, H, W, C)` with `kernel (kh, kw, C)`, computed
    by `impl` (see the module docstring)."""
    if impl not in IMPLS:
        raise ValueError(f"depthwise impl must be one of {IMPLS}, got {impl!r}")
    if impl == "auto":
        impl = "shift" if backend.on_cpu() else "xla"
    return shifted_conv2d(x, kernel) if impl == "shift" else xla_conv2d(x, kernel)
