"""Building blocks shared by the model families.

Every layer here initialises its parameters the way PyTorch's default does for the
matching `torch.nn` layer, so a freshly built model is statistically the same as the
official (PyTorch) one, and stores them in Flax layout (convolution kernels
`(kh, kw, in, out)`, dense kernels `(in, out)`). Activations are NHWC.

Parameters are always float32; `dtype` is the computation dtype (e.g. bfloat16).
Normalisation statistics are always computed in float32.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

Array = jax.Array


def gelu(x: Array) -> Array:
    """GELU, exact erf form (PyTorch's `nn.GELU()` default): 0.5 x (1 + erf(x / sqrt 2)).

    Written with `lax.erf` rather than `jax.nn.gelu(approximate=False)` (an erfc form):
    same values to float32 rounding (2e-7 apart), and the sMLPNet-T train step on CPU
    measured 1.34x faster (`benchmarks/smlp_formulations.py`, benchmarks/README.md).
    """
    return 0.5 * x * (1.0 + jax.lax.erf(x * 0.7071067811865476))


def _stored(g: Array) -> Array:
    """`g` itself, through a `lax.cond` XLA cannot see through: a conditional's operand
    and result are buffers, so nothing is fused across it. Both branches return `g`
    exactly (`g * 1.0 == g` for every float, NaN and -0.0 included); they differ only so
    that JAX keeps the conditional, and its predicate is a runtime value XLA cannot fold."""
    keep = jnp.isfinite(g[(0,) * g.ndim])
    return jax.lax.cond(keep, lambda t: t, lambda t: t * 1.0, g)


@jax.custom_vjp
def _grad_stored(x: Array) -> Array:
    return x


_grad_stored.defvjp(lambda x: (x, None), lambda _, g: (_stored(g),))


def store_grad(x: Array) -> Array:
    """Identity; in the backward pass the cotangent of `x` is computed once and stored.

    Put on the input of each residual branch (`x = store_grad(x); x = x + f(x)`). Why:
    the residual stream's cotangent is a chain of elementwise adds over every later
    block (with each branch's norm backward), and XLA's CPU fusion pass fuses that whole
    chain into every consumer that reads it, recomputing it there: quadratic in the depth.
    In the sMLPNet-T train step that was 30% of the time (fusions of ~850 instructions
    for each 14 x 14 x 320 cotangent; benchmarks/README.md). `lax.optimization_barrier`
    does not stop it (XLA CPU drops the barriers before fusion); the conditional does.

    Only on the CPU backend (decided when traced); elsewhere `x` is returned as is: GPU
    and TPU fusion weigh duplication by cost, and no accelerator run has measured it.
    """
    if jax.default_backend() != "cpu":
        return x
    return _grad_stored(x)


def torch_uniform_init(fan_in: int):
    """PyTorch's default Linear/Conv init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).

    This is kaiming_uniform(a=sqrt(5)) for weights and the matching bias rule; both
    reduce to the same bound.
    """
    bound = 1.0 / math.sqrt(fan_in)

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def trunc_normal_init(std: float = 0.02):
    """timm's `trunc_normal_(w, std=std)`: N(0, std^2) cut at +-2 (absolute, as timm does).

    The official `_init_weights` of ViT-style models (ViP, Hire-MLP, ...) applies it to
    their `nn.Linear` weights, with zero biases.
    """

    def init(key, shape, dtype=jnp.float32):
        return std * jax.random.truncated_normal(key, -2.0 / std, 2.0 / std, shape, dtype)

    return init


class Linear(nnx.Module):
    """Dense layer `(..., in_features) -> (..., out_features)` with PyTorch's init.

    `kernel_init` (e.g. `trunc_normal_init(0.02)`) replaces it for models whose official
    code re-initialises its Linears; the bias is then zero.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        use_bias: bool = True,
        kernel_init=None,
        dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        init = torch_uniform_init(in_features)
        shape = (in_features, out_features)
        if kernel_init is None:
            self.kernel = nnx.Param(init(rngs.params(), shape))
            bias = init(rngs.params(), (out_features,)) if use_bias else None
        else:
            self.kernel = nnx.Param(kernel_init(rngs.params(), shape))
            bias = jnp.zeros((out_features,), jnp.float32) if use_bias else None
        self.bias = nnx.Param(bias) if use_bias else None
        self.dtype = dtype

    def __call__(self, x: Array) -> Array:
        y = jnp.dot(x.astype(self.dtype), self.kernel[...].astype(self.dtype))
        if self.bias is not None:
            y = y + self.bias[...].astype(self.dtype)
        return y


class PatchConv(nnx.Module):
    """A convolution whose stride equals its kernel (patch embedding / merging).

    `(B, H, W, C_in) -> (B, H // p, W // p, C_out)`, computed as a patch reshape and one
    matmul, which is exact for non-overlapping windows. Trailing rows/columns that do not
    fill a patch are dropped, as PyTorch's strided conv does.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        patch_size: int,
        *,
        use_bias: bool = False,
        dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        fan_in = in_channels * patch_size * patch_size
        init = torch_uniform_init(fan_in)
        shape = (patch_size, patch_size, in_channels, out_channels)
        self.kernel = nnx.Param(init(rngs.params(), shape))
        self.bias = nnx.Param(init(rngs.params(), (out_channels,))) if use_bias else None
        self.patch_size = patch_size
        self.dtype = dtype

    def __call__(self, x: Array) -> Array:
        p = self.patch_size
        b, h, w, c = x.shape
        gh, gw = h // p, w // p
        x = x[:, : gh * p, : gw * p].astype(self.dtype)
        x = x.reshape(b, gh, p, gw, p, c)
        y = jnp.einsum("bhpwqc,pqco->bhwo", x, self.kernel[...].astype(self.dtype))
        if self.bias is not None:
            y = y + self.bias[...].astype(self.dtype)
        return y


def _same_padding(k: int) -> tuple[int, int]:
    """'same' padding of a stride-1 window: the extra pixel of an even k goes after."""
    return (k - 1) // 2, k - 1 - (k - 1) // 2


def _pad_same(x: Array, kh: int, kw: int, mirror: bool = False) -> Array:
    """Zero-pads H and W of `(B, H, W, C)` for a 'same' kh x kw window (`mirror`: the
    transposed window's padding, before and after swapped)."""
    pads = [_same_padding(kh), _same_padding(kw)]
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


def _shifted_depthwise(x: Array, kernel: Array) -> Array:
    """`depthwise_conv2d`'s forward, left to JAX's autodiff (benchmarks compare the two)."""
    return _shifted_sum(_pad_same(x, *kernel.shape[:2]), kernel, x.shape[1], x.shape[2])


# Bytes of padded input per chunk of images in the depthwise kernel gradient: small
# enough that a tap's shifted slice of the chunk stays in cache (see below).
_DK_CHUNK_BYTES = 4 << 20


def _depthwise_kernel_grad(
    xp: Array, g: Array, kh: int, kw: int, chunk_bytes: int | None = None
) -> Array:
    """`dk[i, j, c] = sum_{b,y,x} xp[b, y+i, x+j, c] g[b, y, x, c]`, float32, as `(kh*kw, C)`.

    `xp (B, H+kh-1, W+kw-1, C)` is the zero-padded input, `g (B, H, W, C)` the output's
    cotangent. One reduction per tap, as a loop so that one shifted slice exists at a time
    (unrolled, XLA materialises every slice before its reduction: kh*kw activations, and
    2x slower on CPU). XLA CPU still writes each tap's slice out before reducing it, so
    the images go through in chunks of at most `chunk_bytes` (default `_DK_CHUNK_BYTES`;
    at least one image), taps inside: the slice is then written and read back in cache
    instead of memory. At ConvMixer-768/32's 8 x 32 x 32 x 768 that measured 2-3x faster
    than all images per tap at k = 7 and 9 (benchmarks/README.md, "Seventh round").
    """
    b, hp, wp, c = xp.shape
    h, w = hp - kh + 1, wp - kw + 1
    chunk_bytes = _DK_CHUNK_BYTES if chunk_bytes is None else chunk_bytes
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


def shifted_depthwise_with_vjp(store_output: bool = True, chunk_bytes: int | None = None):
    """Builds `depthwise_conv2d`; the arguments exist so the benchmarks can time the forms
    it replaced (`benchmarks/depthwise.py`): `store_output=False` lets XLA CPU recompute
    the conv inside each consumer, `chunk_bytes` sets the kernel gradient's image chunks
    (`_depthwise_kernel_grad`)."""

    @jax.custom_vjp
    def depthwise_conv2d(x: Array, kernel: Array) -> Array:
        """Depthwise 2-D cross-correlation, stride 1, 'same' zero padding.

        `x (B, H, W, C)`, `kernel (kh, kw, C)` -> `(B, H, W, C)`; equal to
        `xla_depthwise_conv2d`. The forward is kh*kw shifted multiply-adds that XLA fuses
        into one loop. On CPU its output then goes through `_stored`: without that,
        XLA CPU fuses the whole kh*kw-tap loop into every consumer of the output (the
        activation, the BatchNorm's statistics and normalisation, the residual add, and
        their backward), computing the conv five times per layer in a ConvMixer train
        step; storing it made that step 1.5x faster (benchmarks/README.md, "Seventh
        round"). The VJP is written by hand because autodiff of the sum made XLA store
        one shifted copy of the input per tap (kh*kw activations per layer: 42 GB for a
        ConvMixer-768/32 train step at batch 8): here the backward keeps only `x` and
        recomputes each shift where it is used.
        """
        y = _shifted_depthwise(x, kernel)
        if store_output and jax.default_backend() == "cpu":
            y = _stored(y)
        return y

    def fwd(x, kernel):
        return depthwise_conv2d(x, kernel), (x, kernel)

    def bwd(res, g):
        x, kernel = res
        (kh, kw), (h, w) = kernel.shape[:2], x.shape[1:3]
        # dx is the transposed correlation: the same shifted sum over the cotangent with
        # the kernel flipped and the padding mirrored.
        dx = _shifted_sum(_pad_same(g, kh, kw, mirror=True), kernel, h, w, flip=True)
        dk = _depthwise_kernel_grad(_pad_same(x, kh, kw), g, kh, kw, chunk_bytes)
        return dx, dk.reshape(kernel.shape).astype(kernel.dtype)

    depthwise_conv2d.defvjp(fwd, bwd)
    return depthwise_conv2d


depthwise_conv2d = shifted_depthwise_with_vjp()


def xla_depthwise_conv2d(x: Array, kernel: Array) -> Array:
    """`depthwise_conv2d` as XLA's grouped convolution (`feature_group_count=C`)."""
    kh, kw, _ = kernel.shape
    return jax.lax.conv_general_dilated(
        x,
        kernel[:, :, None, :],
        window_strides=(1, 1),
        padding=(_same_padding(kh), _same_padding(kw)),
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=x.shape[-1],
    )


class DepthwiseConv(nnx.Module):
    """Depthwise k x k convolution, stride 1, 'same' zero padding, no bias by default.

    `(B, H, W, C) -> (B, H, W, C)`. Kernel `(k, k, 1, C)` as Flax's grouped conv stores
    it. `impl` picks how it is computed, with equal results:
      "shift"  `depthwise_conv2d`: shifted multiply-adds with a hand-written VJP. On CPU
               a train step 40-50x faster than XLA's grouped convolution (k = 3, 7, 9),
               with as little memory (`benchmarks/depthwise.py`, benchmarks/README.md).
      "xla"    `xla_depthwise_conv2d` (XLA's grouped convolution): cuDNN on GPU, the
               native convolution on TPU.
      "auto"   (default) "shift" when JAX's default backend is the CPU, else "xla".
    """

    def __init__(
        self,
        channels: int,
        kernel_size: int = 3,
        *,
        use_bias: bool = False,
        impl: str = "auto",
        dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        if impl not in ("auto", "shift", "xla"):
            raise ValueError(f"DepthwiseConv impl must be 'auto', 'shift' or 'xla', got {impl!r}")
        init = torch_uniform_init(kernel_size * kernel_size)  # fan_in = (C/groups)*k*k
        self.kernel = nnx.Param(init(rngs.params(), (kernel_size, kernel_size, 1, channels)))
        self.bias = nnx.Param(init(rngs.params(), (channels,))) if use_bias else None
        self.kernel_size = kernel_size
        self.impl = impl
        self.dtype = dtype

    def __call__(self, x: Array) -> Array:
        x = x.astype(self.dtype)
        kernel = self.kernel[...].astype(self.dtype)
        impl = self.impl
        if impl == "auto":
            impl = "shift" if jax.default_backend() == "cpu" else "xla"
        conv = depthwise_conv2d if impl == "shift" else xla_depthwise_conv2d
        # The scope name lets the MAC counter (tools.summary) count the shifted multiplies.
        with jax.named_scope("depthwise_conv"):
            y = conv(x, kernel[:, :, 0, :])
        if self.bias is not None:
            y = y + self.bias[...].astype(self.dtype)
        return y


class BatchNorm(nnx.Module):
    """BatchNorm over all axes but the last, exactly as PyTorch's `nn.BatchNorm2d`.

    Train mode normalises with the batch's biased variance and updates the running
    statistics with `momentum` (PyTorch convention: new = (1-m) * old + m * batch) using
    the *unbiased* batch variance, as PyTorch does. Eval mode (`use_running_average`,
    set by `model.eval()`) uses the running statistics. Under `jax.jit` with a sharded
    batch the statistics are over the global batch (synchronised BatchNorm).
    """

    def __init__(
        self,
        num_features: int,
        *,
        epsilon: float = 1e-5,
        momentum: float = 0.1,
        use_running_average: bool = False,
        dtype=jnp.float32,
        rngs: nnx.Rngs | None = None,
    ):
        del rngs  # deterministic init; kept for a uniform constructor signature
        self.scale = nnx.Param(jnp.ones((num_features,), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((num_features,), jnp.float32))
        self.mean = nnx.BatchStat(jnp.zeros((num_features,), jnp.float32))
        self.var = nnx.BatchStat(jnp.ones((num_features,), jnp.float32))
        self.epsilon = epsilon
        self.momentum = momentum
        self.use_running_average = use_running_average
        self.dtype = dtype

    def __call__(self, x: Array) -> Array:
        x32 = x.astype(jnp.float32)
        if self.use_running_average:
            mean, var = self.mean[...], self.var[...]
        else:
            axes = tuple(range(x.ndim - 1))
            mean = jnp.mean(x32, axis=axes)
            var = jnp.mean(jnp.square(x32 - mean), axis=axes)
            n = math.prod(x.shape[:-1])
            unbiased = var * (n / max(n - 1, 1))
            m = self.momentum
            self.mean[...] = jax.lax.stop_gradient((1 - m) * self.mean[...] + m * mean)
            self.var[...] = jax.lax.stop_gradient((1 - m) * self.var[...] + m * unbiased)
        inv = jax.lax.rsqrt(var + self.epsilon) * self.scale[...]
        y = (x32 - mean) * inv + self.bias[...]
        return y.astype(self.dtype)


class LayerNorm(nnx.Module):
    """LayerNorm over the last axis, computed in float32 (`(..., C) -> (..., C)`)."""

    def __init__(
        self,
        num_features: int,
        *,
        epsilon: float = 1e-5,
        dtype=jnp.float32,
        rngs: nnx.Rngs | None = None,
    ):
        del rngs
        self.scale = nnx.Param(jnp.ones((num_features,), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((num_features,), jnp.float32))
        self.epsilon = epsilon
        self.dtype = dtype

    def __call__(self, x: Array) -> Array:
        x32 = x.astype(jnp.float32)
        mean = jnp.mean(x32, axis=-1, keepdims=True)
        var = jnp.mean(jnp.square(x32 - mean), axis=-1, keepdims=True)
        y = (x32 - mean) * jax.lax.rsqrt(var + self.epsilon)
        y = y * self.scale[...] + self.bias[...]
        return y.astype(self.dtype)


class DropPath(nnx.Dropout):
    """Stochastic depth: drops whole samples of a residual branch, `(B, ...) -> (B, ...)`.

    Kept samples are scaled by 1/(1-rate) (timm's `DropPath`, scale_by_keep). Active only
    in train mode; the mask comes from the model's `dropout` rng stream, so a run is
    reproducible from its seed.
    """

    def __init__(self, rate: float, *, ndim: int = 4, rngs: nnx.Rngs | None = None):
        super().__init__(rate, broadcast_dims=tuple(range(1, ndim)), rngs=rngs)


class Mlp(nnx.Module):
    """`(..., C) -> Linear(C, hidden) -> GELU -> Linear(hidden, C_out)`."""

    def __init__(
        self,
        in_features: int,
        hidden_features: int,
        out_features: int | None = None,
        *,
        kernel_init=None,
        dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        out_features = out_features or in_features
        kw = dict(kernel_init=kernel_init, dtype=dtype, rngs=rngs)
        self.fc1 = Linear(in_features, hidden_features, **kw)
        self.fc2 = Linear(hidden_features, out_features, **kw)

    def __call__(self, x: Array) -> Array:
        return self.fc2(gelu(self.fc1(x)))


def drop_path_rates(total_blocks: int, drop_path_rate: float) -> Sequence[float]:
    """Linear stochastic-depth rule: 0 at the first block, `drop_path_rate` at the last."""
    if total_blocks <= 1:
        return [0.0] * total_blocks
    return [drop_path_rate * i / (total_blocks - 1) for i in range(total_blocks)]


def check_input(x: Array, *, name: str, image_size: int | None, in_chans: int) -> None:
    """Raises one clear error when `x` is not `(B, image_size, image_size, in_chans)`."""
    if x.ndim != 4:
        raise ValueError(
            f"{name} expects NHWC images (B, H, W, {in_chans}); got an array of shape {x.shape}."
        )
    if x.shape[-1] != in_chans:
        raise ValueError(
            f"{name} was built for {in_chans}-channel NHWC images; got shape {x.shape}."
        )
    if image_size is not None and tuple(x.shape[1:3]) != (image_size, image_size):
        raise ValueError(
            f"{name} was built for {image_size}x{image_size} images (its token mixing "
            f"weights are tied to that grid); got {x.shape[1]}x{x.shape[2]}. Create the "
            f"model with image_size={x.shape[1]} or resize the input."
        )
