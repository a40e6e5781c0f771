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

from smlp_jax.convert.assign import CONV, COPY, LINEAR, Rules
from smlp_jax.convert.resample import (
    mixer_fc1_bias,
    mixer_fc1_kernel,
    mixer_fc2_bias,
    mixer_fc2_kernel,
)
from smlp_jax.models.mixer import MlpMixer

# How the official layout is checked, in the model card's words: the same weights give
# the logits of the reference named here (its parity test reads that fixture).
PARITY = "timm's `MlpMixer` (fixtures: `reference/make_mixer_fixture.py`)"

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
