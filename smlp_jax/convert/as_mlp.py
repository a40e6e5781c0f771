"""AS-MLP: the official `svip-lab/AS-MLP` state-dict layout (`asmlp_*.pth`) -> `ASMLP`.

Official stages are `layers.{i}` with `blocks.{j}` and, except the last, a
`downsample` patch merge; every 1x1 `Conv2d` (token-mixing convs, the MLP, the merge's
reduction) becomes one of our Dense kernels; every norm is a `GroupNorm(1, C)`.
"""

from __future__ import annotations

from smlp_jax.convert.assign import CONV, CONV1X1_AS_DENSE, COPY, LINEAR, Rules
from smlp_jax.models.as_mlp import ASMLP

# How the official layout is checked, in the model card's words: the same weights give
# the logits of the reference named here (its parity test reads that fixture).
PARITY = (
    "our independent PyTorch AS-MLP in the official state-dict layout (fixture: "
    "`reference/make_as_mlp_fixture.py`)"
)


def _norm(prefix: str, norm) -> Rules:
    return {f"{prefix}.weight": (norm.scale, COPY), f"{prefix}.bias": (norm.bias, COPY)}


def _conv1x1(prefix: str, dense) -> Rules:
    rules = {f"{prefix}.weight": (dense.kernel, CONV1X1_AS_DENSE)}
    if dense.bias is not None:
        rules[f"{prefix}.bias"] = (dense.bias, COPY)
    return rules


def official_rules(model: ASMLP) -> Rules:
    """Official key -> (our variable, layout) for every weight of `model`."""
    rules: dict = {
        "patch_embed.proj.weight": (model.patch_embed.kernel, CONV),
        "patch_embed.proj.bias": (model.patch_embed.bias, COPY),
    }
    if model.patch_norm is not None:
        rules.update(_norm("patch_embed.norm", model.patch_norm))
    for i, blocks in enumerate(model.stages):
        for j, block in enumerate(blocks):
            p = f"layers.{i}.blocks.{j}"
            shift = block.axial_shift
            rules.update(_norm(f"{p}.norm1", block.norm1))
            for name in ("conv1", "conv2_1", "conv2_2", "conv3"):
                rules.update(_conv1x1(f"{p}.axial_shift.{name}", getattr(shift, name)))
            rules.update(_norm(f"{p}.axial_shift.norm1", shift.norm1))
            rules.update(_norm(f"{p}.axial_shift.norm2", shift.norm2))
            rules.update(_norm(f"{p}.norm2", block.norm2))
            rules.update(_conv1x1(f"{p}.mlp.fc1", block.mlp.fc1))
            rules.update(_conv1x1(f"{p}.mlp.fc2", block.mlp.fc2))
        if i < len(model.merges):
            merge = model.merges[i]
            rules.update(_norm(f"layers.{i}.downsample.norm", merge.norm))
            rules.update(_conv1x1(f"layers.{i}.downsample.reduction", merge.reduction))
    rules.update(_norm("norm", model.norm))
    rules["head.weight"] = (model.head.kernel, LINEAR)
    rules["head.bias"] = (model.head.bias, COPY)
    return rules
