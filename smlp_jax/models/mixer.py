"""MLP-Mixer (Tolstikhin et al., "MLP-Mixer: An all-MLP Architecture for Vision",
NeurIPS 2021), exactly as the official Flax code (google-research/vision_transformer
`vit_jax/models_mixer.py`; big_vision `models/mlp_mixer.py` adds S/H and stochastic depth).

Shapes (NHWC): the stem, a `patch x patch` convolution with stride `patch`, turns
`(B, H, W, 3)` into `(B, H/p, W/p, D)`, flattened row-major to S = (H/p)(W/p) tokens
`(B, S, D)`. Each block, pre-LayerNorm (eps 1e-6):
    x = x + drop_path(token_mixing(LN(x)^T)^T)   token MLP  S -> D_S -> S, per channel
    x = x + drop_path(channel_mixing(LN(x)))    channel MLP D -> D_C -> D, per token
then LayerNorm -> mean over tokens -> Dense head (zero-initialised) -> `(B, num_classes)`.

GELU: the official Flax code uses `nn.gelu`, the tanh approximation; timm's PyTorch port
uses the exact erf form. `gelu_approximate` picks one, so both weight releases give the
logits they were trained with (True for the vit_jax `.npz`, False for timm's state dicts).
Initialisation follows the official Flax code: LeCun-normal kernels, zero biases.
"""

from __future__ import annotations

from typing import Any, ClassVar

import jax
import jax.numpy as jnp
from flax import nnx

from smlp_jax.models.features import FeatureInterface, feature_specs
from smlp_jax.models.hparams import BLOCKS, DROP_PATH_RATE, PATCH, WIDTH, Bool, Hyper, Int
from smlp_jax.models.initializers import lecun_normal_init, next_key, zeros
from smlp_jax.models.layers import (
    DropPath,
    LayerNorm,
    Linear,
    PatchConv,
    check_input,
    drop_path_rates,
    residual,
)
from smlp_jax.models.pretrained_cfgs import (
    IMAGENET_INCEPTION_MEAN,
    IMAGENET_INCEPTION_STD,
    PretrainedCfg,
    variant_cfgs,
)
from smlp_jax.models.registry import register_model

Array = jax.Array

# The paper's Table 1 (and big_vision's variant table); tokens/channels MLP dims are
# 0.5x and 4x the hidden width.
SIZES = {
    "s": dict(hidden_dim=512, num_blocks=8, tokens_mlp_dim=256, channels_mlp_dim=2048),
    "b": dict(hidden_dim=768, num_blocks=12, tokens_mlp_dim=384, channels_mlp_dim=3072),
    "l": dict(hidden_dim=1024, num_blocks=24, tokens_mlp_dim=512, channels_mlp_dim=4096),
}
VARIANTS = {
    f"{size}{patch}": dict(patch_size=patch, **SIZES[size])
    for size in ("s", "b", "l")
    for patch in (32, 16)
}


def _flax_linear(in_features: int, out_features: int, *, dtype, rngs: nnx.Rngs) -> Linear:
    """A `Linear` initialised as Flax's `nn.Dense`: LeCun-normal kernel, zero bias."""
    init = lecun_normal_init()
    return Linear(in_features, out_features, kernel_init=init, dtype=dtype, rngs=rngs)


class MlpBlock(nnx.Module):
    """`Dense(n, hidden) -> GELU -> Dense(hidden, n)` over the last axis of `(..., n)`."""

    def __init__(
        self, features: int, hidden: int, *, gelu_approximate: bool, dtype, rngs: nnx.Rngs
    ):
        self.fc1 = _flax_linear(features, hidden, dtype=dtype, rngs=rngs)
        self.fc2 = _flax_linear(hidden, features, dtype=dtype, rngs=rngs)
        self.gelu_approximate = gelu_approximate

    def __call__(self, x: Array) -> Array:
        return self.fc2.after_gelu(self.fc1(x), approximate=self.gelu_approximate)


class MixerBlock(nnx.Module):
    """One Mixer layer on tokens `(B, S, D) -> (B, S, D)`."""

    def __init__(
        self,
        num_tokens: int,
        hidden_dim: int,
        tokens_mlp_dim: int,
        channels_mlp_dim: int,
        drop_path: float,
        *,
        gelu_approximate: bool,
        dtype,
        rngs: nnx.Rngs,
    ):
        self.norm1 = LayerNorm(hidden_dim, epsilon=1e-6, dtype=dtype)
        self.token_mixing = MlpBlock(
            num_tokens, tokens_mlp_dim, gelu_approximate=gelu_approximate, dtype=dtype, rngs=rngs
        )
        self.norm2 = LayerNorm(hidden_dim, epsilon=1e-6, dtype=dtype)
        self.channel_mixing = MlpBlock(
            hidden_dim, channels_mlp_dim, gelu_approximate=gelu_approximate, dtype=dtype, rngs=rngs
        )
        self.drop_path = DropPath(drop_path, ndim=3, rngs=rngs)

    def __call__(self, x: Array) -> Array:
        x = residual(x, self.mix_tokens, self.drop_path)
        return residual(x, lambda y: self.channel_mixing(self.norm2(y)), self.drop_path)

    def mix_tokens(self, x: Array) -> Array:
        """LayerNorm, then the token MLP over S for each channel: `(B, S, D) -> (B, S, D)`."""
        y = jnp.swapaxes(self.norm1(x), 1, 2)  # (B, D, S): the token MLP acts on S
        return jnp.swapaxes(self.token_mixing(y), 1, 2)


class MlpMixer(FeatureInterface, nnx.Module):
    """MLP-Mixer: `(B, image_size, image_size, in_chans)` -> `(B, num_classes)`.

    Hyperparameters keep the official names. `drop_path_rate` is big_vision's
    `stoch_depth` (linear in depth, 0 at the first block); the kept samples are scaled by
    1/(1-p) as in timm, whereas big_vision does not rescale.
    timm's interface (`smlp_jax.models.features`), as timm's Mixer: a feature index a
    block (`blocks.i`, stride `patch_size`); `forward_features` gives the normalised tokens
    `(B, S, hidden_dim)`, `forward_intermediates` each block's tokens on the grid.
    """

    head_init = nnx.initializers.zeros  # vit_jax: the head's kernel starts at zero
    token_features = True
    norm_every_intermediate = True

    # The declared type and range of each hyperparameter (smlp_jax.models.hparams).
    HYPERPARAMETERS: ClassVar[dict[str, Hyper]] = {
        "hidden_dim": Int(1, WIDTH),
        "num_blocks": Int(1, BLOCKS),
        "tokens_mlp_dim": Int(1, WIDTH),
        "channels_mlp_dim": Int(1, WIDTH),
        "patch_size": Int(1, PATCH),
        "drop_path_rate": DROP_PATH_RATE,
        "gelu_approximate": Bool(),
    }

    def __init__(
        self,
        *,
        hidden_dim: int = 768,
        num_blocks: int = 12,
        tokens_mlp_dim: int = 384,
        channels_mlp_dim: int = 3072,
        patch_size: int = 16,
        image_size: int = 224,
        in_chans: int = 3,
        num_classes: int = 1000,
        drop_path_rate: float = 0.0,
        gelu_approximate: bool = True,
        dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        if image_size % patch_size:
            raise ValueError(
                f"MLP-Mixer with patch_size={patch_size} needs an image_size divisible by "
                f"{patch_size}; got {image_size}."
            )
        self.image_size = image_size
        self.in_chans = in_chans
        self.patch_size = patch_size
        self.grid = image_size // patch_size
        self.dtype = dtype
        num_tokens = self.grid**2

        self.stem = PatchConv(
            in_chans, hidden_dim, patch_size, use_bias=True, dtype=dtype, rngs=rngs
        )
        stem_shape = (patch_size, patch_size, in_chans, hidden_dim)
        self.stem.kernel = nnx.Param(lecun_normal_init()(next_key(rngs.params), stem_shape))
        self.stem.bias = nnx.Param(zeros((hidden_dim,)))
        self.blocks = nnx.List(
            [
                MixerBlock(
                    num_tokens,
                    hidden_dim,
                    tokens_mlp_dim,
                    channels_mlp_dim,
                    rate,
                    gelu_approximate=gelu_approximate,
                    dtype=dtype,
                    rngs=rngs,
                )
                for rate in drop_path_rates(num_blocks, drop_path_rate)
            ]
        )
        self._feature_info = feature_specs(
            [hidden_dim] * num_blocks,
            [patch_size] * num_blocks,
            [f"blocks.{i}" for i in range(num_blocks)],
        )
        self.norm = LayerNorm(hidden_dim, epsilon=1e-6, dtype=dtype)  # `pre_head_layer_norm`
        self._init_classifier(hidden_dim, num_classes, rngs)

    def _before_stages(self, x: Array) -> Array:
        """`(B, H, W, in_chans)` -> the patch tokens `(B, S, hidden_dim)`, row-major."""
        check_input(x, name="MLP-Mixer", image_size=self.image_size, in_chans=self.in_chans)
        x = self.stem(x)
        b, h, w, c = x.shape
        return x.reshape(b, h * w, c)

    def _feature_stages(self):
        return list(self.blocks)


# The official constructor's argument names, where ours differ (registered with the
# variants: `create_model` takes either).
def translate_official_args(kwargs: dict[str, Any]) -> None:
    """timm's MlpMixer argument names -> ours, in place (registered with the variants;
    `smlp_jax.models.official_args.translate` calls it): `embed_dim` -> `hidden_dim`;
    `mlp_ratio=(t, c)` -> `tokens_mlp_dim=int(t * hidden_dim)`,
    `channels_mlp_dim=int(c * hidden_dim)` (timm's arithmetic)."""
    if "embed_dim" in kwargs:
        kwargs["hidden_dim"] = kwargs.pop("embed_dim")
    if "mlp_ratio" in kwargs:
        ratios = kwargs.pop("mlp_ratio")
        if "hidden_dim" not in kwargs:
            raise TypeError(
                "mlp_ratio=(tokens, channels) needs embed_dim (or hidden_dim) beside it."
            )
        tokens, channels = ratios
        kwargs["tokens_mlp_dim"] = int(tokens * kwargs["hidden_dim"])
        kwargs["channels_mlp_dim"] = int(channels * kwargs["hidden_dim"])


# The variants' pretrained configurations (`smlp_jax.models.pretrained_cfgs.PretrainedCfg`:
# the eval input of the official weights and where they are), registered with them.
# MLP-Mixer: timm mlp_mixer.py `_cfg` (0.875, bicubic, mean = std = 0.5) for the vit_jax
# weights, whose own eval (vit_jax/input_pipeline.py) resizes to S x S with no crop.
# Files: vit_jax.ipynb's `gsutil ls gs://mixer_models/*` listing (Flax tree, tanh GELU).
# timm names each variant `mixer_<v>_224` (timm models/mlp_mixer.py) and computes GELU
# exactly (its `act_layer=nn.GELU`), so its Hub weights are read with gelu_approximate off.
_GCS = "https://storage.googleapis.com/mixer_models/"
PRETRAINED_CFG = PretrainedCfg(
    mean=IMAGENET_INCEPTION_MEAN,
    std=IMAGENET_INCEPTION_STD,
    official_first_conv="stem",
    release="https://console.cloud.google.com/storage/mixer_models/",
    license="Apache-2.0",
    source="timm models/mlp_mixer.py _cfg",
    timm_model_args=(("gelu_approximate", False),),
)
PRETRAINED_CFGS = variant_cfgs(
    PRETRAINED_CFG,
    mixer_s32=dict(
        url=_GCS + "gsam/Mixer-S_32.npz",
        file_name="Mixer-S_32.npz",
        timm_architecture="mixer_s32_224",
    ),
    mixer_s16=dict(
        url=_GCS + "gsam/Mixer-S_16.npz",
        file_name="Mixer-S_16.npz",
        timm_architecture="mixer_s16_224",
    ),
    mixer_b32=dict(
        url=_GCS + "sam/Mixer-B_32.npz",
        file_name="Mixer-B_32.npz",
        timm_architecture="mixer_b32_224",
    ),
    mixer_b16=dict(
        url=_GCS + "imagenet1k/Mixer-B_16.npz",
        file_name="Mixer-B_16.npz",
        timm_architecture="mixer_b16_224",
    ),
    mixer_l32=dict(timm_architecture="mixer_l32_224"),
    mixer_l16=dict(
        url=_GCS + "imagenet1k/Mixer-L_16.npz",
        file_name="Mixer-L_16.npz",
        timm_architecture="mixer_l16_224",
    ),
)


for _variant, _hparams in VARIANTS.items():
    register_model(
        f"mixer_{_variant}",
        family="mixer",
        build=MlpMixer,
        pretrained_cfg=PRETRAINED_CFGS[f"mixer_{_variant}"],
        official_args=translate_official_args,
        **_hparams,
    )
