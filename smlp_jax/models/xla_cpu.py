"""XLA-CPU-only workarounds, and the one place that decides whether they apply.

XLA's CPU fusion pass copies an elementwise producer into every consumer that reads it,
without weighing what the copy costs. Two places in these models pay for that on CPU:
the residual stream's cotangent (a chain of adds over every later block, recomputed in
each consumer) and the shifted depthwise convolution's output (the whole tap loop
recomputed in each consumer). `stored(x)` makes a value a buffer XLA cannot fuse
across; `store_grad(x)` does that to the cotangent of `x` in the backward pass.
benchmarks/README.md ("Making sMLPNet fast") has the measurements.

`enabled(which)` is the single switch: the workarounds apply only when the code is traced
for the CPU (`backend.platform()`; GPU and TPU fusion weigh duplication by cost, and no
accelerator run has measured them), and `options(...)` turns each off for a block of
code, which is how the benchmarks time the model without them. Decided when a function is traced.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
from collections.abc import Iterator

import jax
import jax.numpy as jnp

from smlp_jax.models import backend

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class Options:
    """Which workarounds may apply on the CPU backend (all by default).

    residual_grad:     `store_grad` on residual-branch inputs (`layers.residual`).
    depthwise_output:  `stored` on the shifted depthwise convolution's output.
    """

    residual_grad: bool = True
    depthwise_output: bool = True


_OPTIONS: contextvars.ContextVar[Options] = contextvars.ContextVar(
    "smlp_jax_xla_cpu_options",
    default=Options(),  # noqa: B039 (frozen: immutable)
)


@contextlib.contextmanager
def options(**switches: bool) -> Iterator[Options]:
    """Within the block, the named workarounds are on/off (`options(residual_grad=False)`);
    a function traced inside keeps that choice."""
    token = _OPTIONS.set(dataclasses.replace(_OPTIONS.get(), **switches))
    try:
        yield _OPTIONS.get()
    finally:
        _OPTIONS.reset(token)


def enabled(which: str) -> bool:
    """Whether workaround `which` (an `Options` field) applies to code traced now."""
    return backend.on_cpu() and getattr(_OPTIONS.get(), which)


def _buffer(g: Array) -> Array:
    """`g` itself, through a `lax.cond` XLA cannot see through: a conditional's operand
    and result are buffers, so nothing is fused across it. Both branches return `g`
    exactly (`g * 1.0 == g` for every float, NaN and -0.0 included); they differ only so
    that JAX keeps the conditional, and its predicate is a runtime value XLA cannot fold.
    (`lax.optimization_barrier` does not do this: XLA CPU drops barriers before fusion.)"""
    keep = jnp.isfinite(g[(0,) * g.ndim])
    return jax.lax.cond(keep, lambda t: t, lambda t: t * 1.0, g)


def stored(x: Array, which: str = "depthwise_output") -> Array:
    """`x`, computed once into a buffer rather than fused into each consumer (CPU only)."""
    return _buffer(x) if enabled(which) else x


@jax.custom_vjp
def _grad_stored(x: Array) -> Array:
    return x


_grad_stored.defvjp(lambda x: (x, None), lambda _, g: (_buffer(g),))


def store_grad(x: Array) -> Array:
    """Identity; in the backward pass the cotangent of `x` is computed once and stored.

    On the input of a residual branch it keeps XLA CPU from recomputing the residual
    stream's cotangent chain in every consumer (quadratic in the depth; 30% of the
    sMLPNet-T train step). The identity when `enabled("residual_grad")` is false.
    """
    return _grad_stored(x) if enabled("residual_grad") else x
