"""Hire-MLP: the official `ggjy/Hire-Wave-MLP.pytorch` checkpoint layout
(`hire_mlp_tiny.pth` etc., DeiT-style `{'model': state_dict}`) -> `HireMLPNet`.

The official `network` list alternates stages (`nn.Sequential` of blocks) and
downsamples, so stage i is `network.{2i}` and its downsample `network.{2i+1}`. The
region-mixing layers are named there `mlp_h1` / `mlp_h1_norm` / `mlp_h2` (height) and
`mlp_w*` (width); ours are `height.{reduce,norm,expand}` and `width.*`. Every 1x1
`Conv2d` becomes a Dense kernel.
"""

from __future__ import annotations

from smlp_jax.convert.assign import CONV, CONV1X1_AS_DENSE, COPY, LINEAR, Rules
from smlp_jax.models.hire_mlp import HireMLPNet

# How the official layout is checked, in the model card's words: the same weights give
# the logits of the reference named here (its parity test reads that fixture).
PARITY = (
    "our independent PyTorch Hire-MLP in the official state-dict layout (fixture: "
    "`reference/make_hire_mlp_fixture.py`)"
)


def _batch_norm(prefix: str, bn) -> Rules:
    return {
        f"{prefix}.weight": (bn.scale, COPY),
        f"{prefix}.bias": (bn.bias, COPY),
        f"{prefix}.running_mean": (bn.mean, COPY),
        f"{prefix}.running_var": (bn.var, COPY),
    }


def _conv1x1(prefix: str, dense) -> Rules:
    rules = {f"{prefix}.weight": (dense.kernel, CONV1X1_AS_DENSE)}
    if dense.bias is not None:
        rules[f"{prefix}.bias"] = (dense.bias, COPY)
    return rules


def _conv_bn(prefix: str, layer) -> Rules:
    rules = {
        f"{prefix}.proj.weight": (layer.proj.kernel, CONV),
        f"{prefix}.proj.bias": (layer.proj.bias, COPY),
    }
    rules.update(_batch_norm(f"{prefix}.norm", layer.norm))
    return rules


def official_rules(model: HireMLPNet) -> Rules:
    """Official key -> (our variable, layout) for every weight of `model`."""
    rules: dict = dict(_conv_bn("patch_embed", model.patch_embed))
    for i, blocks in enumerate(model.stages):
        for j, block in enumerate(blocks):
            p = f"network.{2 * i}.{j}"
            attn = block.attn
            rules.update(_batch_norm(f"{p}.norm1", block.norm1))
            for axis, mixing in (("h", attn.height), ("w", attn.width)):
                rules.update(_conv1x1(f"{p}.attn.mlp_{axis}1", mixing.reduce))
                rules.update(_batch_norm(f"{p}.attn.mlp_{axis}1_norm", mixing.norm))
                rules.update(_conv1x1(f"{p}.attn.mlp_{axis}2", mixing.expand))
            rules.update(_conv1x1(f"{p}.attn.mlp_c", attn.mlp_c))
            rules.update(_conv1x1(f"{p}.attn.reweight.fc1", attn.reweight.fc1))
            rules.update(_conv1x1(f"{p}.attn.reweight.fc2", attn.reweight.fc2))
            rules.update(_conv1x1(f"{p}.attn.proj", attn.proj))
            rules.update(_batch_norm(f"{p}.norm2", block.norm2))
            rules.update(_conv1x1(f"{p}.mlp.fc1", block.mlp.fc1))
            rules.update(_conv1x1(f"{p}.mlp.fc2", block.mlp.fc2))
        if i < len(model.downsamples):
            rules.update(_conv_bn(f"network.{2 * i + 1}", model.downsamples[i]))
    rules.update(_batch_norm("norm", model.norm))
    rules["head.weight"] = (model.head.kernel, LINEAR)
    rules["head.bias"] = (model.head.bias, COPY)
    return rules
