"""Rematerialisation: each layer of a network recomputed in the backward, not stored.

Autodiff keeps every intermediate the backward reads, from the forward until the backward
reaches it; at a large batch those activations, not the parameters, fill the
accelerator's memory. Under `policy(name)` each layer a network's stages are built from
(every block, and each hierarchical stage's downsampling) runs inside `nnx.remat`
(`jax.checkpoint`): the backward keeps the layer's input and what the policy names, and
computes the rest again from them when it needs it: more FLOPs, less memory.

The names are JAX's own `jax.checkpoint_policies`:

    nothing_saveable                  only each layer's input: the least memory, one
                                      more forward's worth of compute
    dots_saveable                     also every matmul and convolution output: only
                                      the elementwise work (norms, GELU, residual adds)
                                      is recomputed
    dots_with_no_batch_dims_saveable  matmul outputs without batch dimensions (the
                                      Dense layers and axial mixes), not batched
                                      matmuls or convolutions

The values are those of the step that keeps everything, to float32 rounding: the
recomputed forward is the same program on the same inputs (random draws included: the
layer's rng state is an input), but XLA fuses it differently, so a sum may round
differently in its last bit. The trainer traces its loss under `policy(config.remat)`;
"" (the default) is off. Measured (saved bytes per image, step time): benchmarks/README.md.

`jax.checkpoint` puts optimisation barriers around the recomputation so that the
compiler keeps it apart, as XLA on GPUs and TPUs is meant to (not yet measured here: the
prepared GPU run has the rows). XLA CPU does not: its compiled step holds as many matmuls
as without remat (the recomputed forward merged back into the first), so on a CPU a
policy saves no memory and costs little time.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator
from typing import Any

import jax
from flax import nnx

POLICIES: dict[str, Callable[..., Any]] = {
    "nothing_saveable": jax.checkpoint_policies.nothing_saveable,
    "dots_saveable": jax.checkpoint_policies.dots_saveable,
    "dots_with_no_batch_dims_saveable": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}

_POLICY: contextvars.ContextVar[str] = contextvars.ContextVar("smlp_jax_remat", default="")
_DISABLED: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "smlp_jax_remat_disabled", default=False
)


def check(name: str) -> str:
    """`name` if it is "" (off) or a policy's name; else a ValueError that lists them."""
    if name and name not in POLICIES:
        raise ValueError(
            f"remat={name!r} is not a rematerialisation policy: use one of "
            f"{', '.join(POLICIES)} (or '' for none)"
        )
    return name


@contextlib.contextmanager
def policy(name: str) -> Iterator[None]:
    """Within the block, networks traced remat each layer under the named policy ("" off)."""
    token = _POLICY.set(check(name or ""))
    try:
        yield
    finally:
        _POLICY.reset(token)


@contextlib.contextmanager
def disabled() -> Iterator[None]:
    """Within the block nothing is rematerialised, whatever policy a traced function sets:
    for counting a step's model FLOPs (MFU counts the model's work, not its recomputation;
    a jaxpr of a rematted step holds the recomputed forward too)."""
    token = _DISABLED.set(True)
    try:
        yield
    finally:
        _DISABLED.reset(token)


def active() -> str:
    """The policy's name for code traced now ("" when off)."""
    return "" if _DISABLED.get() else _POLICY.get()


def _apply(layer: nnx.Module, x: Any) -> Any:
    return layer(x)


def call(layer: Callable[[Any], Any], x: Any) -> Any:
    """`layer(x)`, inside `nnx.remat` under the active policy when `layer` is a module
    (a plain function, e.g. a stage made of modules, is called as it is: its modules are
    rematted one by one where it calls them through here)."""
    name = active()
    if not name or not isinstance(layer, nnx.Module):
        return layer(x)
    return nnx.remat(_apply, policy=POLICIES[name])(layer, x)
