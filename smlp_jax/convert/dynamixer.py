"""DynaMixer: the official repo's state-dict layout (ziyuwwang/DynaMixer) -> `DynaMixer`.

No weights are published; this reads checkpoints saved by the official training code
(`{'state_dict': ...}` or a bare state dict; a DDP `module.` prefix is dropped).
`patch_embed.proj` is the stem; `network.{n}` is a stage (`network.{n}.{j}` its blocks)
or a `Downsample` conv (`network.{n}.proj`), numbered as the official constructor
appends them; `norm`, `head` close the model. Each `mix_h`/`mix_w` `generate` layer,
Dense(L * reduced_dim, L * L), is tied to its stage's grid.
"""

from __future__ import annotations

from flax import nnx

from smlp_jax.convert.assign import CONV, COPY, LINEAR, Rules
from smlp_jax.convert.resample import dynamixer_generate_bias, dynamixer_generate_kernel
from smlp_jax.models.dynamixer import DynaMixer

# How the official layout is checked, in the model card's words: the same weights give
# the logits of the reference named here (its parity test reads that fixture).
PARITY = (
    "our independent PyTorch DynaMixer in the official state-dict layout (fixtures: "
    "`reference/make_dynamixer_fixture.py`)"
)

# Grid-tied arrays (our variable paths) and how to carry them to another image size
# (resample_to_grid=True, config.init_resample_to_grid).
GRID_RESAMPLERS = (
    (r"/attn/mix_[hw]/generate/kernel$", dynamixer_generate_kernel),
    (r"/attn/mix_[hw]/generate/bias$", dynamixer_generate_bias),
)


def _linear(prefix: str, layer) -> Rules:
    rules = {f"{prefix}.weight": (layer.kernel, LINEAR)}
    if layer.bias is not None:
        rules[f"{prefix}.bias"] = (layer.bias, COPY)
    return rules


def _norm(prefix: str, norm) -> Rules:
    return {f"{prefix}.weight": (norm.scale, COPY), f"{prefix}.bias": (norm.bias, COPY)}


def _block(prefix: str, block) -> Rules:
    rules = {**_norm(f"{prefix}.norm1", block.norm1), **_norm(f"{prefix}.norm2", block.norm2)}
    attn = block.attn
    for name in ("mix_h", "mix_w"):
        op = getattr(attn, name)
        for layer in ("compress", "generate", "out"):
            rules.update(_linear(f"{prefix}.attn.{name}.{layer}", getattr(op, layer)))
    rules.update(_linear(f"{prefix}.attn.mlp_c", attn.mlp_c))
    rules.update(_linear(f"{prefix}.attn.reweight.fc1", attn.reweight.fc1))
    rules.update(_linear(f"{prefix}.attn.reweight.fc2", attn.reweight.fc2))
    rules.update(_linear(f"{prefix}.attn.proj", attn.proj))
    rules.update(_linear(f"{prefix}.mlp.fc1", block.mlp.fc1))
    rules.update(_linear(f"{prefix}.mlp.fc2", block.mlp.fc2))
    return rules


def official_rules(model: DynaMixer) -> Rules:
    """Official key -> (our variable, layout) for every weight of `model`."""
    rules: dict = {
        "patch_embed.proj.weight": (model.stem.kernel, CONV),
        "patch_embed.proj.bias": (model.stem.bias, COPY),
    }
    for n, module in enumerate(model.network):
        if isinstance(module, nnx.List):
            for j, block in enumerate(module):
                rules.update(_block(f"network.{n}.{j}", block))
        else:
            rules[f"network.{n}.proj.weight"] = (module.kernel, CONV)
            rules[f"network.{n}.proj.bias"] = (module.bias, COPY)
    rules.update(_norm("norm", model.norm))
    rules.update(_linear("head", model.head))
    return rules
