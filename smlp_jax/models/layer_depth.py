"""The depth of every parameter for layer-wise learning-rate decay (BEiT's rule, as timm's
`param_groups_layer_decay` applies it through each model's `group_matcher`).

One rule for every family, read off the feature interface (`smlp_jax.models.features`) that
`forward_intermediates` runs, never written per family:

- depth 0: the stem, every parameter used before the first block (what `_before_stages`
  uses, and the first stage's own patch embedding outside its blocks: sMLPNet's `stems.0`,
  RaftMLP's `embeddings.0`);
- depths 1..B: the blocks in the order they run, B in all. A feature stage whose module
  (`feature_info[i]["module"]`) is a list of blocks (`stages.2`, `network.4`, `levels.1`)
  counts each block; one that is a single block (Mixer's `blocks.7`) counts one. The
  downsampling that opens a later stage joins that stage's first block (timm's ConvNeXt
  and Swin matchers: `stages.i.downsample` takes the suffix `(0,)`);
- the final norm joins the last block, depth B (timm's `MATCH_PREV_GROUP`, `(99999,)`);
- depth B + 1: the head, and anything else used only after the final norm.

Which stage a parameter belongs to is found on the traced forward pass (`jax.make_jaxpr`):
the first of (stem output, stage 0, ..., stage n-1, final norm, logits) that depends on it.
Nothing is computed or allocated. Then `scale = decay ** (B + 1 - depth)`: the head trains
at the full rate, the stem at `decay ** (B + 1)` (timm: `layer_scales[layer_id]` with
`layer_max = num_layers - 1`).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

__all__ = ["param_depths", "layer_scales"]


def _path_name(path: tuple) -> str:
    """A key path of a pure-dict state -> "stages/0/1/token_mixing/kernel" (the trainer's
    '/'-joined parameter names)."""
    return "/".join(str(getattr(key, "key", getattr(key, "idx", key))) for key in path)


def _module_at(model: nnx.Module, dotted: str) -> Any:
    node: Any = model
    for part in dotted.split("."):
        node = node[int(part)] if part.isdigit() else getattr(node, part)
    return node


def _first_use(model: nnx.Module, image_size: int, in_chans: int) -> tuple[list[str], list[int]]:
    """(parameter names, for each the index of the first output that depends on it), the
    outputs being the stem's, each feature stage's, the final norm's and the logits."""
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    def forward(params, rest):
        net = nnx.merge(graphdef, params, rest)
        x = jnp.zeros((1, image_size, image_size, in_chans), jnp.float32)
        x = net._before_stages(x)
        outputs = [x]
        for stage in net._feature_stages():
            x = stage(x)
            outputs.append(x)
        x = net._final_norm(x)
        outputs.append(x)
        outputs.append(net.forward_head(x))
        return outputs

    leaves = jax.tree_util.tree_flatten_with_path(nnx.to_pure_dict(params))[0]
    jaxpr = jax.make_jaxpr(forward)(params, rest).jaxpr
    depends: dict[Any, int] = {}  # variable -> bit set of the parameters it depends on
    for i, var in enumerate(jaxpr.invars[: len(leaves)]):
        depends[var] = 1 << i

    def of(var) -> int:
        return 0 if isinstance(var, jax.extend.core.Literal) else depends.get(var, 0)

    for eqn in jaxpr.eqns:  # an equation's outputs depend on all its inputs (conservative)
        bits = 0
        for var in eqn.invars:
            bits |= of(var)
        for var in eqn.outvars:
            depends[var] = bits
    outputs = [of(var) for var in jaxpr.outvars]
    first = []
    for i in range(len(leaves)):
        used = [k for k, bits in enumerate(outputs) if bits >> i & 1]
        first.append(used[0] if used else len(outputs) - 1)
    return [_path_name(path) for path, _ in leaves], first


def param_depths(
    model: nnx.Module, image_size: int, in_chans: int = 3
) -> tuple[dict[str, int], int]:
    """({'/'-joined parameter name: depth}, the largest depth B + 1) of `model` (an nnx
    network with the feature interface; an abstract one from `nnx.eval_shape` is enough),
    by the rule in the module doc. `image_size`: the model's input side."""
    names, first = _first_use(model, image_size, in_chans)
    stages = [spec.module for spec in model._feature_info]
    num_stages = len(stages)
    # The blocks of each stage: a list module counts each element, any other module one.
    counts, prefixes = [], []
    for module in stages:
        node = _module_at(model, module)
        is_list = isinstance(node, nnx.List | list | tuple)
        counts.append(len(node) if is_list else 1)
        prefixes.append((module.replace(".", "/") + "/", is_list))
    offsets = [1 + sum(counts[:i]) for i in range(num_stages)]  # depth of each first block
    blocks = sum(counts)
    depths = {}
    for name, k in zip(names, first):
        if k == 0:  # the stem
            depths[name] = 0
        elif k <= num_stages:
            stage = k - 1
            prefix, is_list = prefixes[stage]
            if name.startswith(prefix):
                index = int(name[len(prefix) :].split("/", 1)[0]) if is_list else 0
                depths[name] = offsets[stage] + index
            else:  # the stage's own entry: the stem for the first, else its first block
                depths[name] = 0 if stage == 0 else offsets[stage]
        elif k == num_stages + 1:  # the final norm joins the last block
            depths[name] = blocks
        else:  # the head
            depths[name] = blocks + 1
    return depths, blocks + 1


def layer_scales(depths: dict[str, int], depth_max: int, decay: float) -> dict[str, float]:
    """{name: decay ** (depth_max - depth)}: timm's `layer_scales[layer_id]`."""
    return {name: float(decay ** (depth_max - depth)) for name, depth in depths.items()}
