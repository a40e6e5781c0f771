"""sMLPNet (Tang et al., "Sparse MLP for Image Recognition: Is Self-Attention Really
Necessary?", AAAI 2022), exactly as the official `microsoft/SPACH` `models/smlp.py`.

Shapes (NHWC, at 224 with patch 4): the stem turns `(B, 224, 224, 3)` into a
`(B, 56, 56, dim)` token grid; each later stage halves the grid and doubles the
channels (56/28/14/7 and dim, 2dim, 4dim, 8dim); the head gives `(B, num_classes)`.

Block k (numbered across all stages):
    x = x + drop_path_k(token_mixing(x))
    x = x + drop_path_k(channel_mixing(x))
token_mixing: BN -> GELU -> depthwise 3x3 conv, then BN -> GELU -> sMLP, where
    sMLP(a) = fuse(concat[a, mix_W(a), mix_H(a)])
and mix_W / mix_H are one Dense over the width / height axis whose weights are shared
by every row / column and every channel (the "sparse" MLP). channel_mixing: LayerNorm
-> Dense(C, alpha C) -> GELU -> Dense(alpha C, C). Head: BN -> global mean -> Dense.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import jax
import jax.numpy as jnp
from flax import nnx

from smlp_jax.models import backend
from smlp_jax.models.features import FeatureInterface, feature_specs, sequential
from smlp_jax.models.hparams import BLOCKS, DROP_PATH_RATE, PATCH, WIDTH, Hyper, Int, per_stage
from smlp_jax.models.initializers import next_key, torch_uniform_init
from smlp_jax.models.layers import (
    BatchNorm,
    DepthwiseConv,
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

# Official variants (SPACH `smlp.py` hyperparameters; alpha 3, patch 4, 224).
VARIANTS = {
    "t": dict(dim=80, depths=(2, 8, 14, 2), drop_path_rate=0.0),
    "s": dict(dim=96, depths=(2, 10, 24, 2), drop_path_rate=0.2),
    "b": dict(dim=112, depths=(2, 10, 24, 2), drop_path_rate=0.3),
}


class AxialLinear(nnx.Module):
    """A Dense over one spatial axis of `(B, H, W, C)`, shared by the other axes.

    `axis=2` mixes along the width (out[b,h,v,c] = sum_w x[b,h,w,c] K[w,v] + bias[v]);
    `axis=1` mixes along the height. Kernel `(n, n)` in `(in, out)` order; the
    official layer is a 1x1 `Conv2d(n, n)` applied to a permuted tensor.
    """

    def __init__(self, size: int, axis: int, *, dtype=jnp.float32, rngs: nnx.Rngs):
        if axis not in (1, 2):
            raise ValueError(f"axis must be 1 (height) or 2 (width), got {axis}")
        init = torch_uniform_init(size)
        self.kernel = nnx.Param(init(next_key(rngs.params), (size, size)))
        self.bias = nnx.Param(init(next_key(rngs.params), (size,)))
        self.axis = axis
        self.dtype = dtype

    def __call__(self, x: Array) -> Array:
        kernel = self.kernel[...].astype(self.dtype)
        bias = self.bias[...].astype(self.dtype)
        x = x.astype(self.dtype)
        if self.axis == 2:
            return jnp.einsum("bhwc,wv->bhvc", x, kernel) + bias[None, None, :, None]
        if backend.axial_batched():
            # Per image a (g, h) @ (h, W C) matmul: the contracted axis is the matrix's rows
            # as stored, so no transpose of x in or out (the kernel is copied per image).
            b, h, w, c = x.shape
            kernels = jnp.broadcast_to(kernel.T, (b, h, h))
            y = jax.lax.dot_general(kernels, x.reshape(b, h, w * c), (((2,), (1,)), ((0,), (0,))))
            return y.reshape(b, h, w, c) + bias[None, :, None, None]
        return jnp.einsum("bhwc,hg->bgwc", x, kernel) + bias[None, :, None, None]


class SMLP(nnx.Module):
    """The paper's sMLP module: `(B, N, N, C) -> (B, N, N, C)`,
    fuse(concat[x, mix_W(x), mix_H(x)]).

    The fuse is one `(B N N, 3C) @ (3C, C)` matmul over the concatenation, as the official
    code does (faster on CPU than three `(C, C)` matmuls: benchmarks/README.md), or, where
    `backend.fuse_sum()`, the same sum as three matmuls, so that no concatenation is
    written and read back and the backward saves the branches, not their copy.
    """

    def __init__(self, grid: int, channels: int, *, dtype=jnp.float32, rngs: nnx.Rngs):
        self.mix_w = AxialLinear(grid, axis=2, dtype=dtype, rngs=rngs)  # official `proj_h`
        self.mix_h = AxialLinear(grid, axis=1, dtype=dtype, rngs=rngs)  # official `proh_w`
        self.fuse = Linear(3 * channels, channels, use_bias=False, dtype=dtype, rngs=rngs)
        self.channels = channels
        self.dtype = dtype

    def __call__(self, x: Array) -> Array:
        x = x.astype(self.dtype)
        branches = [x, self.mix_w(x), self.mix_h(x)]
        if not backend.fuse_sum():
            return self.fuse(jnp.concatenate(branches, axis=-1))
        kernel = self.fuse.kernel[...].astype(self.dtype)
        c = self.channels
        y = sum(
            jnp.dot(a, kernel[i * c : (i + 1) * c], preferred_element_type=jnp.float32)
            for i, a in enumerate(branches)
        )
        return y.astype(self.dtype)


class TokenMixing(nnx.Module):
    """BN -> GELU -> depthwise 3x3, then BN -> GELU -> sMLP; `(B,N,N,C) -> (B,N,N,C)`."""

    def __init__(self, grid: int, channels: int, *, dtype=jnp.float32, rngs: nnx.Rngs):
        self.dw_norm = BatchNorm(channels, dtype=dtype)
        self.dw_conv = DepthwiseConv(channels, 3, dtype=dtype, rngs=rngs)
        self.smlp_norm = BatchNorm(channels, dtype=dtype)
        self.smlp = SMLP(grid, channels, dtype=dtype, rngs=rngs)

    def __call__(self, x: Array) -> Array:
        # BN -> GELU as one op: the normalised tensor is recomputed, not saved (layers).
        x = self.dw_conv(self.dw_norm(x, act="gelu"))
        return self.smlp(self.smlp_norm(x, act="gelu"))


class ChannelMixing(nnx.Module):
    """LayerNorm -> Dense(C, alpha C) -> GELU -> Dense(alpha C, C) on `(..., C)`."""

    def __init__(self, channels: int, alpha: int, *, dtype=jnp.float32, rngs: nnx.Rngs):
        self.norm = LayerNorm(channels, epsilon=1e-5, dtype=dtype)
        self.mlp = Mlp(channels, channels * alpha, dtype=dtype, rngs=rngs)

    def __call__(self, x: Array) -> Array:
        return self.mlp(self.norm(x))


class SMLPBlock(nnx.Module):
    """One sMLPNet block; both residual branches share one drop-path rate."""

    def __init__(
        self,
        grid: int,
        channels: int,
        alpha: int,
        drop_path: float,
        *,
        dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        self.token_mixing = TokenMixing(grid, channels, dtype=dtype, rngs=rngs)
        self.channel_mixing = ChannelMixing(channels, alpha, dtype=dtype, rngs=rngs)
        self.drop_path = DropPath(drop_path, rngs=rngs)

    def __call__(self, x: Array) -> Array:
        x = residual(x, self.token_mixing, self.drop_path)
        return residual(x, self.channel_mixing, self.drop_path)


class SMLPNet(FeatureInterface, nnx.Module):
    """sMLPNet: `(B, image_size, image_size, in_chans)` -> `(B, num_classes)`.

    Hyperparameters keep the official names; `drop_path_rate` is the official `dp_rate`.
    timm's interface (`smlp_jax.models.features`): a feature index a stage (`stages.i`,
    8 dim channels at stride 32 last); `forward_features` is the normalised last grid.
    """

    # The declared type and range of each hyperparameter (smlp_jax.models.hparams).
    HYPERPARAMETERS: ClassVar[dict[str, Hyper]] = {
        "dim": Int(1, WIDTH),
        "alpha": Int(1, 64),
        "depths": per_stage(Int(1, BLOCKS)),
        "patch_size": Int(1, PATCH),
        "drop_path_rate": DROP_PATH_RATE,
    }

    def __init__(
        self,
        *,
        dim: int = 80,
        alpha: int = 3,
        depths: Sequence[int] = (2, 8, 14, 2),
        patch_size: int = 4,
        image_size: int = 224,
        in_chans: int = 3,
        num_classes: int = 1000,
        drop_path_rate: float = 0.0,
        dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        num_stages = len(depths)
        reduction = patch_size * 2 ** (num_stages - 1)
        if image_size % reduction:
            raise ValueError(
                f"sMLPNet with patch_size={patch_size} and {num_stages} stages needs an "
                f"image_size divisible by {reduction}; got {image_size}."
            )
        self.image_size = image_size
        self.in_chans = in_chans
        self.depths = tuple(depths)
        self.dtype = dtype
        grid = image_size // patch_size
        rates = drop_path_rates(sum(depths), drop_path_rate)

        stems, stages = [], []
        block_index = 0
        for i, depth in enumerate(depths):
            channels = dim * 2**i
            if i == 0:
                stems.append(PatchConv(in_chans, dim, patch_size, dtype=dtype, rngs=rngs))
            else:
                stems.append(PatchConv(channels // 2, channels, 2, dtype=dtype, rngs=rngs))
            blocks = []
            for _ in range(depth):
                blocks.append(
                    SMLPBlock(
                        grid // 2**i, channels, alpha, rates[block_index], dtype=dtype, rngs=rngs
                    )
                )
                block_index += 1
            stages.append(nnx.List(blocks))
        self.stems = nnx.List(stems)
        self.stages = nnx.List(stages)
        self._feature_info = feature_specs(
            [dim * 2**i for i in range(num_stages)],
            [patch_size * 2**i for i in range(num_stages)],
            [f"stages.{i}" for i in range(num_stages)],
        )
        final = dim * 2 ** (num_stages - 1)
        self.norm = BatchNorm(final, dtype=dtype)
        self._init_classifier(final, num_classes, rngs)

    def _before_stages(self, x: Array) -> Array:
        check_input(x, name="sMLPNet", image_size=self.image_size, in_chans=self.in_chans)
        return x

    def _feature_stages(self):
        # Stage i: its patch embedding / merging (`stems[i]`), then its blocks.
        return [sequential(stem, *blocks) for stem, blocks in zip(self.stems, self.stages)]


# The variants' pretrained configurations (`smlp_jax.models.pretrained_cfgs.PretrainedCfg`:
# the eval input of the official weights and where they are), registered with them.
# sMLPNet: SPACH's datasets.py eval: Resize(int(256 / 224 * S), bicubic) + CenterCrop(S),
# IMAGENET_DEFAULT_MEAN/STD (DeiT's). README: sMLPNet-T has no released file.
_SPACH = "https://github.com/microsoft/SPACH/releases/download/v1.0/"
PRETRAINED_CFG = PretrainedCfg(
    first_conv="stems.0",
    official_first_conv="to_patch_embedding.0.0",
    official_classifier="mlp_head.0",
    release="https://github.com/microsoft/SPACH/releases/tag/v1.0",
    license="MIT",
    source="microsoft/SPACH datasets.py build_transform",
)
PRETRAINED_CFGS = variant_cfgs(
    PRETRAINED_CFG,
    smlpnet_t={},
    smlpnet_s=dict(url=_SPACH + "smlp_s.pth", file_name="smlp_s.pth"),
    smlpnet_b=dict(url=_SPACH + "smlp_b.pth", file_name="smlp_b.pth"),
)


for _variant, _hparams in VARIANTS.items():
    register_model(
        f"smlpnet_{_variant}",
        family="smlpnet",
        build=SMLPNet,
        pretrained_cfg=PRETRAINED_CFGS[f"smlpnet_{_variant}"],
        alpha=3,
        patch_size=4,
        **_hparams,
    )
