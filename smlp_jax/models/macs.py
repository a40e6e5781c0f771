"""Multiply-accumulates of a traced function, counted on its jaxpr (nothing compiled).

Every `dot_general` contributes output size x contracted size, every convolution output
size x kernel fan-in, and each multiply of two arrays inside a `DEPTHWISE_SCOPE` named
scope (layers.DepthwiseConv's CPU path computes its convolution as shifted multiply-adds)
one. That is the papers' convention (fvcore/thop: matmuls and convolutions only) and the
"model FLOPs" of MFU (2 per MAC). It does not depend on the backend: XLA's own cost
analysis does (on a GPU it leaves out the matmuls and convolutions it hands to cuBLAS and
cuDNN; benchmarks/README.md has the measurement).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx
from jax.extend.core import Literal

DEPTHWISE_SCOPE = "depthwise_conv"


def _sub_jaxprs(eqn) -> Iterator[Any]:
    for value in eqn.params.values():
        for item in value if isinstance(value, (list, tuple)) else (value,):
            if hasattr(item, "jaxpr") and hasattr(item.jaxpr, "eqns"):
                yield item.jaxpr  # ClosedJaxpr
            elif hasattr(item, "eqns"):
                yield item


def count_macs(jaxpr, in_depthwise: bool = False) -> int:
    """Multiply-accumulates of a jaxpr and the jaxprs inside it (jit, remat, custom_vjp)."""
    total = 0
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        scoped = in_depthwise or DEPTHWISE_SCOPE in str(eqn.source_info.name_stack)
        if name == "dot_general":
            (contract_lhs, _), _ = eqn.params["dimension_numbers"]
            lhs = eqn.invars[0].aval.shape
            out = eqn.outvars[0].aval.shape
            total += math.prod(out) * math.prod(lhs[d] for d in contract_lhs)
        elif name == "conv_general_dilated":
            kernel = eqn.invars[1].aval.shape
            out_feature_dim = eqn.params["dimension_numbers"].rhs_spec[0]
            fan_in = math.prod(kernel) // kernel[out_feature_dim]
            total += math.prod(eqn.outvars[0].aval.shape) * fan_in
        elif name == "mul" and scoped and not any(isinstance(v, Literal) for v in eqn.invars):
            # a tap multiplies an activation by a kernel weight; a multiply by a constant
            # (`xla_cpu.stored`'s `t * 1.0`) is no MAC
            total += math.prod(eqn.outvars[0].aval.shape)
        for sub in _sub_jaxprs(eqn):
            total += count_macs(sub, scoped)
    return total


def model_flops(fn: Callable, *args: Any) -> float:
    """2 x the MACs of one call of `fn` on `args` (arrays or ShapeDtypeStructs): for a
    train step, its forward and backward matmuls and convolutions."""
    return 2.0 * count_macs(jax.make_jaxpr(fn)(*args).jaxpr)


def macs_of(model: nnx.Module) -> int:
    """Batch-1 eval-mode forward MACs of a built model (at its `model_spec` image size,
    else 224), counted on the traced jaxpr: nothing is compiled or computed; `model` itself
    is left in its mode (an eval-mode copy is traced)."""
    spec = getattr(model, "model_spec", None)
    size = spec.image_size if spec is not None else 224
    graphdef, state = nnx.split(model)
    copy = nnx.merge(graphdef, state, copy=True)
    copy.eval()
    graphdef = nnx.graphdef(copy)

    def forward(state, x):
        return nnx.merge(graphdef, state)(x)

    image = jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32)
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), state)
    return count_macs(jax.make_jaxpr(forward)(abstract, image).jaxpr)
