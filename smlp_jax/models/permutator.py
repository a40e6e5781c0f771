"""Vision Permutator (Hou et al., "Vision Permutator: A Permutable MLP-Like Architecture
for Visual Recognition", TPAMI 2022), exactly as the official `houqb/VisionPermutator`
(formerly Andrew-Qibin) `models/vip.py`.

Shapes (NHWC): a `patch_size` x `patch_size` patch embedding turns `(B, 224, 224, 3)`
into `(B, 224/p, 224/p, C0)`; stages of Permutator blocks follow, with a stride-2
`Downsample` between stages marked by `transitions` (a 1x1 one when only the width
changes); the head gives `(B, num_classes)`.

Block:
    x = x + drop_path(permute_mlp(LN(x))) / skip_lam
    x = x + drop_path(Dense(3C, C)(GELU(Dense(C, 3C)(LN(x))))) / skip_lam
permute_mlp (the official `WeightedPermuteMLP`): channels are cut into `segment_dim`
segments of S = C / segment_dim channels. The height branch mixes, for each column and
segment, all H*S values of (height, channel-in-segment) with one Dense(H*S, H*S); the
width branch does the same over (width, channel-in-segment); the channel branch is a
Dense(C, C). The three are fused with per-channel softmax weights from an MLP on their
spatial mean ("split attention"), then projected by a Dense(C, C). The height and width
Denses have C inputs only when H = W = segment_dim, so each stage's grid side must equal
its `segment_dim`: the model is built for one image size.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import jax
import jax.numpy as jnp
from flax import nnx

from smlp_jax.models.features import FeatureInterface, feature_specs, sequential
from smlp_jax.models.hparams import (
    BLOCKS,
    DROP_PATH_RATE,
    PATCH,
    RATIO,
    WIDTH,
    Bool,
    Float,
    Hyper,
    Int,
    per_stage,
)
from smlp_jax.models.initializers import trunc_normal_init
from smlp_jax.models.layers import (
    DropPath,
    LayerNorm,
    Linear,
    Mlp,
    PatchConv,
    check_input,
    drop_path_rates,
    residual,
)
from smlp_jax.models.pretrained_cfgs import PretrainedCfg, variant_cfgs
from smlp_jax.models.registry import register_model

Array = jax.Array
# The official `_init_weights`: every nn.Linear N(0, 0.02) truncated, zero bias.
LINEAR_INIT = trunc_normal_init(0.02)

# Official variants (vip.py `vip_s14`, `vip_s7`, `vip_m7`, `vip_l7`). drop_path_rate: the
# official README trains vip_s7 with 0.1; S/14 and M/7 take 0.1 too and L/7 0.3 (our
# choice for the larger model; the released logs do not record it).
VARIANTS = {
    "s14": dict(
        layers=(4, 3, 8, 3),
        transitions=(False, False, False, False),
        segment_dim=(16, 16, 16, 16),
        embed_dims=(384, 384, 384, 384),
        patch_size=14,
        drop_path_rate=0.1,
    ),
    "s7": dict(
        layers=(4, 3, 8, 3),
        transitions=(True, False, False, False),
        segment_dim=(32, 16, 16, 16),
        embed_dims=(192, 384, 384, 384),
        patch_size=7,
        drop_path_rate=0.1,
    ),
    "m7": dict(
        layers=(4, 3, 14, 3),
        transitions=(False, True, False, False),
        segment_dim=(32, 32, 16, 16),
        embed_dims=(256, 256, 512, 512),
        patch_size=7,
        drop_path_rate=0.1,
    ),
    "l7": dict(
        layers=(8, 8, 16, 4),
        transitions=(True, False, False, False),
        segment_dim=(32, 16, 16, 16),
        embed_dims=(256, 512, 512, 512),
        patch_size=7,
        drop_path_rate=0.3,
    ),
}


class SegmentAxisLinear(nnx.Module):
    """One Dense over (one spatial axis x channels-in-segment) of `(B, H, W, C)`.

    With C cut into `segments` groups of S channels, `axis=1` computes
    `out[b, k, w, g, o] = sum_{h, s} x[b, h, w, g, s] K[h*S + s, k*S + o]` (shared by
    every column w and segment g); `axis=2` does the same along the width. The kernel is
    `(n*S, n*S)` in `(in, out)` order, the official `nn.Linear(C, C)` transposed.
    """

    def __init__(
        self, dim: int, segments: int, axis: int, use_bias: bool, *, dtype, rngs: nnx.Rngs
    ):
        self.dense = Linear(
            dim, dim, use_bias=use_bias, kernel_init=LINEAR_INIT, dtype=dtype, rngs=rngs
        )
        self.segments = segments
        self.axis = axis
        self.dtype = dtype

    def __call__(self, x: Array) -> Array:
        b, h, w, c = x.shape
        s = c // self.segments
        n = x.shape[self.axis]
        kernel = self.dense.kernel[...].astype(self.dtype).reshape(n, s, n, s)
        x = x.astype(self.dtype).reshape(b, h, w, self.segments, s)
        if self.axis == 1:
            y = jnp.einsum("bhwgs,hsko->bkwgo", x, kernel)
        else:
            y = jnp.einsum("bhwgs,wsko->bhkgo", x, kernel)
        if self.dense.bias is not None:
            # Indexed like the output (position k along the axis, channel o in segment).
            bias = self.dense.bias[...].astype(self.dtype).reshape(n, s)
            y = y + (bias[:, None, None, :] if self.axis == 1 else bias[:, None, :])
        return y.reshape(b, h, w, c)


class WeightedPermuteMLP(nnx.Module):
    """Permute-MLP with split-attention fusion, `(B, n, n, C) -> (B, n, n, C)`, n = segments."""

    def __init__(
        self, dim: int, segment_dim: int, qkv_bias: bool, *, dtype=jnp.float32, rngs: nnx.Rngs
    ):
        self.mlp_c = Linear(
            dim, dim, use_bias=qkv_bias, kernel_init=LINEAR_INIT, dtype=dtype, rngs=rngs
        )
        self.mlp_h = SegmentAxisLinear(dim, segment_dim, 1, qkv_bias, dtype=dtype, rngs=rngs)
        self.mlp_w = SegmentAxisLinear(dim, segment_dim, 2, qkv_bias, dtype=dtype, rngs=rngs)
        self.reweight = Mlp(dim, dim // 4, dim * 3, kernel_init=LINEAR_INIT, dtype=dtype, rngs=rngs)
        self.proj = Linear(dim, dim, kernel_init=LINEAR_INIT, dtype=dtype, rngs=rngs)

    def __call__(self, x: Array) -> Array:
        b, _, _, c = x.shape
        h, w, ch = self.mlp_h(x), self.mlp_w(x), self.mlp_c(x)
        pooled = jnp.mean((h + w + ch).astype(jnp.float32), axis=(1, 2))
        # The official reshape (B, 3C) -> (B, C, 3): branch weights are interleaved.
        logits = self.reweight(pooled.astype(h.dtype)).reshape(b, c, 3)
        a = jax.nn.softmax(logits.astype(jnp.float32), axis=-1).astype(h.dtype)
        a = a[:, None, None, :, :]
        return self.proj(h * a[..., 0] + w * a[..., 1] + ch * a[..., 2])


class PermutatorBlock(nnx.Module):
    """One Permutator block (module doc); both branches share one drop-path rate."""

    def __init__(
        self,
        dim: int,
        segment_dim: int,
        mlp_ratio: float,
        qkv_bias: bool,
        skip_lam: float,
        drop_path: float,
        *,
        dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        self.norm1 = LayerNorm(dim, dtype=dtype)
        self.attn = WeightedPermuteMLP(dim, segment_dim, qkv_bias, dtype=dtype, rngs=rngs)
        self.norm2 = LayerNorm(dim, dtype=dtype)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), kernel_init=LINEAR_INIT, dtype=dtype, rngs=rngs)
        self.drop_path = DropPath(drop_path, rngs=rngs)
        self.skip_lam = skip_lam

    def __call__(self, x: Array) -> Array:
        x = residual(x, lambda y: self.attn(self.norm1(y)), self.drop_path, self.skip_lam)
        return residual(x, lambda y: self.mlp(self.norm2(y)), self.drop_path, self.skip_lam)


class VisionPermutator(FeatureInterface, nnx.Module):
    """ViP: `(B, image_size, image_size, in_chans)` -> `(B, num_classes)`.

    Hyperparameters keep the official names (`layers` are the blocks per stage).
    timm's interface (`smlp_jax.models.features`): a feature index a stage (its blocks'
    output, before the Downsample; `stages.i`); `forward_features` is the normalised
    last grid.
    """

    head_init = LINEAR_INIT

    # The declared type and range of each hyperparameter (smlp_jax.models.hparams).
    HYPERPARAMETERS: ClassVar[dict[str, Hyper]] = {
        "layers": per_stage(Int(1, BLOCKS)),
        "embed_dims": per_stage(Int(1, WIDTH)),
        "transitions": per_stage(Bool()),
        "segment_dim": per_stage(Int(1, WIDTH)),
        "mlp_ratios": per_stage(Float(0.0, RATIO, low_open=True), or_scalar=True),
        "patch_size": Int(1, PATCH),
        "qkv_bias": Bool(),
        "skip_lam": Float(0.0, 1000.0, low_open=True),
        "drop_path_rate": DROP_PATH_RATE,
    }

    def __init__(
        self,
        *,
        layers: Sequence[int] = (4, 3, 8, 3),
        embed_dims: Sequence[int] = (384, 384, 384, 384),
        transitions: Sequence[bool] = (False, False, False, False),
        segment_dim: Sequence[int] = (16, 16, 16, 16),
        mlp_ratios: Sequence[float] | float = 3.0,
        patch_size: int = 14,
        qkv_bias: bool = False,
        skip_lam: float = 1.0,
        image_size: int = 224,
        in_chans: int = 3,
        num_classes: int = 1000,
        drop_path_rate: float = 0.0,
        dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        num_stages = len(layers)
        if not len(embed_dims) == len(transitions) == len(segment_dim) == num_stages:
            raise ValueError(
                "layers, embed_dims, transitions and segment_dim need one entry a stage"
            )
        if isinstance(mlp_ratios, int | float):
            mlp_ratios = (mlp_ratios,) * num_stages
        self.image_size = image_size
        self.in_chans = in_chans
        self.dtype = dtype
        grid = image_size // patch_size
        grids = []
        for i in range(num_stages):
            grids.append(grid)
            if transitions[i] and i < num_stages - 1:
                grid //= 2
        for i, (side, seg, dim) in enumerate(zip(grids, segment_dim, embed_dims)):
            if image_size % patch_size or side != seg or dim % seg:
                raise ValueError(
                    f"Vision Permutator mixes (height x segment) and (width x segment) with "
                    f"one Dense of width embed_dim, so stage {i}'s grid side must equal its "
                    f"segment_dim ({seg}) and divide embed_dim ({dim}); image_size="
                    f"{image_size} with patch_size={patch_size} gives a {side}x{side} grid "
                    f"there. Use image_size={seg * patch_size * 2 ** sum(transitions[:i])} "
                    f"(or set segment_dim to match the grid)."
                )
        rates = drop_path_rates(sum(layers), drop_path_rate)

        self.patch_embed = PatchConv(
            in_chans, embed_dims[0], patch_size, use_bias=True, dtype=dtype, rngs=rngs
        )
        stages, downsamples = [], []
        start = 0
        for i, depth in enumerate(layers):
            blocks = [
                PermutatorBlock(
                    embed_dims[i],
                    segment_dim[i],
                    mlp_ratios[i],
                    qkv_bias,
                    skip_lam,
                    rates[start + j],
                    dtype=dtype,
                    rngs=rngs,
                )
                for j in range(depth)
            ]
            stages.append(nnx.List(blocks))
            start += depth
            if i == num_stages - 1:
                break
            # Official rule: a Downsample after stage i when it halves the grid (2x2,
            # stride 2) or only changes the width (1x1).
            needs = transitions[i] or embed_dims[i] != embed_dims[i + 1]
            stride = 2 if transitions[i] else 1
            downsamples.append(
                PatchConv(
                    embed_dims[i], embed_dims[i + 1], stride, use_bias=True, dtype=dtype, rngs=rngs
                )
                if needs
                else None
            )
        self.stages = nnx.List(stages)
        self.downsamples = nnx.List(downsamples)
        self._feature_info = feature_specs(
            embed_dims,
            [image_size // side for side in grids],
            [f"stages.{i}" for i in range(num_stages)],
        )
        self.norm = LayerNorm(embed_dims[-1], dtype=dtype)
        self._init_classifier(embed_dims[-1], num_classes, rngs)

    def _before_stages(self, x: Array) -> Array:
        check_input(x, name="Vision Permutator", image_size=self.image_size, in_chans=self.in_chans)
        return self.patch_embed(x)

    def _feature_stages(self):
        # Stage i: the Downsample after stage i - 1 (if any), then its blocks.
        downsamples = [None, *self.downsamples]
        return [sequential(down, *blocks) for down, blocks in zip(downsamples, self.stages)]


# The variants' pretrained configurations (`smlp_jax.models.pretrained_cfgs.PretrainedCfg`:
# the eval input of the official weights and where they are), registered with them.
# Vision Permutator: models/vip.py default_cfgs at the repo's last change to it (5888c42:
# S 0.9, M 0.9, L 0.875; earlier commits differ), read by validate.py's
# resolve_data_config. Weights: README's Google Drive links (none for S/14).
PRETRAINED_CFG = PretrainedCfg(
    first_conv="patch_embed",
    official_first_conv="patch_embed.proj",
    release="https://github.com/houqb/VisionPermutator#comparison-with-recent-mlp-like-models",
    license="MIT",
    source="houqb/VisionPermutator models/vip.py default_cfgs",
)
_DRIVE = "https://drive.google.com/file/d/{}/view?usp=sharing"
PRETRAINED_CFGS = variant_cfgs(
    PRETRAINED_CFG,
    vip_s14=dict(crop_pct=0.9),
    vip_s7=dict(
        crop_pct=0.9,
        url=_DRIVE.format("1cX6eauDrsGsLSZnqsX7cl0oiKX8Dzv5z"),
        file_name="vip_s7.pth",  # eval.sh
    ),
    vip_m7=dict(crop_pct=0.9, url=_DRIVE.format("15y5WMypthpbBFdc01E3mJCZit7q0Yn8m")),
    vip_l7=dict(crop_pct=0.875, url=_DRIVE.format("14F5IXGXmB_3jrwK33Efae-WEb5D_G85c")),
)


for _variant, _hparams in VARIANTS.items():
    register_model(
        f"vip_{_variant}",
        family="permutator",
        build=VisionPermutator,
        pretrained_cfg=PRETRAINED_CFGS[f"vip_{_variant}"],
        mlp_ratios=3.0,
        qkv_bias=False,
        skip_lam=1.0,
        **_hparams,
    )
