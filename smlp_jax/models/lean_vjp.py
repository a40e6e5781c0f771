"""BatchNorm, LayerNorm and GELU with hand-written VJPs that save only what the backward needs.

JAX's autodiff of the plain formulas saves every intermediate the chain rule touches: the
erf GELU four tensors a call (`x * 0.707`, `erf`, `1 + erf`, `0.5 x`), a float32 norm its
centred input, `* inv` and the normalised values. On an accelerator each saved tensor is
written in the forward and read again in the backward, and the step is bound by exactly
that memory traffic (benchmarks/README.md, "Activation memory"). Here each op saves its
input in the compute dtype and, for the norms, float32 statistics per channel (BatchNorm)
or per row (LayerNorm); the backward recomputes the rest inside its own fusions:

    BatchNorm (train):  x (B, H, W, C) -> y;  saves x, mean (C,), rstd (C,)
        dbias = sum(g),  dscale = sum(g * xhat),
        dx = scale * rstd * (g - (dbias + xhat * dscale) / n),  xhat = (x - mean) * rstd
    LayerNorm:          x (..., C) -> y;      saves x, mean (..., 1), rstd (..., 1)
    GELU (erf form):    x -> 0.5 x (1 + erf(x / sqrt 2));  saves x
        dx = g * (Phi(x) + x phi(x))        (also the tanh approximation, jax.nn.gelu's)
    GELU -> Dense:      z -> gelu(z) @ W + b;  saves z, recomputes gelu(z) for dW
    ReLU:               x -> max(x, 0);  saves the output, not also a mask

The forward computes the same values as the plain formulas in `layers` (the same
operations in the same dtypes). Gradients agree with autodiff of the plain formulas to
float32 rounding (a test checks each against it). BatchNorm can also
apply the GELU after itself (`act="gelu"`), saving one tensor more: the normalised output
is recomputed in the backward rather than stored for the GELU.

Whether the models use these or the plain formulas is decided in `models.backend`.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

Array = jax.Array

_SQRT_HALF = 0.7071067811865476
_INV_SQRT_2PI = 0.3989422804014327


def gelu_plain(x: Array) -> Array:
    """GELU, exact erf form, by JAX's autodiff: 0.5 x (1 + erf(x / sqrt 2)), dtype of `x`."""
    return 0.5 * x * (1.0 + jax.lax.erf(x * _SQRT_HALF))


def _gelu_grad(x: Array) -> Array:
    """d gelu / dx = Phi(x) + x phi(x), float32."""
    x = x.astype(jnp.float32)
    cdf = 0.5 * (1.0 + jax.lax.erf(x * _SQRT_HALF))
    return cdf + x * _INV_SQRT_2PI * jnp.exp(-0.5 * x * x)


def _gelu_tanh_grad(x: Array) -> Array:
    """d/dx of the tanh approximation x * 0.5 (1 + tanh(k (x + 0.044715 x^3))), float32."""
    x = x.astype(jnp.float32)
    k = 0.7978845608028654  # sqrt(2 / pi)
    t = jnp.tanh(k * (x + 0.044715 * x * x * x))
    return 0.5 * (1.0 + t) + x * 0.5 * (1.0 - t * t) * k * (1.0 + 3 * 0.044715 * x * x)


def _gelu_forms(approximate: bool):
    """(gelu, its derivative): the erf form, or jax.nn.gelu's tanh approximation."""
    if approximate:
        return functools.partial(jax.nn.gelu, approximate=True), _gelu_tanh_grad
    return gelu_plain, _gelu_grad


@functools.cache
def _gelu(approximate: bool):
    value, grad = _gelu_forms(approximate)

    @jax.custom_vjp
    def gelu_(x):
        return value(x)

    gelu_.defvjp(
        lambda x: (value(x), x),
        lambda x, g: ((g.astype(jnp.float32) * grad(x)).astype(g.dtype),),
    )
    return gelu_


def gelu(x: Array, approximate: bool = False) -> Array:
    """GELU with a VJP that saves only `x`: the erf form (same values as `gelu_plain`), or
    with `approximate` jax.nn.gelu's tanh form (same values as `jax.nn.gelu`)."""
    return _gelu(bool(approximate))(x)


@functools.cache
def _gelu_dense(approximate: bool):
    value, grad = _gelu_forms(approximate)

    def forward(z, kernel, bias):
        return jnp.dot(value(z), kernel) + bias, (z, kernel)

    @jax.custom_vjp
    def gelu_dense_(z, kernel, bias):
        return forward(z, kernel, bias)[0]

    def backward(res, g):
        z, kernel = res
        h = value(z)  # recomputed: elementwise, fused into the kernel-gradient matmul's input
        rows = tuple(range(z.ndim - 1))
        dkernel = jnp.tensordot(h, g, axes=(rows, rows))
        dbias = jnp.sum(g, axis=rows, dtype=jnp.float32).astype(g.dtype)
        dz = jnp.dot(g, kernel.T).astype(jnp.float32) * grad(z)
        return dz.astype(z.dtype), dkernel.astype(kernel.dtype), dbias

    gelu_dense_.defvjp(forward, backward)
    return gelu_dense_


def gelu_dense(z: Array, kernel: Array, bias: Array, *, approximate: bool = False) -> Array:
    """`gelu(z) @ kernel + bias` for `z (..., in)`, `kernel (in, out)`, `bias (out,)`, all
    in one dtype; the VJP saves `z` only and recomputes `gelu(z)`, which autodiff would
    store for the kernel gradient (an MLP's widest tensor, twice)."""
    return _gelu_dense(bool(approximate))(z, kernel, bias)


@jax.custom_vjp
def relu(x: Array) -> Array:
    """max(x, 0) with a VJP that saves its output (which the next op saves anyway), where
    autodiff of `jax.nn.relu` also saves the `x > 0` mask; same values and gradients
    (zero at 0, as `jax.nn.relu`)."""
    return jax.nn.relu(x)


relu.defvjp(
    lambda x: (jax.nn.relu(x), jax.nn.relu(x)),
    lambda y, g: (jnp.where(y > 0, g, jnp.zeros((), g.dtype)),),
)


def _moments(x32: Array, axes: tuple[int, ...]) -> tuple[Array, Array]:
    """Mean and biased variance over `axes`, in two float32 passes as `layers.BatchNorm`.

    A one-pass form (sums of `x - s` and `(x - s)^2` with `s` one sample per channel) reads
    `x` once instead of twice but rounds differently: the 40-step SPACH-recipe trajectory
    checked against the official run then ends one parameter 1.4e-5 from the official
    run's, past the check's 1e-5. The forward keeps the plain form's values instead.
    """
    mean = jnp.mean(x32, axis=axes)
    return mean, jnp.mean(jnp.square(x32 - mean), axis=axes)


@functools.cache
def _batch_norm(epsilon: float, dtype: jnp.dtype, act: str | None):
    """Train-mode BatchNorm over all axes but the last, with its VJP, for fixed settings."""

    def forward(x, scale, bias):
        x32 = x.astype(jnp.float32)
        axes = tuple(range(x.ndim - 1))
        mean, var = _moments(x32, axes)
        rstd = jax.lax.rsqrt(var + epsilon)
        z = ((x32 - mean) * (rstd * scale) + bias).astype(dtype)
        y = gelu_plain(z) if act == "gelu" else z
        return (y, mean, var), (x, mean, rstd, scale, bias)

    @jax.custom_vjp
    def batch_norm(x, scale, bias):
        return forward(x, scale, bias)[0]

    def backward(res, cotangents):
        # The statistics are outputs only for the running averages (stop_gradient there):
        # their cotangents are zero and ignored.
        g = cotangents[0].astype(jnp.float32)
        x, mean, rstd, scale, bias = res
        axes = tuple(range(x.ndim - 1))
        xhat = (x.astype(jnp.float32) - mean) * rstd
        if act == "gelu":
            g = g * _gelu_grad((xhat * scale + bias).astype(dtype))
        n = x.size // x.shape[-1]
        dbias = jnp.sum(g, axis=axes)
        dscale = jnp.sum(g * xhat, axis=axes)
        dx = (scale * rstd) * (g - (dbias + xhat * dscale) / n)
        return dx.astype(x.dtype), dscale, dbias

    batch_norm.defvjp(forward, backward)
    return batch_norm


def batch_norm_train(
    x: Array,
    scale: Array,
    bias: Array,
    *,
    epsilon: float,
    dtype,
    act: str | None = None,
) -> tuple[Array, Array, Array]:
    """Train-mode BatchNorm of `x (..., C)` with batch statistics (then `act`, if "gelu").

    Returns `(y, mean, var)`: `y` like `x` in `dtype`, and the float32 batch mean and
    biased variance `(C,)` for the running averages (not differentiated).
    """
    if act not in (None, "gelu"):
        raise ValueError(f"batch_norm_train act must be None or 'gelu', got {act!r}")
    return _batch_norm(float(epsilon), jnp.dtype(dtype), act)(x, scale, bias)


@functools.cache
def _layer_norm(epsilon: float, dtype: jnp.dtype):
    """LayerNorm over the last axis with its VJP, for fixed settings."""

    def stats(x):
        x32 = x.astype(jnp.float32)
        mean = jnp.mean(x32, axis=-1, keepdims=True)
        var = jnp.mean(jnp.square(x32 - mean), axis=-1, keepdims=True)
        return x32, mean, jax.lax.rsqrt(var + epsilon)

    def forward(x, scale, bias):
        x32, mean, rstd = stats(x)
        y = ((x32 - mean) * rstd * scale + bias).astype(dtype)
        return y, (x, mean, rstd, scale)

    @jax.custom_vjp
    def layer_norm(x, scale, bias):
        return forward(x, scale, bias)[0]

    def backward(res, g):
        x, mean, rstd, scale = res
        g = g.astype(jnp.float32)
        xhat = (x.astype(jnp.float32) - mean) * rstd
        rows = tuple(range(x.ndim - 1))
        dscale = jnp.sum(g * xhat, axis=rows)
        dbias = jnp.sum(g, axis=rows)
        gs = g * scale
        dx = rstd * (
            gs
            - jnp.mean(gs, axis=-1, keepdims=True)
            - xhat * jnp.mean(gs * xhat, axis=-1, keepdims=True)
        )
        return dx.astype(x.dtype), dscale, dbias

    layer_norm.defvjp(forward, backward)
    return layer_norm


def layer_norm(x: Array, scale: Array, bias: Array, *, epsilon: float, dtype) -> Array:
    """LayerNorm of `x (..., C)` over its last axis in float32, output in `dtype`."""
    return _layer_norm(float(epsilon), jnp.dtype(dtype))(x, scale, bias)
