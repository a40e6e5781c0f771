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
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from smlp_jax.models import backend, depthwise, lean_vjp, macs, xla_cpu
from smlp_jax.models.initializers import next_key, ones, split, torch_uniform_init, zeros

Array = jax.Array


def gelu(x: Array, approximate: bool = False) -> Array:
    """GELU, exact erf form (PyTorch's `nn.GELU()` default): 0.5 x (1 + erf(x / sqrt 2)),
    or with `approximate` jax.nn.gelu's tanh form (the official Flax Mixer's).

    Written with `lax.erf` rather than `jax.nn.gelu(approximate=False)` (an erfc form):
    same values to float32 rounding (2e-7 apart), and the sMLPNet-T train step on CPU
    measured 1.34x faster (`benchmarks/smlp_formulations.py`, benchmarks/README.md).
    Its VJP saves only `x` (`lean_vjp.gelu`) unless `backend` says otherwise.
    """
    if backend.lean_vjp():
        return lean_vjp.gelu(x, approximate)
    return jax.nn.gelu(x, approximate=True) if approximate else lean_vjp.gelu_plain(x)


def relu(x: Array) -> Array:
    """max(x, 0); its VJP saves only the output (`lean_vjp.relu`) unless `backend` says
    otherwise."""
    return lean_vjp.relu(x) if backend.lean_vjp() else jax.nn.relu(x)


def residual(
    x: Array, branch: Callable[[Array], Array], drop_path: nnx.Module, divisor: float = 1.0
) -> Array:
    """One residual branch: `x + drop_path(branch(x)) / divisor`, shapes kept.

    Every family's blocks go through here, so what a backend needs on the residual stream
    lives in one place: on CPU, the cotangent of `x` is stored once (`xla_cpu.store_grad`).
    `divisor` is ViP's and DynaMixer's `skip_lam`.
    """
    x = xla_cpu.store_grad(x)
    y = drop_path(branch(x))
    return x + (y if divisor == 1.0 else y / divisor)


class Linear(nnx.Module):
    """Dense layer `(..., in_features) -> (..., out_features)` with PyTorch's init.

    `kernel_init` (e.g. `trunc_normal_init(0.02)`) replaces it for models whose official
    code re-initialises its Linears; the bias is then zero. With `key`, `kernel_init` draws
    from that key instead of from `rngs` (a family that splits one key per block).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        use_bias: bool = True,
        kernel_init=None,
        dtype=jnp.float32,
        rngs: nnx.Rngs | None = None,
        key: Array | None = None,
    ):
        init = torch_uniform_init(in_features)
        shape = (in_features, out_features)
        if key is not None and kernel_init is None:
            raise ValueError("Linear(key=...) draws with kernel_init; give one.")
        if kernel_init is None:
            self.kernel = nnx.Param(init(next_key(rngs.params), shape))
            bias = init(next_key(rngs.params), (out_features,)) if use_bias else None
        else:
            self.kernel = nnx.Param(
                kernel_init(next_key(rngs.params) if key is None else key, shape)
            )
            bias = zeros((out_features,)) if use_bias else None
        self.bias = nnx.Param(bias) if use_bias else None
        self.dtype = dtype

    def __call__(self, x: Array) -> Array:
        y = jnp.dot(x.astype(self.dtype), self.kernel[...].astype(self.dtype))
        if self.bias is not None:
            y = y + self.bias[...].astype(self.dtype)
        return y

    def after_gelu(self, z: Array, *, approximate: bool = False) -> Array:
        """`self(gelu(z))`; with `backend.gelu_dense()` one op whose backward recomputes
        `gelu(z)` instead of saving it (`lean_vjp.gelu_dense`)."""
        if not backend.gelu_dense():
            return self(gelu(z, approximate))
        kernel = self.kernel[...].astype(self.dtype)
        bias = (
            self.bias[...].astype(self.dtype)
            if self.bias is not None
            else jnp.zeros(kernel.shape[1:], self.dtype)
        )
        return lean_vjp.gelu_dense(z.astype(self.dtype), kernel, bias, approximate=approximate)


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
        self.kernel = nnx.Param(init(next_key(rngs.params), shape))
        self.bias = nnx.Param(init(next_key(rngs.params), (out_channels,))) if use_bias else None
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


class DepthwiseConv(nnx.Module):
    """Depthwise k x k convolution, stride 1, 'same' zero padding, no bias by default.

    `(B, H, W, C) -> (B, H, W, C)`. Kernel `(k, k, 1, C)` as Flax's grouped conv stores
    it. `impl` picks how it is computed, with equal results (`models/depthwise.py`):
    "auto" (default) is shifted multiply-adds on CPU and XLA's grouped convolution on
    GPU/TPU; "shift" and "xla" force one.
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
        if impl not in depthwise.IMPLS:
            raise ValueError(f"DepthwiseConv impl must be one of {depthwise.IMPLS}, got {impl!r}")
        init = torch_uniform_init(kernel_size * kernel_size)  # fan_in = (C/groups)*k*k
        self.kernel = nnx.Param(
            init(next_key(rngs.params), (kernel_size, kernel_size, 1, channels))
        )
        self.bias = nnx.Param(init(next_key(rngs.params), (channels,))) if use_bias else None
        self.kernel_size = kernel_size
        self.impl = impl
        self.dtype = dtype

    def __call__(self, x: Array) -> Array:
        x = x.astype(self.dtype)
        kernel = self.kernel[...].astype(self.dtype)
        # The scope name lets the MAC counter (models.macs) count the shifted multiplies.
        with jax.named_scope(macs.DEPTHWISE_SCOPE):
            y = depthwise.conv2d(x, kernel[:, :, 0, :], self.impl)
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
        self.scale = nnx.Param(ones((num_features,)))
        self.bias = nnx.Param(zeros((num_features,)))
        self.mean = nnx.BatchStat(zeros((num_features,)))
        self.var = nnx.BatchStat(ones((num_features,)))
        self.epsilon = epsilon
        self.momentum = momentum
        self.use_running_average = use_running_average
        self.dtype = dtype

    def __call__(self, x: Array, *, act: str | None = None) -> Array:
        """Normalises `x (..., C)`; `act="gelu"` applies GELU to the result, in one op
        with one saved tensor when `backend.lean_vjp()` (sMLPNet's BN -> GELU)."""
        if self.use_running_average:
            x32 = x.astype(jnp.float32)
            inv = jax.lax.rsqrt(self.var[...] + self.epsilon) * self.scale[...]
            y = ((x32 - self.mean[...]) * inv + self.bias[...]).astype(self.dtype)
            return gelu(y) if act == "gelu" else y
        if backend.lean_vjp():
            y, mean, var = lean_vjp.batch_norm_train(
                x, self.scale[...], self.bias[...], epsilon=self.epsilon, dtype=self.dtype, act=act
            )
        else:
            x32 = x.astype(jnp.float32)
            axes = tuple(range(x.ndim - 1))
            mean = jnp.mean(x32, axis=axes)
            var = jnp.mean(jnp.square(x32 - mean), axis=axes)
            inv = jax.lax.rsqrt(var + self.epsilon) * self.scale[...]
            y = ((x32 - mean) * inv + self.bias[...]).astype(self.dtype)
            y = gelu(y) if act == "gelu" else y
        n = math.prod(x.shape[:-1])
        unbiased = var * (n / max(n - 1, 1))
        m = self.momentum
        # set_value, not `[...] =`: flax's indexed set compares the new value's sharding with
        # the old one's, and asking a tracer for its sharding builds an error message that
        # walks the whole jaxpr traced so far (1.4 s of sMLPNet-T's 5.7 s train-step trace).
        self.mean.set_value(jax.lax.stop_gradient((1 - m) * self.mean[...] + m * mean))
        self.var.set_value(jax.lax.stop_gradient((1 - m) * self.var[...] + m * unbiased))
        return y


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
        self.scale = nnx.Param(ones((num_features,)))
        self.bias = nnx.Param(zeros((num_features,)))
        self.epsilon = epsilon
        self.dtype = dtype

    def __call__(self, x: Array) -> Array:
        if backend.lean_vjp():
            scale, bias = self.scale[...], self.bias[...]
            return lean_vjp.layer_norm(x, scale, bias, epsilon=self.epsilon, dtype=self.dtype)
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
        super().__init__(rate, broadcast_dims=tuple(range(1, ndim)), rngs=None)
        # nnx.Dropout's own stream, `rngs["dropout"].fork()`, forked here with the same key
        # (`initializers.next_key`: flax's fork draws with an indexed set, slow in a trace).
        stream = rngs[self.rng_collection] if isinstance(rngs, nnx.Rngs) else rngs
        if stream is not None:
            self.rngs = type(stream)(next_key(stream), tag=stream.tag)

    def __call__(self, inputs: Array, *, deterministic: bool | None = None) -> Array:
        """`nnx.Dropout`'s draw (same key, same bits), applied as `x / keep * mask` with the
        mask at `(B, 1, ...)`: the same values as its `select` of the mask broadcast to
        `x`'s shape, but the backward saves the small mask, not a full-size one (plus a
        full-size zeros tensor) per residual branch."""
        deterministic = self.deterministic if deterministic is None else deterministic
        if self.rate in (0.0, 1.0) or deterministic or self.rngs is None:
            return super().__call__(inputs, deterministic=deterministic)  # or its error
        key = next_key(self.rngs)
        keep = 1.0 - self.rate
        shape = [1 if d in self.broadcast_dims else n for d, n in enumerate(inputs.shape)]
        mask = jax.random.bernoulli(
            key, p=keep, shape=shape, out_sharding=jax.typeof(inputs).sharding
        )
        return inputs / keep * mask.astype(inputs.dtype)


class Mlp(nnx.Module):
    """`(..., C) -> Linear(C, hidden) -> GELU -> Linear(hidden, C_out)`. With `key`, the
    two layers draw `kernel_init` from its split in two (see `Linear`)."""

    def __init__(
        self,
        in_features: int,
        hidden_features: int,
        out_features: int | None = None,
        *,
        kernel_init=None,
        dtype=jnp.float32,
        rngs: nnx.Rngs | None = None,
        key: Array | None = None,
    ):
        out_features = out_features or in_features
        keys = split(key, 2) if key is not None else (None, None)
        kw = dict(kernel_init=kernel_init, dtype=dtype, rngs=rngs)
        self.fc1 = Linear(in_features, hidden_features, key=keys[0], **kw)
        self.fc2 = Linear(hidden_features, out_features, key=keys[1], **kw)

    def __call__(self, x: Array) -> Array:
        return self.fc2.after_gelu(self.fc1(x))


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
