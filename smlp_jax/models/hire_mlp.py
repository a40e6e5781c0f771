"""Hire-MLP (Guo et al., "Hire-MLP: Vision MLP via Hierarchical Rearrangement", CVPR
2022), with the state-dict layout of the official `ggjy/Hire-Wave-MLP.pytorch` release.
Written from the paper (arXiv 2108.13341); the module and attribute names follow the
released checkpoints so that they load.

Shapes (NHWC, at 224): an overlapping 7x7 / stride-4 convolution stem gives
`(B, 56, 56, C0)`; a 3x3 / stride-2 convolution between stages halves the grid (56, 28,
14, 7); the head gives `(B, num_classes)`. No weight depends on the grid, so any input
size works (at least 4 pixels a side after the stem).

Block, with BatchNorm as its norms:
    x = x + drop_path(hire_mixing(BN(x)))
    x = x + drop_path(Dense(4C, C)(GELU(Dense(C, 4C)(BN(x)))))
hire_mixing has three branches fused by per-channel softmax weights (an MLP on their
spatial mean), then a Dense(C, C):
  - height: inner-region rearrangement. The rows are cut into regions of `pixel`
    consecutive rows (the grid is first extended circularly to a multiple of `pixel`);
    each region's rows are stacked into the channels (C * pixel), mixed by
    Dense -> BN -> ReLU -> Dense (C*pixel -> C/2 -> C*pixel), and put back. Before this,
    blocks with a non-zero `step` roll the grid by `step` rows (cross-region
    rearrangement: regions then straddle the previous block's borders), and roll back
    after.
  - width: the same along the columns.
  - channel: a Dense(C, C).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

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
    Float,
    Hyper,
    Int,
    per_stage,
)
from smlp_jax.models.initializers import next_key, trunc_normal_init, zeros
from smlp_jax.models.layers import (
    BatchNorm,
    DropPath,
    Linear,
    Mlp,
    drop_path_rates,
    residual,
)
from smlp_jax.models.pretrained_cfgs import PretrainedCfg, variant_cfgs
from smlp_jax.models.registry import register_model

Array = jax.Array
# The official `cls_init_weights`: every Conv2d and Linear N(0, 0.02) truncated, zero bias
# (BatchNorm weight 1, bias 0, as ours start).
INIT = trunc_normal_init(0.02)

_SHARED = dict(
    mlp_ratios=(4, 4, 4, 4),
    pixel=(4, 3, 3, 2),
    step_stride=(2, 2, 3, 2),
    step_dilation=(2, 2, 1, 1),
)
# Official variants (hire_mlp_tiny/small/base/large). drop_path_rate: the official
# README trains Tiny with 0.0 and Base with 0.2; Small and Large are not stated, so
# they take 0.1 and 0.2 by that progression (our choice).
VARIANTS = {
    "t": dict(layers=(2, 2, 4, 2), embed_dims=(64, 128, 320, 512), drop_path_rate=0.0),
    "s": dict(layers=(3, 4, 10, 3), embed_dims=(64, 128, 320, 512), drop_path_rate=0.1),
    "b": dict(layers=(4, 6, 24, 3), embed_dims=(64, 128, 320, 512), drop_path_rate=0.2),
    "l": dict(layers=(4, 6, 24, 3), embed_dims=(96, 192, 384, 768), drop_path_rate=0.2),
}


class Conv2d(nnx.Module):
    """A dense k x k convolution with stride and zero padding, bias, the official init.

    `(B, H, W, C_in) -> (B, (H + 2p - k) // s + 1, ..., C_out)`; kernel `(k, k, in, out)`.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int,
        padding: int,
        *,
        dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        shape = (kernel_size, kernel_size, in_channels, out_channels)
        self.kernel = nnx.Param(INIT(next_key(rngs.params), shape))
        self.bias = nnx.Param(zeros((out_channels,)))
        self.stride = stride
        self.padding = padding
        self.dtype = dtype

    def __call__(self, x: Array) -> Array:
        p = self.padding
        y = jax.lax.conv_general_dilated(
            x.astype(self.dtype),
            self.kernel[...].astype(self.dtype),
            window_strides=(self.stride, self.stride),
            padding=((p, p), (p, p)),
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
        )
        return y + self.bias[...].astype(self.dtype)


class ConvBNReLU(nnx.Module):
    """`proj` conv -> BatchNorm -> ReLU: the stem (7x7/4) and the downsamples (3x3/2)."""

    def __init__(self, cin, cout, kernel_size, stride, padding, *, dtype, rngs: nnx.Rngs):
        self.proj = Conv2d(cin, cout, kernel_size, stride, padding, dtype=dtype, rngs=rngs)
        self.norm = BatchNorm(cout, dtype=dtype)

    def __call__(self, x: Array) -> Array:
        return jax.nn.relu(self.norm(self.proj(x)))


class RegionMixing(nnx.Module):
    """Inner-region rearrangement along one axis, `(B, H, W, C) -> (B, H, W, C)`.

    Regions are `pixel` consecutive positions along `axis` (1: rows, 2: columns); the
    grid is extended circularly to a multiple of `pixel` and cropped back afterwards.
    Inside the stacked channels, channel c of the region's i-th position sits at
    `c * pixel + i` (the official layout the imported kernels assume).
    """

    def __init__(self, dim: int, pixel: int, axis: int, *, dtype=jnp.float32, rngs: nnx.Rngs):
        self.reduce = Linear(
            dim * pixel, dim // 2, use_bias=False, kernel_init=INIT, dtype=dtype, rngs=rngs
        )
        self.norm = BatchNorm(dim // 2, dtype=dtype)
        self.expand = Linear(dim // 2, dim * pixel, kernel_init=INIT, dtype=dtype, rngs=rngs)
        self.pixel = pixel
        self.axis = axis

    def __call__(self, x: Array) -> Array:
        p, axis = self.pixel, self.axis
        size = x.shape[axis]
        extra = (-size) % p
        if extra:
            widths = [(0, 0)] * 4
            widths[axis] = (0, extra)
            x = jnp.pad(x, widths, mode="wrap")
        if axis == 2:  # work on rows: swap height and width, swap back at the end
            x = x.transpose(0, 2, 1, 3)
        b, n, m, c = x.shape
        regions = x.reshape(b, n // p, p, m, c).transpose(0, 1, 3, 4, 2)
        y = self.reduce(regions.reshape(b, n // p, m, c * p))
        y = self.expand(jax.nn.relu(self.norm(y)))
        y = y.reshape(b, n // p, m, c, p).transpose(0, 1, 4, 2, 3).reshape(b, n, m, c)
        if axis == 2:
            y = y.transpose(0, 2, 1, 3)
        return jax.lax.slice_in_dim(y, 0, size, axis=axis)


class HireMLP(nnx.Module):
    """The Hire token mixer (module doc), `(B, H, W, C) -> (B, H, W, C)`."""

    def __init__(self, dim: int, pixel: int, step: int, *, dtype=jnp.float32, rngs: nnx.Rngs):
        self.height = RegionMixing(dim, pixel, axis=1, dtype=dtype, rngs=rngs)
        self.width = RegionMixing(dim, pixel, axis=2, dtype=dtype, rngs=rngs)
        self.mlp_c = Linear(dim, dim, kernel_init=INIT, dtype=dtype, rngs=rngs)
        self.reweight = Mlp(dim, dim // 4, dim * 3, kernel_init=INIT, dtype=dtype, rngs=rngs)
        self.proj = Linear(dim, dim, kernel_init=INIT, dtype=dtype, rngs=rngs)
        self.step = step

    def __call__(self, x: Array) -> Array:
        b, _, _, c = x.shape
        s = self.step
        # Cross-region rearrangement: a circular shift by `step` before the region
        # mixing and back after it.
        h = jnp.roll(self.height(jnp.roll(x, s, axis=1)), -s, axis=1) if s else self.height(x)
        w = jnp.roll(self.width(jnp.roll(x, s, axis=2)), -s, axis=2) if s else self.width(x)
        ch = self.mlp_c(x)
        pooled = jnp.mean((h + w + ch).astype(jnp.float32), axis=(1, 2))
        # The official reshape (B, 3C) -> (B, C, 3): branch weights are interleaved.
        logits = self.reweight(pooled.astype(h.dtype)).reshape(b, c, 3)
        a = jax.nn.softmax(logits.astype(jnp.float32), axis=-1).astype(h.dtype)
        a = a[:, None, None, :, :]
        return self.proj(h * a[..., 0] + w * a[..., 1] + ch * a[..., 2])


class HireBlock(nnx.Module):
    """One Hire-MLP block; both residual branches share one drop-path rate."""

    def __init__(self, dim, mlp_ratio, pixel, step, drop_path, *, dtype, rngs: nnx.Rngs):
        self.norm1 = BatchNorm(dim, dtype=dtype)
        self.attn = HireMLP(dim, pixel, step, dtype=dtype, rngs=rngs)
        self.norm2 = BatchNorm(dim, dtype=dtype)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), kernel_init=INIT, dtype=dtype, rngs=rngs)
        self.drop_path = DropPath(drop_path, rngs=rngs)

    def __call__(self, x: Array) -> Array:
        x = residual(x, lambda y: self.attn(self.norm1(y)), self.drop_path)
        return residual(x, lambda y: self.mlp(self.norm2(y)), self.drop_path)


class HireMLPNet(FeatureInterface, nnx.Module):
    """Hire-MLP: `(B, H, W, in_chans)` -> `(B, num_classes)`; official hyperparameter names.

    Block j of stage i uses `step = (j % step_stride[i]) * step_dilation[i]`, so blocks
    alternate between unshifted and shifted regions. `image_size` is only checked: the
    model takes any input size its 7x7 / stride-4 stem accepts (3 pixels or more).
    timm's interface (`smlp_jax.models.features`): a feature index a stage (its blocks'
    output, before the downsample; `stages.i`, strides 4, 8, 16, 32, exact for sides
    divisible by 32); `forward_features` is the normalised last grid.
    """

    head_init = INIT

    # The declared type and range of each hyperparameter (smlp_jax.models.hparams).
    HYPERPARAMETERS: ClassVar[dict[str, Hyper]] = {
        "layers": per_stage(Int(1, BLOCKS)),
        "embed_dims": per_stage(Int(2, WIDTH)),  # the region MLP's bottleneck is C // 2
        "mlp_ratios": per_stage(Float(0.0, RATIO, low_open=True)),
        "pixel": per_stage(Int(1, PATCH)),
        "step_stride": per_stage(Int(1, BLOCKS)),
        "step_dilation": per_stage(Int(0, PATCH)),
        "drop_path_rate": DROP_PATH_RATE,
    }

    def __init__(
        self,
        *,
        layers: Sequence[int] = (2, 2, 4, 2),
        embed_dims: Sequence[int] = (64, 128, 320, 512),
        mlp_ratios: Sequence[float] = (4, 4, 4, 4),
        pixel: Sequence[int] = (4, 3, 3, 2),
        step_stride: Sequence[int] = (2, 2, 3, 2),
        step_dilation: Sequence[int] = (2, 2, 1, 1),
        image_size: int = 224,
        in_chans: int = 3,
        num_classes: int = 1000,
        drop_path_rate: float = 0.0,
        dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        num_stages = len(layers)
        self.in_chans = in_chans
        self.dtype = dtype
        self.min_size = 3  # the 7x7 stem with padding 2 needs H + 4 >= 7
        self._check_size(image_size, image_size)
        rates = drop_path_rates(sum(layers), drop_path_rate)
        self.patch_embed = ConvBNReLU(in_chans, embed_dims[0], 7, 4, 2, dtype=dtype, rngs=rngs)
        stages, downsamples = [], []
        start = 0
        for i, depth in enumerate(layers):
            blocks = []
            for j in range(depth):
                step = (j % step_stride[i]) * step_dilation[i]
                blocks.append(
                    HireBlock(
                        embed_dims[i],
                        mlp_ratios[i],
                        pixel[i],
                        step,
                        rates[start + j],
                        dtype=dtype,
                        rngs=rngs,
                    )
                )
            stages.append(nnx.List(blocks))
            start += depth
            if i < num_stages - 1:
                downsamples.append(
                    ConvBNReLU(embed_dims[i], embed_dims[i + 1], 3, 2, 1, dtype=dtype, rngs=rngs)
                )
        self.stages = nnx.List(stages)
        self.downsamples = nnx.List(downsamples)
        self._feature_info = feature_specs(
            embed_dims,
            [4 * 2**i for i in range(num_stages)],
            [f"stages.{i}" for i in range(num_stages)],
        )
        self.norm = BatchNorm(embed_dims[-1], dtype=dtype)
        self._init_classifier(embed_dims[-1], num_classes, rngs)

    def _check_size(self, height: int, width: int) -> None:
        if min(height, width) < self.min_size:
            raise ValueError(
                f"Hire-MLP needs images of at least {self.min_size}x{self.min_size} (its "
                f"7x7 stem has padding 2); got {height}x{width}."
            )

    def _before_stages(self, x: Array) -> Array:
        if x.ndim != 4 or x.shape[-1] != self.in_chans:
            raise ValueError(
                f"Hire-MLP expects NHWC images (B, H, W, {self.in_chans}); got {x.shape}."
            )
        self._check_size(x.shape[1], x.shape[2])
        return self.patch_embed(x)

    def _feature_stages(self):
        # Stage i: the downsample after stage i - 1 (if any), then its blocks.
        downsamples = [None, *self.downsamples]
        return [sequential(down, *blocks) for down, blocks in zip(downsamples, self.stages)]


# The official constructor's argument names, where ours differ (registered with the
# variants: `create_model` takes either).
def translate_official_args(kwargs: dict[str, Any]) -> None:
    """The official `step_pad_mode` / `pixel_pad_mode`: "c" (circular, the official default
    and that of the released weights) is what is built and is dropped; "0" (zeros) is
    refused (registered with the variants; `smlp_jax.models.official_args.translate` calls
    it)."""
    for name in ("step_pad_mode", "pixel_pad_mode"):
        if name in kwargs and kwargs.pop(name) != "c":
            raise TypeError(
                f"Hire-MLP {name}: only 'c' (circular padding: the official default, and the "
                "released weights') is built here."
            )


# The variants' pretrained configurations (`smlp_jax.models.pretrained_cfgs.PretrainedCfg`:
# the eval input of the official weights and where they are), registered with them.
# Hire-MLP: datasets.py eval: Resize(int(256 / 224 * S), bicubic) + CenterCrop(S),
# IMAGENET_DEFAULT_MEAN/STD; the model's `_cfg` crop_pct 0.9 is never read by train.py.
_HIRE = "https://github.com/ggjy/Hire-Wave-MLP.pytorch/releases/download/log/"
PRETRAINED_CFG = PretrainedCfg(
    first_conv="patch_embed.proj",
    official_first_conv="patch_embed.proj",
    release="https://github.com/ggjy/Hire-Wave-MLP.pytorch#hire-mlp-on-imagenet-1k-classification",
    license="MIT",
    source="ggjy/Hire-Wave-MLP.pytorch datasets.py build_transform",
)
PRETRAINED_CFGS = variant_cfgs(
    PRETRAINED_CFG,
    hiremlp_t=dict(url=_HIRE + "hire_mlp_tiny.pth", file_name="hire_mlp_tiny.pth"),
    hiremlp_s=dict(url=_HIRE + "hire_mlp_small.pth", file_name="hire_mlp_small.pth"),
    hiremlp_b=dict(url=_HIRE + "hire_mlp_base.pth", file_name="hire_mlp_base.pth"),
    hiremlp_l={},  # README: no checkpoint for Large
)


for _variant, _hparams in VARIANTS.items():
    register_model(
        f"hiremlp_{_variant}",
        family="hire_mlp",
        build=HireMLPNet,
        pretrained_cfg=PRETRAINED_CFGS[f"hiremlp_{_variant}"],
        official_args=translate_official_args,
        **_SHARED,
        **_hparams,
    )
