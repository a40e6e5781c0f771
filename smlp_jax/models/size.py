"""How big a model would be, measured abstractly: nothing is allocated.

`model_size(name, ...)` builds the model under `nnx.eval_shape` (shapes only) and traces
its eval forward on one abstract image, giving its parameter count, their bytes and the
largest activation of one image. `check_model_size` refuses, with one line saying how big
it would be, a model whose parameters plus that activation exceed the limit:
`$SMLP_JAX_MAX_MODEL_GB` (default 8 GB; the largest registered model, Mixer-L/16, is
0.8 GB) or the `limit_gb` argument. `create_model("hf-hub:...")` checks what a Hub
folder's config.json describes this way before building it.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from smlp_jax.errors import UserError
from smlp_jax.models.registry import make_model

LIMIT_ENV = "SMLP_JAX_MAX_MODEL_GB"
DEFAULT_LIMIT_GB = 8.0


class ModelTooLargeError(UserError, ValueError):
    """A model above the size limit (`$SMLP_JAX_MAX_MODEL_GB`); the message says how big."""


@dataclasses.dataclass(frozen=True)
class ModelSize:
    params: int  # parameter count
    param_bytes: int  # as stored (float32)
    activation_bytes: int  # the largest intermediate of one image's eval forward

    @property
    def total_bytes(self) -> int:
        return self.param_bytes + self.activation_bytes


def _largest_output(jaxpr: Any) -> int:
    """Bytes of the largest value any equation of `jaxpr` (or a jaxpr inside it) makes."""
    largest = 0
    for eqn in jaxpr.eqns:
        for var in eqn.outvars:
            aval = var.aval
            if hasattr(aval, "shape") and hasattr(aval, "dtype"):
                largest = max(largest, int(np.prod(aval.shape)) * aval.dtype.itemsize)
        for param in eqn.params.values():
            for sub in param if isinstance(param, tuple | list) else (param,):
                inner = getattr(sub, "jaxpr", sub)  # a ClosedJaxpr, or a Jaxpr
                if hasattr(inner, "eqns"):
                    largest = max(largest, _largest_output(inner))
    return largest


def _abstract_model(name: str, num_classes: int, image_size: int, overrides: dict) -> Any:
    return nnx.eval_shape(
        lambda: make_model(name, num_classes=num_classes, image_size=image_size, **overrides)
    )


def _param_size(model: Any) -> tuple[int, int]:
    params = jax.tree.leaves(nnx.state(model, nnx.Param))
    count = sum(int(np.prod(p.shape)) for p in params)
    return count, sum(int(np.prod(p.shape)) * jnp.dtype(p.dtype).itemsize for p in params)


def _largest_activation(model: Any, image_size: int) -> int:
    model.eval()
    graphdef, state = nnx.split(model)
    in_chans = getattr(model, "in_chans", 3)
    image = jax.ShapeDtypeStruct((1, image_size, image_size, in_chans), jnp.float32)
    jaxpr = jax.make_jaxpr(lambda s, x: nnx.merge(graphdef, s)(x))(state, image)
    return _largest_output(jaxpr.jaxpr)


def model_size(
    name: str, *, num_classes: int = 1000, image_size: int = 224, **overrides: Any
) -> ModelSize:
    """The size of registered model `name` built with these arguments, found without
    allocating it. Raises the registry's `HyperparameterError` for values out of range."""
    model = _abstract_model(name, num_classes, image_size, overrides)
    count, param_bytes = _param_size(model)
    return ModelSize(count, param_bytes, _largest_activation(model, image_size))


def limit_bytes(limit_gb: float | None = None) -> float:
    """The size limit in bytes: `limit_gb`, else `$SMLP_JAX_MAX_MODEL_GB`, else 8 GB."""
    if limit_gb is None:
        text = os.environ.get(LIMIT_ENV, "")
        try:
            limit_gb = float(text) if text else DEFAULT_LIMIT_GB
        except ValueError:
            raise ModelTooLargeError(
                f"{LIMIT_ENV}={text!r}: give a number of gigabytes, e.g. {LIMIT_ENV}=16."
            ) from None
    return float(limit_gb) * 1e9


def check_model_size(
    name: str,
    *,
    num_classes: int = 1000,
    image_size: int = 224,
    limit_gb: float | None = None,
    what: str = "",
    **overrides: Any,
) -> ModelSize:
    """`model_size`, refused with a `ModelTooLargeError` (one line: how big, the limit and
    how to raise it) when the parameters and the largest activation of one image exceed
    `limit_bytes(limit_gb)`. `what` begins the message (e.g. the Hub folder)."""
    limit = limit_bytes(limit_gb)
    model = _abstract_model(name, num_classes, image_size, overrides)
    count, param_bytes = _param_size(model)
    # Parameters alone above the limit: no need to trace the forward.
    activation = _largest_activation(model, image_size) if param_bytes <= limit else 0
    size = ModelSize(count, param_bytes, activation)
    if size.total_bytes > limit:
        prefix = f"{what}: " if what else ""
        measured = f"{size.params:,} parameters ({size.param_bytes / 1e9:.1f} GB)"
        if activation:
            measured += (
                f" and a largest activation of {activation / 1e9:.1f} GB for one "
                f"{image_size}x{image_size} image"
            )
        raise ModelTooLargeError(
            f"{prefix}{name} with these hyperparameters would have {measured}, above the "
            f"limit of {limit / 1e9:g} GB; set {LIMIT_ENV} (gigabytes) higher to build it "
            "anyway."
        )
    return size
