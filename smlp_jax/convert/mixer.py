"""MLP-Mixer: two official layouts -> `MlpMixer`.

* timm's state dicts (`mixer_b16_224.goog_in21k_ft_in1k`, ...; PyTorch `(out, in)`
  kernels): `stem.proj`, `blocks.{i}.norm1`, `blocks.{i}.mlp_tokens.fc1/fc2`,
  `blocks.{i}.norm2`, `blocks.{i}.mlp_channels.fc1/fc2`, `norm`, `head`.
  `official_rules`. timm evaluates with exact-erf GELU: build with `gelu_approximate=False`.
* The official vit_jax `.npz` checkpoints (`gs://mixer_models/.../Mixer-B_16.npz`), the
  flattened Flax tree: `stem/kernel`, `MixerBlock_{i}/LayerNorm_0/scale`,
  `MixerBlock_{i}/token_mixing/Dense_0/kernel`, ..., `pre_head_layer_norm/scale`,
  `head/kernel`. Flax layout equals ours, so nothing is transposed. `vit_jax_rules`.
  The official Flax GELU is the tanh approximation: build with `gelu_approximate=True`
  (the registered default).

`load_pretrained` picks the layout by the key names (`rules_for_weights`): '/'-separated
keys are the vit_jax tree, '.'-separated ones timm's.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from smlp_jax.convert.assign import CONV, COPY, LINEAR, Rules, WeightsMismatchError
from smlp_jax.convert.resample import square_side
from smlp_jax.models.mixer import MlpMixer

# How the official layout is checked, in the model card's words: the same weights give
# the logits of the reference named here (its parity test reads that fixture).
PARITY = "timm's `MlpMixer` (fixtures: `reference/make_mixer_fixture.py`)"

# The paper's block-diagonal initialisation for a grid K times larger per side
# (Tolstikhin et al. 2021, appendix C): the K x K sub-grids of patches are each mixed with
# the original token MLP, so `fc1` becomes block-diagonal with K^2 copies and the token MLP
# width grows K^2-fold. The model must be built with `tokens_mlp_dim = K^2 x` the
# checkpoint's; it then computes, per sub-grid, exactly what the old one computed on that
# crop.


def _block_layout(old_tokens: int, new_tokens: int) -> tuple[int, np.ndarray, np.ndarray]:
    """For a grid G -> K G: K^2, and per new token (row-major) its sub-grid and its index
    inside that sub-grid."""
    g, g_new = square_side(old_tokens, "checkpoint"), square_side(new_tokens, "model")
    if g_new % g:
        raise WeightsMismatchError(
            f"MLP-Mixer's block-diagonal resampling needs the new grid to be a whole multiple "
            f"of the checkpoint's ({g}x{g} patches); got {g_new}x{g_new}. Pick an image_size "
            f"that is a multiple of the checkpoint's."
        )
    k = g_new // g
    rows, cols = np.divmod(np.arange(new_tokens), g_new)
    block = (rows // g) * k + cols // g
    local = (rows % g) * g + cols % g
    return k * k, block, local


def _check_width(old_hidden: int, new_hidden: int, k2: int) -> None:
    if new_hidden != k2 * old_hidden:
        raise WeightsMismatchError(
            f"MLP-Mixer's block-diagonal resampling to a grid with {k2}x the patches needs "
            f"tokens_mlp_dim={k2 * old_hidden} ({k2} x the checkpoint's {old_hidden}); the "
            f"model has {new_hidden}. Create it with tokens_mlp_dim={k2 * old_hidden}."
        )


def mixer_fc1_kernel(w: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Token MLP `fc1` kernel `(S, D_S) -> (K^2 S, K^2 D_S)`, block-diagonal."""
    k2, block, local = _block_layout(w.shape[0], shape[0])
    _check_width(w.shape[1], shape[1], k2)
    out = np.zeros((shape[0], k2, w.shape[1]), w.dtype)
    out[np.arange(shape[0]), block] = w[local]
    return out.reshape(shape)


def mixer_fc1_bias(b: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Token MLP `fc1` bias `(D_S,) -> (K^2 D_S,)`: one copy per sub-grid."""
    if shape[0] % b.shape[0]:
        raise WeightsMismatchError(
            f"MLP-Mixer's token MLP width {shape[0]} is not a multiple of the checkpoint's "
            f"{b.shape[0]}; create the model with tokens_mlp_dim = K^2 x {b.shape[0]}."
        )
    return np.tile(b, shape[0] // b.shape[0])


def mixer_fc2_kernel(w: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Token MLP `fc2` kernel `(D_S, S) -> (K^2 D_S, K^2 S)`, block-diagonal."""
    k2, block, local = _block_layout(w.shape[1], shape[1])
    _check_width(w.shape[0], shape[0], k2)
    out = np.zeros((k2, w.shape[0], shape[1]), w.dtype)
    out[block, :, np.arange(shape[1])] = w[:, local].T
    return out.reshape(shape)


def mixer_fc2_bias(b: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Token MLP `fc2` bias `(S,) -> (K^2 S,)`: each token takes its sub-grid twin's."""
    _, _, local = _block_layout(b.shape[0], shape[0])
    return b[local]


# Our variable paths whose shapes follow the token grid, and how to carry them to a new
# grid (`resample_to_grid=True`, `config.init_resample_to_grid`): the paper's
# block-diagonal init. Official keys reach them through the rules of either layout.
GRID_RESAMPLERS = (
    (r"^blocks/\d+/token_mixing/fc1/kernel$", mixer_fc1_kernel),
    (r"^blocks/\d+/token_mixing/fc1/bias$", mixer_fc1_bias),
    (r"^blocks/\d+/token_mixing/fc2/kernel$", mixer_fc2_kernel),
    (r"^blocks/\d+/token_mixing/fc2/bias$", mixer_fc2_bias),
)


def _timm_linear(prefix: str, layer) -> Rules:
    return {f"{prefix}.weight": (layer.kernel, LINEAR), f"{prefix}.bias": (layer.bias, COPY)}


def _timm_norm(prefix: str, norm) -> Rules:
    return {f"{prefix}.weight": (norm.scale, COPY), f"{prefix}.bias": (norm.bias, COPY)}


def official_rules(model: MlpMixer) -> Rules:
    """timm key -> (our variable, layout) for every weight of `model`."""
    rules: dict = {
        "stem.proj.weight": (model.stem.kernel, CONV),
        "stem.proj.bias": (model.stem.bias, COPY),
    }
    for i, block in enumerate(model.blocks):
        p = f"blocks.{i}"
        rules.update(_timm_norm(f"{p}.norm1", block.norm1))
        rules.update(_timm_linear(f"{p}.mlp_tokens.fc1", block.token_mixing.fc1))
        rules.update(_timm_linear(f"{p}.mlp_tokens.fc2", block.token_mixing.fc2))
        rules.update(_timm_norm(f"{p}.norm2", block.norm2))
        rules.update(_timm_linear(f"{p}.mlp_channels.fc1", block.channel_mixing.fc1))
        rules.update(_timm_linear(f"{p}.mlp_channels.fc2", block.channel_mixing.fc2))
    rules.update(_timm_norm("norm", model.norm))
    rules.update(_timm_linear("head", model.head))
    return rules


def _flax(prefix: str, module, *names: tuple[str, str]) -> Rules:
    return {f"{prefix}/{flax}": (getattr(module, ours), COPY) for flax, ours in names}


_DENSE = (("kernel", "kernel"), ("bias", "bias"))
_NORM = (("scale", "scale"), ("bias", "bias"))


def vit_jax_rules(model: MlpMixer) -> Rules:
    """vit_jax `.npz` key -> (our variable, layout) for every weight of `model`."""
    rules: dict = dict(_flax("stem", model.stem, *_DENSE))
    for i, block in enumerate(model.blocks):
        p = f"MixerBlock_{i}"
        rules.update(_flax(f"{p}/LayerNorm_0", block.norm1, *_NORM))
        rules.update(_flax(f"{p}/token_mixing/Dense_0", block.token_mixing.fc1, *_DENSE))
        rules.update(_flax(f"{p}/token_mixing/Dense_1", block.token_mixing.fc2, *_DENSE))
        rules.update(_flax(f"{p}/LayerNorm_1", block.norm2, *_NORM))
        rules.update(_flax(f"{p}/channel_mixing/Dense_0", block.channel_mixing.fc1, *_DENSE))
        rules.update(_flax(f"{p}/channel_mixing/Dense_1", block.channel_mixing.fc2, *_DENSE))
    rules.update(_flax("pre_head_layer_norm", model.norm, *_NORM))
    rules.update(_flax("head", model.head, *_DENSE))
    return rules


def rules_for_weights(model: MlpMixer, weights: Mapping[str, object]) -> Rules:
    """The rules of the layout `weights` is in: vit_jax when its keys are '/'-paths."""
    if any("/" in key for key in weights):
        return vit_jax_rules(model)
    return official_rules(model)
