"""AS-MLP (Lian et al., "AS-MLP: An Axial Shifted MLP Architecture for Vision", ICLR
2022), exactly as the official `svip-lab/AS-MLP` `models/as_mlp.py`.

Shapes (NHWC, at 224 with patch 4): the stem turns `(B, 224, 224, 3)` into a
`(B, 56, 56, C)` grid; a patch merge between stages halves the grid and doubles the
channels (56/28/14/7 and C, 2C, 4C, 8C); the head gives `(B, num_classes)`. Every
weight is per channel or per pixel, so any input whose side is divisible by
`patch_size * 2**(stages - 1)` works (32 for the official models).

Block:
    x = x + drop_path(axial_shift(GN(x)))
    x = x + drop_path(Dense(4C, C)(GELU(Dense(C, 4C)(GN(x)))))
axial_shift: Dense -> GN -> GELU, then two branches that shift channel groups along the
width and along the height (group k of `shift_size` moves by `shift_size // 2 - k`
pixels, zero fill), each -> Dense -> GELU; their sum -> GN -> Dense. Every norm is
GroupNorm(1, C): one mean and variance per sample over (H, W, C), affine per channel.
"""

from __future__ import annotations

import math
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
from smlp_jax.models.initializers import ones, trunc_normal_init, zeros
from smlp_jax.models.layers import (
    DropPath,
    Linear,
    Mlp,
    PatchConv,
    drop_path_rates,
    gelu,
    residual,
)
from smlp_jax.models.pretrained_cfgs import PretrainedCfg, variant_cfgs
from smlp_jax.models.registry import register_model

Array = jax.Array

# Official variants (configs/as_{tiny,small,base}_patch4_shift5_224.yaml).
VARIANTS = {
    "t": dict(embed_dim=96, depths=(2, 2, 6, 2), drop_path_rate=0.2),
    "s": dict(embed_dim=96, depths=(2, 2, 18, 2), drop_path_rate=0.3),
    "b": dict(embed_dim=128, depths=(2, 2, 18, 2), drop_path_rate=0.5),
}


class GroupNorm1(nnx.Module):
    """GroupNorm with one group (PyTorch `nn.GroupNorm(1, C)`) on `(B, H, W, C)`.

    Each sample is normalised by the mean and biased variance of all its H*W*C values
    (computed in float32), then scaled and shifted per channel.
    """

    def __init__(self, num_features: int, *, epsilon: float = 1e-5, dtype=jnp.float32):
        self.scale = nnx.Param(ones((num_features,)))
        self.bias = nnx.Param(zeros((num_features,)))
        self.epsilon = epsilon
        self.dtype = dtype

    def __call__(self, x: Array) -> Array:
        x32 = x.astype(jnp.float32)
        axes = tuple(range(1, x.ndim))
        mean = jnp.mean(x32, axis=axes, keepdims=True)
        var = jnp.mean(jnp.square(x32 - mean), axis=axes, keepdims=True)
        y = (x32 - mean) * jax.lax.rsqrt(var + self.epsilon)
        return (y * self.scale[...] + self.bias[...]).astype(self.dtype)


def axial_shift(x: Array, shift_size: int, axis: int) -> Array:
    """Shifts channel groups of `(B, H, W, C)` along `axis` (1: height, 2: width).

    Channels are cut into groups of `ceil(C / shift_size)` (the last may be smaller);
    group k is read from `shift_size // 2 - k` pixels further along the axis, so group 0
    moves towards index 0 and the last group away from it. Pixels shifted in from
    outside are zero. Done as one zero pad and a static slice per group.
    """
    pad = shift_size // 2
    channels = x.shape[-1]
    group = math.ceil(channels / shift_size)
    size = x.shape[axis]
    widths = [(0, 0)] * x.ndim
    widths[axis] = (pad, pad)
    padded = jnp.pad(x, widths)
    pieces = []
    for k, start in enumerate(range(0, channels, group)):
        # out[i] = x[i + pad - k] = padded[i + 2 pad - k]
        offset = 2 * pad - k
        piece = jax.lax.slice_in_dim(padded, offset, offset + size, axis=axis)
        pieces.append(piece[..., start : start + group])
    return jnp.concatenate(pieces, axis=-1)


class AxialShift(nnx.Module):
    """The axial-shift token mixer, `(B, H, W, C) -> (B, H, W, C)` (see module doc)."""

    def __init__(
        self, dim: int, shift_size: int, as_bias: bool, *, dtype=jnp.float32, rngs: nnx.Rngs
    ):
        if shift_size < 3 or shift_size % 2 == 0:
            raise ValueError(f"AS-MLP needs an odd shift_size >= 3; got {shift_size}.")
        self.conv1 = Linear(dim, dim, use_bias=as_bias, dtype=dtype, rngs=rngs)
        self.conv2_1 = Linear(dim, dim, use_bias=as_bias, dtype=dtype, rngs=rngs)
        self.conv2_2 = Linear(dim, dim, use_bias=as_bias, dtype=dtype, rngs=rngs)
        self.conv3 = Linear(dim, dim, use_bias=as_bias, dtype=dtype, rngs=rngs)
        self.norm1 = GroupNorm1(dim, dtype=dtype)
        self.norm2 = GroupNorm1(dim, dtype=dtype)
        self.shift_size = shift_size

    def __call__(self, x: Array) -> Array:
        x = gelu(self.norm1(self.conv1(x)))
        left_right = gelu(self.conv2_1(axial_shift(x, self.shift_size, axis=2)))
        top_down = gelu(self.conv2_2(axial_shift(x, self.shift_size, axis=1)))
        return self.conv3(self.norm2(left_right + top_down))


class AxialShiftedBlock(nnx.Module):
    """One AS-MLP block; both residual branches share one drop-path rate."""

    def __init__(
        self,
        dim: int,
        shift_size: int,
        mlp_ratio: float,
        as_bias: bool,
        drop_path: float,
        *,
        dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        self.norm1 = GroupNorm1(dim, dtype=dtype)
        self.axial_shift = AxialShift(dim, shift_size, as_bias, dtype=dtype, rngs=rngs)
        self.norm2 = GroupNorm1(dim, dtype=dtype)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), dtype=dtype, rngs=rngs)
        self.drop_path = DropPath(drop_path, rngs=rngs)

    def __call__(self, x: Array) -> Array:
        x = residual(x, lambda y: self.axial_shift(self.norm1(y)), self.drop_path)
        return residual(x, lambda y: self.mlp(self.norm2(y)), self.drop_path)


class PatchMerging(nnx.Module):
    """`(B, H, W, C) -> (B, H/2, W/2, 2C)`: 2x2 neighbours to channels, GN, Dense(4C, 2C).

    The four neighbours are stacked in the official order (top-left, bottom-left,
    top-right, bottom-right), which the imported `reduction` weights rely on.
    """

    def __init__(self, dim: int, *, dtype=jnp.float32, rngs: nnx.Rngs):
        self.norm = GroupNorm1(4 * dim, dtype=dtype)
        self.reduction = Linear(4 * dim, 2 * dim, use_bias=False, dtype=dtype, rngs=rngs)

    def __call__(self, x: Array) -> Array:
        b, h, w, c = x.shape
        x = x.reshape(b, h // 2, 2, w // 2, 2, c)  # (b, i, dh, j, dw, c)
        x = x.transpose(0, 1, 3, 4, 2, 5).reshape(b, h // 2, w // 2, 4 * c)  # dw major
        return self.reduction(self.norm(x))


class ASMLP(FeatureInterface, nnx.Module):
    """AS-MLP: `(B, H, W, in_chans)` -> `(B, num_classes)`; official hyperparameter names.

    `image_size` only checks that the default input size fits the patch and merges: the
    model itself takes any side divisible by `patch_size * 2**(len(depths) - 1)`.
    timm's interface (`smlp_jax.models.features`): a feature index a stage (its blocks'
    output, before the patch merge; `stages.i`); `forward_features` is the normalised
    last grid.
    """

    # The official `_init_weights` re-initialises only nn.Linear (the head); the 1x1
    # convolutions keep PyTorch's default, as ours do.
    head_init = trunc_normal_init(0.02)

    # The declared type and range of each hyperparameter (smlp_jax.models.hparams).
    HYPERPARAMETERS: ClassVar[dict[str, Hyper]] = {
        "embed_dim": Int(1, WIDTH),
        "depths": per_stage(Int(1, BLOCKS)),
        "shift_size": Int(3, PATCH),
        "mlp_ratio": Float(0.0, RATIO, low_open=True),
        "as_bias": Bool(),
        "patch_size": Int(1, PATCH),
        "patch_norm": Bool(),
        "drop_path_rate": DROP_PATH_RATE,
    }

    def __init__(
        self,
        *,
        embed_dim: int = 96,
        depths: Sequence[int] = (2, 2, 6, 2),
        shift_size: int = 5,
        mlp_ratio: float = 4.0,
        as_bias: bool = True,
        patch_size: int = 4,
        patch_norm: bool = True,
        image_size: int = 224,
        in_chans: int = 3,
        num_classes: int = 1000,
        drop_path_rate: float = 0.1,
        dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        num_stages = len(depths)
        self.reduction = patch_size * 2 ** (num_stages - 1)
        self.in_chans = in_chans
        self.dtype = dtype
        self._check_size(image_size, image_size)
        rates = drop_path_rates(sum(depths), drop_path_rate)

        self.patch_embed = PatchConv(
            in_chans, embed_dim, patch_size, use_bias=True, dtype=dtype, rngs=rngs
        )
        self.patch_norm = GroupNorm1(embed_dim, dtype=dtype) if patch_norm else None
        stages, merges = [], []
        start = 0
        for i, depth in enumerate(depths):
            dim = embed_dim * 2**i
            stages.append(
                nnx.List(
                    [
                        AxialShiftedBlock(
                            dim,
                            shift_size,
                            mlp_ratio,
                            as_bias,
                            rates[start + j],
                            dtype=dtype,
                            rngs=rngs,
                        )
                        for j in range(depth)
                    ]
                )
            )
            start += depth
            if i < num_stages - 1:
                merges.append(PatchMerging(dim, dtype=dtype, rngs=rngs))
        self.stages = nnx.List(stages)
        self.merges = nnx.List(merges)
        self._feature_info = feature_specs(
            [embed_dim * 2**i for i in range(num_stages)],
            [patch_size * 2**i for i in range(num_stages)],
            [f"stages.{i}" for i in range(num_stages)],
        )
        num_features = embed_dim * 2 ** (num_stages - 1)
        self.norm = GroupNorm1(num_features, dtype=dtype)
        self._init_classifier(num_features, num_classes, rngs)

    def _check_size(self, height: int, width: int) -> None:
        if height % self.reduction or width % self.reduction:
            raise ValueError(
                f"AS-MLP reduces the image {self.reduction}x (patch embedding, then a 2x "
                f"merge per stage), so each image side must be divisible by "
                f"{self.reduction}; got {height}x{width}. Resize or pad the input."
            )

    def _before_stages(self, x: Array) -> Array:
        if x.ndim != 4 or x.shape[-1] != self.in_chans:
            raise ValueError(
                f"AS-MLP expects NHWC images (B, H, W, {self.in_chans}); got {x.shape}."
            )
        self._check_size(x.shape[1], x.shape[2])
        x = self.patch_embed(x)
        if self.patch_norm is not None:
            x = self.patch_norm(x)
        return x

    def _feature_stages(self):
        # Stage i: the patch merge after stage i - 1 (if any), then its blocks.
        merges = [None, *self.merges]
        return [sequential(merge, *blocks) for merge, blocks in zip(merges, self.stages)]


# The variants' pretrained configurations (`smlp_jax.models.pretrained_cfgs.PretrainedCfg`:
# the eval input of the official weights and where they are), registered with them.
# AS-MLP: data/build.py eval with config.py's TEST.CROP True, DATA.INTERPOLATION bicubic:
# Resize(int(256 / 224 * S), bicubic) + CenterCrop(S), IMAGENET_DEFAULT_MEAN/STD. Weights:
# README's OneDrive links; file names as train_scripts/test.sh (the yaml's MODEL.NAME).
PRETRAINED_CFG = PretrainedCfg(
    first_conv="patch_embed",
    official_first_conv="patch_embed.proj",
    release="https://github.com/svip-lab/AS-MLP#main-results-on-imagenet-with-pretrained-models",
    license="MIT",
    source="svip-lab/AS-MLP data/build.py build_transform",
)
_ONEDRIVE = "https://shanghaitecheducn-my.sharepoint.com/:u:/g/personal/liandz_shanghaitech_edu_cn/"
PRETRAINED_CFGS = variant_cfgs(
    PRETRAINED_CFG,
    asmlp_t=dict(
        url=_ONEDRIVE + "Eb2lPJI2BshEjJxf9CmRkCUBnB63Wj25-FVVc6zJvgRg6w?e=dEQd5q",
        file_name="asmlp_tiny_patch4_shift5_224.pth",
    ),
    asmlp_s=dict(
        url=_ONEDRIVE + "EVIbw8xHKk1Aq9MBQL-cRbIBVJA_hJE-HEVNf_GVgkw2iQ?e=QIIp2e",
        file_name="asmlp_small_patch4_shift5_224.pth",
    ),
    asmlp_b=dict(
        url=_ONEDRIVE + "EZVBFW_LKctLqgrnnINy88wBRtGFava9wp_65emsvVW2KQ?e=clNjuw",
        file_name="asmlp_base_patch4_shift5_224.pth",
    ),
)


for _variant, _hparams in VARIANTS.items():
    register_model(
        f"asmlp_{_variant}",
        family="as_mlp",
        build=ASMLP,
        pretrained_cfg=PRETRAINED_CFGS[f"asmlp_{_variant}"],
        shift_size=5,
        patch_size=4,
        **_hparams,
    )
