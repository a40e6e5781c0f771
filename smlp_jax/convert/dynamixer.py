"""DynaMixer: the official repo's state-dict layout (ziyuwwang/DynaMixer) -> `DynaMixer`.

No weights are published; this reads checkpoints saved by the official training code
(`{'state_dict': ...}` or a bare state dict; a DDP `module.` prefix is dropped).
`patch_embed.proj` is the stem; `network.{n}` is a stage (`network.{n}.{j}` its blocks)
or a `Downsample` conv (`network.{n}.proj`), numbered as the official constructor
appends them; `norm`, `head` close the model. Each `mix_h`/`mix_w` `generate` layer,
Dense(L * reduced_dim, L * L), is tied to its stage's grid.
"""

from __future__ import annotations

import numpy as np
from flax import nnx

from smlp_jax.convert.assign import CONV, COPY, LINEAR, Rules, WeightsMismatchError
from smlp_jax.convert.resample import resize, square_side
from smlp_jax.models.dynamixer import DynaMixer

# How the official layout is checked, in the model card's words: the same weights give
# the logits of the reference named here (its parity test reads that fixture).
PARITY = (
    "our independent PyTorch DynaMixer in the official state-dict layout (fixtures: "
    "`reference/make_dynamixer_fixture.py`)"
)


def dynamixer_generate_kernel(w: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """DynaMixer `generate` kernel `(L r, L L) -> (M r, M M)`.

    Viewed as `(position, reduced, in_position, out_position)`, the three position axes
    are interpolated; x L/M for the longer sum over positions.
    """
    n, m = square_side(w.shape[1], "checkpoint"), square_side(shape[1], "model")
    r = w.shape[0] // n
    if shape[0] != m * r:
        raise WeightsMismatchError(
            f"DynaMixer: the model's generate kernel {shape} does not match reduced_dim={r}"
        )
    grid = resize(w.reshape(n, r, n, n), (m, r, m, m)) * (n / m)
    return grid.reshape(shape)


def dynamixer_generate_bias(b: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """DynaMixer `generate` bias `(L L,) -> (M M,)`, interpolated as an L x L image."""
    n, m = square_side(b.shape[0], "checkpoint"), square_side(shape[0], "model")
    return resize(b.reshape(n, n), (m, m)).reshape(shape)


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
