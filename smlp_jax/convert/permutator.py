"""Vision Permutator: the official `houqb/VisionPermutator` state-dict layout
(`vip_s7.pth.tar` etc., the timm training script's `state_dict`) -> `VisionPermutator`.

The official `network` list interleaves the stages (`nn.Sequential` of blocks) with the
`Downsample` layers that exist only where a stage halves the grid or changes the width,
so its indices are counted here the same way. The permute MLP's `mlp_h` / `mlp_w` are
plain `nn.Linear(C, C)`: our `SegmentAxisLinear` keeps that kernel, transposed.
"""

from __future__ import annotations

from smlp_jax.convert.assign import CONV, COPY, LINEAR, Rules
from smlp_jax.models.permutator import VisionPermutator

# How the official layout is checked, in the model card's words: the same weights give
# the logits of the reference named here (its parity test reads that fixture).
PARITY = (
    "our independent PyTorch Vision Permutator in the official state-dict layout "
    "(fixture: `reference/make_permutator_fixture.py`)"
)

# Each stage's grid side must equal its segment_dim, so another image size keeps every
# shape (C x C) but changes what each weight of mlp_h / mlp_w means: nothing to resample,
# and a shape check would not notice, hence a refusal whenever resampling is asked for.
GRID_RESAMPLING_UNAVAILABLE = (
    "Vision Permutator's mlp_h/mlp_w mix (grid side x channels in a segment) with the side "
    "fixed by segment_dim, so another image size changes what each weight means, not its "
    "shape, and nothing can be resampled; fine-tune at the checkpoint's image_size."
)


def _linear(prefix: str, dense) -> Rules:
    rules = {f"{prefix}.weight": (dense.kernel, LINEAR)}
    if dense.bias is not None:
        rules[f"{prefix}.bias"] = (dense.bias, COPY)
    return rules


def _layer_norm(prefix: str, norm) -> Rules:
    return {f"{prefix}.weight": (norm.scale, COPY), f"{prefix}.bias": (norm.bias, COPY)}


def _conv(prefix: str, conv) -> Rules:
    return {f"{prefix}.weight": (conv.kernel, CONV), f"{prefix}.bias": (conv.bias, COPY)}


def official_rules(model: VisionPermutator) -> Rules:
    """Official key -> (our variable, layout) for every weight of `model`."""
    rules: dict = dict(_conv("patch_embed.proj", model.patch_embed))
    n = 0  # index into the official `network` list
    for i, blocks in enumerate(model.stages):
        for j, block in enumerate(blocks):
            p = f"network.{n}.{j}"
            attn = block.attn
            rules.update(_layer_norm(f"{p}.norm1", block.norm1))
            rules.update(_linear(f"{p}.attn.mlp_c", attn.mlp_c))
            rules.update(_linear(f"{p}.attn.mlp_h", attn.mlp_h.dense))
            rules.update(_linear(f"{p}.attn.mlp_w", attn.mlp_w.dense))
            rules.update(_linear(f"{p}.attn.reweight.fc1", attn.reweight.fc1))
            rules.update(_linear(f"{p}.attn.reweight.fc2", attn.reweight.fc2))
            rules.update(_linear(f"{p}.attn.proj", attn.proj))
            rules.update(_layer_norm(f"{p}.norm2", block.norm2))
            rules.update(_linear(f"{p}.mlp.fc1", block.mlp.fc1))
            rules.update(_linear(f"{p}.mlp.fc2", block.mlp.fc2))
        n += 1
        if i < len(model.downsamples) and model.downsamples[i] is not None:
            rules.update(_conv(f"network.{n}.proj", model.downsamples[i]))
            n += 1
    rules.update(_layer_norm("norm", model.norm))
    rules.update(_linear("head", model.head))
    return rules
