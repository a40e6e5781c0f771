"""sMLPNet: the official SPACH state-dict layout (`smlp_t/s/b.pth`) -> `SMLPNet`.

Official blocks are numbered across stages (`token_mix.{k}`, `channel_mix.{k}`); the
channel-mixing `nn.Sequential` holds a Rearrange at index 0, hence `.1` for its
LayerNorm and `.2.net.{0,3}` for the two Linears. `proj_h` mixes along the width and
`proh_w` (sic) along the height.
"""

from __future__ import annotations

from smlp_jax.convert.assign import CONV, CONV1X1_AS_DENSE, COPY, LINEAR, Rules
from smlp_jax.convert.resample import axial_bias, axial_kernel
from smlp_jax.models.smlpnet import SMLPNet

# How the official layout is checked, in the model card's words: the same weights give
# the logits of the reference named here (its parity test reads that fixture).
PARITY = (
    "our independent PyTorch sMLPNet in the official state-dict layout (fixture: "
    "`reference/make_smlpnet_fixture.py`)"
)

# The axial mixing weights follow the grid (our variable paths; `proj_h`/`proh_w` in the
# official layout); resample_to_grid=True interpolates them.
GRID_RESAMPLERS = (
    (r"/token_mixing/smlp/mix_[hw]/kernel$", axial_kernel),
    (r"/token_mixing/smlp/mix_[hw]/bias$", axial_bias),
)


def _batch_norm(prefix: str, bn) -> Rules:
    return {
        f"{prefix}.weight": (bn.scale, COPY),
        f"{prefix}.bias": (bn.bias, COPY),
        f"{prefix}.running_mean": (bn.mean, COPY),
        f"{prefix}.running_var": (bn.var, COPY),
    }


def official_rules(model: SMLPNet) -> Rules:
    """Official key -> (our variable, layout) for every weight of `model`."""
    rules: dict = {}
    for i, stem in enumerate(model.stems):
        rules[f"to_patch_embedding.{i}.0.weight"] = (stem.kernel, CONV)
    k = 0
    for blocks in model.stages:
        for block in blocks:
            token_mixing, channel_mixing = block.token_mixing, block.channel_mixing
            t, c = f"token_mix.{k}", f"channel_mix.{k}"
            rules.update(_batch_norm(f"{t}.0.conv_merge.BN", token_mixing.dw_norm))
            rules[f"{t}.0.conv_merge.Conv.weight"] = (token_mixing.dw_conv.kernel, CONV)
            rules.update(_batch_norm(f"{t}.1.BN", token_mixing.smlp_norm))
            rules[f"{t}.1.proj_h.weight"] = (token_mixing.smlp.mix_w.kernel, CONV1X1_AS_DENSE)
            rules[f"{t}.1.proj_h.bias"] = (token_mixing.smlp.mix_w.bias, COPY)
            rules[f"{t}.1.proh_w.weight"] = (token_mixing.smlp.mix_h.kernel, CONV1X1_AS_DENSE)
            rules[f"{t}.1.proh_w.bias"] = (token_mixing.smlp.mix_h.bias, COPY)
            rules[f"{t}.1.fuse.weight"] = (token_mixing.smlp.fuse.kernel, CONV1X1_AS_DENSE)
            rules[f"{c}.1.weight"] = (channel_mixing.norm.scale, COPY)
            rules[f"{c}.1.bias"] = (channel_mixing.norm.bias, COPY)
            rules[f"{c}.2.net.0.weight"] = (channel_mixing.mlp.fc1.kernel, LINEAR)
            rules[f"{c}.2.net.0.bias"] = (channel_mixing.mlp.fc1.bias, COPY)
            rules[f"{c}.2.net.3.weight"] = (channel_mixing.mlp.fc2.kernel, LINEAR)
            rules[f"{c}.2.net.3.bias"] = (channel_mixing.mlp.fc2.bias, COPY)
            k += 1
    rules.update(_batch_norm("batch_norm", model.norm))
    rules["mlp_head.0.weight"] = (model.head.kernel, LINEAR)
    rules["mlp_head.0.bias"] = (model.head.bias, COPY)
    return rules
