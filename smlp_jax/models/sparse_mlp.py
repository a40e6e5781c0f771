"""Sparse-MLP (Lou, Xue, Zheng & You, "Sparse-MLP: A Fully-MLP Architecture with
Conditional Computation", arXiv 2109.02008): MLP-Mixer whose last blocks are Sparse
blocks with mixture-of-experts MLPs. There is no public code; this is written from the
paper's description.

Shapes (NHWC): a `patch x patch` stride-`patch` stem turns `(B, H, W, 3)` into S =
(H/p)(W/p) tokens `(B, S, D)`. Dense (Mixer) blocks as `smlp_jax.models.mixer`. A
Sparse block, pre-LayerNorm:
    x = x + drop_path(re_out(MoE_s(re_in(LN(x)))))   token mixing
    x = x + drop_path(MoE_c(LN(x)))                   channel mixing
* re_in, the first re-represent layer: a Dense over the patches S -> S' and one over
  the channels D -> D', giving `(B, D', S')`: D' tokens ("channels") of S' features.
  MoE_s routes those D' tokens top-1 among experts `S' -> tokens_mlp_dim -> S'`; re_out
  maps back (S' -> S, D' -> D). With S' = 2S and D' = D/2 (our choice; the paper gives
  the idea, fewer and longer routed tokens, not one rule) the re-represented tensor has
  as many values as x and MoE_s routes half as many tokens, twice as long.
* MoE_c routes the S patches top-2 among experts `D -> channels_mlp_dim -> D`.
Routing, capacity (factor 1.25, tokens dropped past it) and the load-balancing loss are
in `smlp_jax.models.moe`; each image is one routing group, so an image's result does not
depend on the rest of its batch. Head: LayerNorm -> mean over tokens -> Dense.

Training: `smlp_jax.models.moe.total_aux_loss(model)` after a forward gives the summed
auxiliary loss; add `0.01 x` it to the classification loss (the paper's lambda).

Parameter counts vs the paper (224 px, 1000 classes): the paper's Table 2 gives
Sparse-S ~22M, Sparse-B 69M and Sparse-L 130M; ours are 24.98M, 72.94M and 127.03M
(exact: the parameter-count table of every registered model). Without code, the
per-variant expert counts, expert widths, sparse block positions and re-represent sizes are our
choices (`VARIANTS`: Mixer-S/16, B/16 and a 12-block L/16 backbone, the last two blocks
Sparse, 4 token experts of the dense token-MLP width, 4 channel experts of half the
dense channel-MLP width, S' = 2S, D' = D/2). S and B come out larger than the paper's
because each Sparse block adds the token experts (4 x 2 S' tokens_mlp_dim) and the
re-represent layers (2 S S' + 2 D D') to a Mixer block, and the channel experts hold
twice the dense MLP's weights; L is a shorter backbone than Mixer-L/16 (208M), which
the paper's 130M rules out at 24 blocks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import jax
import jax.numpy as jnp
from flax import nnx

from smlp_jax.models.features import FeatureInterface, feature_specs
from smlp_jax.models.hparams import (
    BLOCKS,
    DROP_PATH_RATE,
    PATCH,
    RATIO,
    WIDTH,
    Float,
    Hyper,
    Int,
    list_of,
    optional,
)
from smlp_jax.models.layers import (
    DropPath,
    LayerNorm,
    Linear,
    PatchConv,
    check_input,
    drop_path_rates,
    residual,
)
from smlp_jax.models.mixer import MixerBlock
from smlp_jax.models.moe import MoeMlp
from smlp_jax.models.pretrained_cfgs import PretrainedCfg, variant_cfgs
from smlp_jax.models.registry import register_model

Array = jax.Array

# Our reconstruction (see the module docstring): Mixer-S/16, B/16 and a 12-block L/16
# backbone, the last two blocks Sparse, 4 token experts (top-1) and 4 channel experts
# (top-2) of half the dense channel-MLP width, so MoE_c costs the dense MLP's FLOPs.
_SPARSE = dict(num_token_experts=4, num_channel_experts=4, patch_size=16)
VARIANTS = {
    "s": dict(
        hidden_dim=512,
        num_blocks=8,
        tokens_mlp_dim=256,
        channels_mlp_dim=2048,
        sparse_blocks=(6, 7),
        **_SPARSE,
    ),
    "b": dict(
        hidden_dim=768,
        num_blocks=12,
        tokens_mlp_dim=384,
        channels_mlp_dim=3072,
        sparse_blocks=(10, 11),
        **_SPARSE,
    ),
    "l": dict(
        hidden_dim=1024,
        num_blocks=12,
        tokens_mlp_dim=512,
        channels_mlp_dim=4096,
        sparse_blocks=(10, 11),
        **_SPARSE,
    ),
}


class ReRepresent(nnx.Module):
    """`(B, S, D) -> (B, D_out, S_out)`: a Dense over patches, then one over channels."""

    def __init__(
        self, tokens: int, channels: int, tokens_out: int, channels_out: int, *, dtype, rngs
    ):
        self.patches = Linear(tokens, tokens_out, dtype=dtype, rngs=rngs)
        self.channels = Linear(channels, channels_out, dtype=dtype, rngs=rngs)

    def __call__(self, x: Array) -> Array:
        y = self.patches(jnp.swapaxes(x, 1, 2))  # (B, D, S_out)
        return jnp.swapaxes(self.channels(jnp.swapaxes(y, 1, 2)), 1, 2)  # (B, D_out, S_out)


class SparseBlock(nnx.Module):
    """A Sparse block on tokens `(B, S, D) -> (B, S, D)` (see the module docstring)."""

    def __init__(
        self,
        num_tokens: int,
        hidden_dim: int,
        tokens_mlp_dim: int,
        channels_mlp_dim: int,
        drop_path: float,
        *,
        represent_tokens: int,
        represent_channels: int,
        num_token_experts: int,
        num_channel_experts: int,
        channel_expert_dim: int,
        capacity_factor: float,
        dtype,
        rngs: nnx.Rngs,
    ):
        s, d = num_tokens, hidden_dim
        s2, d2 = represent_tokens, represent_channels
        self.norm1 = LayerNorm(d, epsilon=1e-6, dtype=dtype)
        self.represent_in = ReRepresent(s, d, s2, d2, dtype=dtype, rngs=rngs)
        self.token_moe = MoeMlp(
            s2,
            tokens_mlp_dim,
            num_token_experts,
            k=1,
            capacity_factor=capacity_factor,
            dtype=dtype,
            rngs=rngs,
        )
        self.represent_out_tokens = Linear(s2, s, dtype=dtype, rngs=rngs)
        self.represent_out_channels = Linear(d2, d, dtype=dtype, rngs=rngs)
        self.norm2 = LayerNorm(d, epsilon=1e-6, dtype=dtype)
        self.channel_moe = MoeMlp(
            d,
            channel_expert_dim,
            num_channel_experts,
            k=2,
            capacity_factor=capacity_factor,
            dtype=dtype,
            rngs=rngs,
        )
        self.drop_path = DropPath(drop_path, ndim=3, rngs=rngs)

    def __call__(self, x: Array) -> Array:
        x = residual(x, self.mix_tokens, self.drop_path)
        return residual(x, lambda y: self.channel_moe(self.norm2(y)), self.drop_path)

    def mix_tokens(self, x: Array) -> Array:
        """LayerNorm, token experts on the reduced representation, back: `(B, S, D) -> same`."""
        y = self.token_moe(self.represent_in(self.norm1(x)))  # (B, D', S')
        y = self.represent_out_tokens(y)  # (B, D', S)
        y = jnp.swapaxes(self.represent_out_channels(jnp.swapaxes(y, 1, 2)), 1, 2)  # (B, D, S)
        return jnp.swapaxes(y, 1, 2)


class SparseMLP(FeatureInterface, nnx.Module):
    """Sparse-MLP: `(B, image_size, image_size, in_chans)` -> `(B, num_classes)`.

    Blocks listed in `sparse_blocks` (0-based) are Sparse blocks, the rest Mixer blocks.
    timm's interface (`smlp_jax.models.features`) as MLP-Mixer's: a feature index a block
    (`blocks.i`, stride `patch_size`); `forward_features` gives the normalised tokens
    `(B, S, hidden_dim)`, `forward_intermediates` each block's tokens on the grid.
    """

    token_features = True
    norm_every_intermediate = True

    # The declared type and range of each hyperparameter (smlp_jax.models.hparams).
    HYPERPARAMETERS: ClassVar[dict[str, Hyper]] = {
        "hidden_dim": Int(1, WIDTH),
        "num_blocks": Int(1, BLOCKS),
        "tokens_mlp_dim": Int(1, WIDTH),
        "channels_mlp_dim": Int(1, WIDTH),
        "sparse_blocks": list_of(Int(0, BLOCKS - 1)),  # indices below num_blocks
        "num_token_experts": Int(1, 1024),
        "num_channel_experts": Int(1, 1024),
        "channel_expert_dim": optional(Int(1, WIDTH)),
        "represent_tokens_factor": Float(0.0, RATIO, low_open=True),
        "represent_channels_factor": Float(0.0, RATIO, low_open=True),
        "capacity_factor": Float(0.0, RATIO, low_open=True),
        "patch_size": Int(1, PATCH),
        "drop_path_rate": DROP_PATH_RATE,
    }

    def __init__(
        self,
        *,
        hidden_dim: int = 512,
        num_blocks: int = 8,
        tokens_mlp_dim: int = 256,
        channels_mlp_dim: int = 2048,
        sparse_blocks: Sequence[int] = (6, 7),
        num_token_experts: int = 4,
        num_channel_experts: int = 4,
        channel_expert_dim: int | None = None,
        represent_tokens_factor: float = 2.0,
        represent_channels_factor: float = 0.5,
        capacity_factor: float = 1.25,
        patch_size: int = 16,
        image_size: int = 224,
        in_chans: int = 3,
        num_classes: int = 1000,
        drop_path_rate: float = 0.0,
        dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        if image_size % patch_size:
            raise ValueError(
                f"Sparse-MLP with patch_size={patch_size} needs an image_size divisible by "
                f"{patch_size}; got {image_size}."
            )
        bad = sorted(i for i in sparse_blocks if not 0 <= i < num_blocks)
        if bad:
            raise ValueError(f"sparse_blocks {bad} are outside 0..{num_blocks - 1}")
        self.image_size, self.in_chans = image_size, in_chans
        self.dtype = dtype
        num_tokens = (image_size // patch_size) ** 2
        represent_tokens = max(1, round(num_tokens * represent_tokens_factor))
        represent_channels = max(1, round(hidden_dim * represent_channels_factor))
        self.stem = PatchConv(
            in_chans, hidden_dim, patch_size, use_bias=True, dtype=dtype, rngs=rngs
        )
        blocks = []
        for i, rate in enumerate(drop_path_rates(num_blocks, drop_path_rate)):
            dims = (num_tokens, hidden_dim, tokens_mlp_dim, channels_mlp_dim, rate)
            if i in sparse_blocks:
                block = SparseBlock(
                    *dims,
                    represent_tokens=represent_tokens,
                    represent_channels=represent_channels,
                    num_token_experts=num_token_experts,
                    num_channel_experts=num_channel_experts,
                    channel_expert_dim=channel_expert_dim or channels_mlp_dim // 2,
                    capacity_factor=capacity_factor,
                    dtype=dtype,
                    rngs=rngs,
                )
            else:
                block = MixerBlock(*dims, gelu_approximate=False, dtype=dtype, rngs=rngs)
            blocks.append(block)
        self.blocks = nnx.List(blocks)
        self._feature_info = feature_specs(
            [hidden_dim] * num_blocks,
            [patch_size] * num_blocks,
            [f"blocks.{i}" for i in range(num_blocks)],
        )
        self.norm = LayerNorm(hidden_dim, epsilon=1e-6, dtype=dtype)
        self._init_classifier(hidden_dim, num_classes, rngs)

    def _before_stages(self, x: Array) -> Array:
        """`(B, H, W, in_chans)` -> the patch tokens `(B, S, hidden_dim)`, row-major."""
        check_input(x, name="Sparse-MLP", image_size=self.image_size, in_chans=self.in_chans)
        x = self.stem(x)
        b, h, w, c = x.shape
        return x.reshape(b, h * w, c)

    def _feature_stages(self):
        return list(self.blocks)


# The variants' pretrained configurations (`smlp_jax.models.pretrained_cfgs.PretrainedCfg`:
# the eval input of the official weights and where they are), registered with them.
# Sparse-MLP: no official code or weights (arXiv 2109.02008); the DeiT eval of our recipe
# (configs/sparse_mlp.py), our choice.
PRETRAINED_CFG = PretrainedCfg(
    official_classifier="",
    source="none (no official code): DeiT's eval, our choice",
)
PRETRAINED_CFGS = variant_cfgs(PRETRAINED_CFG, sparse_mlp_s={}, sparse_mlp_b={}, sparse_mlp_l={})


for _variant, _hparams in VARIANTS.items():
    register_model(
        f"sparse_mlp_{_variant}",
        family="sparse_mlp",
        build=SparseMLP,
        pretrained_cfg=PRETRAINED_CFGS[f"sparse_mlp_{_variant}"],
        **_hparams,
    )
