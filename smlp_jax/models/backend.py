"""Which form of an op the models compute on which backend: the one place that decides.

Several ops have more than one exact form, and the fastest differs by backend:

  depthwise convolution   shifted multiply-adds on CPU, XLA's grouped convolution elsewhere
                          (`models.depthwise`)
  XLA-CPU workarounds     stored cotangents and outputs, CPU only (`models.xla_cpu`)
  sMLP fuse               one matmul over the concatenated branches on CPU, three
                          accumulated matmuls elsewhere (no concat written and re-read)
  norms and GELU          `models.lean_vjp`'s hand-written VJPs (save only inputs and
                          statistics) on every backend; `lean_vjp=False` in `forms(...)`
                          gives autodiff of the plain formulas
  GELU -> Dense           one op that recomputes the GELU in the backward instead of
                          saving it (`lean_vjp.gelu_dense`) off the CPU; on the CPU the
                          recomputation is a pass of its own (XLA CPU fuses nothing into
                          a matmul): Mixer-S/16's train step ran 12% slower with it
  sMLP height mix         an einsum (XLA transposes around it) by default; a matmul
                          batched over images (`axial_batched=True`), not yet measured
                          on an accelerator, so not a default anywhere

The choice follows the backend a function is traced for: JAX's default backend, or the
one named by `forms(platform=...)`, which is how the CPU measures what an accelerator's
train step saves (benchmarks/saved_activations.py). Measurements: benchmarks/README.md.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
from collections.abc import Iterator

import jax

PLATFORMS = ("cpu", "gpu", "tpu")


@dataclasses.dataclass(frozen=True)
class Forms:
    """Overrides for code traced inside `forms(...)`; None means "the backend's default".

    platform:  trace as if for this backend ("cpu", "gpu", "tpu").
    lean_vjp:  norms and GELU with hand-written VJPs (True) or autodiff (False).
    fuse_sum:  the sMLP fuse as three accumulated matmuls (True) or one over a concat.
    gelu_dense:  an MLP's GELU recomputed in the backward of the Dense after it (True).
    axial_batched:  sMLP's height mix as a matmul batched over images (True) or an einsum.
    """

    platform: str | None = None
    lean_vjp: bool | None = None
    fuse_sum: bool | None = None
    gelu_dense: bool | None = None
    axial_batched: bool | None = None


_FORMS: contextvars.ContextVar[Forms] = contextvars.ContextVar(
    "smlp_jax_forms",
    default=Forms(),  # noqa: B039 (frozen: immutable)
)


@contextlib.contextmanager
def forms(**overrides) -> Iterator[Forms]:
    """Within the block, functions are traced with the named forms
    (`forms(platform="gpu")`, `forms(lean_vjp=False)`); a traced function keeps them."""
    platform_ = overrides.get("platform")
    if platform_ is not None and platform_ not in PLATFORMS:
        raise ValueError(f"forms(platform=...) must be one of {PLATFORMS}, got {platform_!r}")
    token = _FORMS.set(dataclasses.replace(_FORMS.get(), **overrides))
    try:
        yield _FORMS.get()
    finally:
        _FORMS.reset(token)


def platform() -> str:
    """The backend that code traced now is meant for."""
    chosen = _FORMS.get().platform
    return chosen if chosen is not None else jax.default_backend()


def on_cpu() -> bool:
    return platform() == "cpu"


def lean_vjp() -> bool:
    """Norms and GELU through `models.lean_vjp` (default: every backend)."""
    chosen = _FORMS.get().lean_vjp
    return True if chosen is None else chosen


def fuse_sum() -> bool:
    """The sMLP fuse as three accumulated matmuls (default: off the CPU)."""
    chosen = _FORMS.get().fuse_sum
    return not on_cpu() if chosen is None else chosen


def gelu_dense() -> bool:
    """GELU -> Dense as `lean_vjp.gelu_dense` (default: off the CPU, with the lean VJPs)."""
    chosen = _FORMS.get().gelu_dense
    return (lean_vjp() and not on_cpu()) if chosen is None else chosen


def axial_batched() -> bool:
    """sMLP's height mix as a batched matmul (default: nowhere, until measured)."""
    return bool(_FORMS.get().axial_batched)
