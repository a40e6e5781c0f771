"""ConvMixer (Trockman & Kolter, "Patches Are All You Need?", TMLR 2023), exactly as the
official code (locuslab/convmixer) and timm's `convmixer.py`.

Shapes (NHWC): a `p x p` stride-`p` convolution -> act -> BatchNorm turns
`(B, H, W, 3)` into `(B, H/p, W/p, dim)`; each of `depth` blocks keeps that shape:
    x = x + BN(act(depthwise_conv_k(x)))     'same' zero padding, with bias
    x = BN(act(pointwise_conv(x)))           1x1 convolution, no residual
then the global mean and a Dense head give `(B, num_classes)`.

No weight is tied to the grid, so one model takes any image whose sides are multiples
of the patch size (PyTorch's strided convolution would silently drop the remainder; we
refuse it instead). Initialisation is PyTorch's default, as in the official code.
"""

from __future__ import annotations

from typing import Any, ClassVar

import jax
import jax.numpy as jnp
from flax import nnx

from smlp_jax.models.features import FeatureInterface, feature_specs
from smlp_jax.models.hparams import BLOCKS, PATCH, WIDTH, Choice, Hyper, Int
from smlp_jax.models.layers import BatchNorm, DepthwiseConv, Linear, PatchConv, gelu, relu
from smlp_jax.models.pretrained_cfgs import PretrainedCfg, variant_cfgs
from smlp_jax.models.registry import register_model

Array = jax.Array

_ACTIVATIONS = {"gelu": gelu, "relu": relu}

# Official variants (timm names, ImageNet at 224) and the locuslab CIFAR-10 setting
# (convmixer-cifar10 `train.py` defaults: ConvMixer-256/8, kernel 5, patch 2).
VARIANTS = {
    "1536_20": dict(dim=1536, depth=20, kernel_size=9, patch_size=7, activation="gelu"),
    "768_32": dict(dim=768, depth=32, kernel_size=7, patch_size=7, activation="relu"),
    "1024_20": dict(dim=1024, depth=20, kernel_size=9, patch_size=14, activation="gelu"),
    "256_8": dict(dim=256, depth=8, kernel_size=5, patch_size=2, activation="gelu"),
}


class ConvMixerBlock(nnx.Module):
    """`(B, h, w, dim) -> (B, h, w, dim)`: residual depthwise mixing, then pointwise."""

    def __init__(self, dim: int, kernel_size: int, activation, *, dtype, rngs: nnx.Rngs):
        self.depthwise = DepthwiseConv(dim, kernel_size, use_bias=True, dtype=dtype, rngs=rngs)
        self.depthwise_norm = BatchNorm(dim, dtype=dtype)
        self.pointwise = Linear(dim, dim, dtype=dtype, rngs=rngs)  # a 1x1 convolution
        self.pointwise_norm = BatchNorm(dim, dtype=dtype)
        self.activation = activation

    def __call__(self, x: Array) -> Array:
        x = x + self.depthwise_norm(self.activation(self.depthwise(x)))
        return self.pointwise_norm(self.activation(self.pointwise(x)))


class ConvMixer(FeatureInterface, nnx.Module):
    """ConvMixer-`dim`/`depth`: `(B, H, W, in_chans)` -> `(B, num_classes)`.

    Resolution-free: any H, W divisible by `patch_size`. `image_size` is accepted for a
    uniform `create_model` signature and only checked against the patch size.
    timm's interface (`smlp_jax.models.features`): a feature index a block (`blocks.i`,
    stride `patch_size`); `forward_features` is the last block's map (no final norm).
    """

    # The declared type and range of each hyperparameter (smlp_jax.models.hparams).
    HYPERPARAMETERS: ClassVar[dict[str, Hyper]] = {
        "dim": Int(1, WIDTH),
        "depth": Int(1, BLOCKS),
        "kernel_size": Int(1, PATCH),
        "patch_size": Int(1, PATCH),
        "activation": Choice(*sorted(_ACTIVATIONS)),
    }

    def __init__(
        self,
        *,
        dim: int = 768,
        depth: int = 32,
        kernel_size: int = 7,
        patch_size: int = 7,
        activation: str = "gelu",
        image_size: int = 224,
        in_chans: int = 3,
        num_classes: int = 1000,
        dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        if activation not in _ACTIVATIONS:
            raise ValueError(
                f"ConvMixer activation must be one of {sorted(_ACTIVATIONS)}; got {activation!r}"
            )
        if image_size % patch_size:
            raise ValueError(
                f"ConvMixer with patch_size={patch_size} needs an image_size divisible by "
                f"{patch_size}; got {image_size}."
            )
        self.in_chans = in_chans
        self.patch_size = patch_size
        self.dtype = dtype
        self.activation = _ACTIVATIONS[activation]
        self.stem = PatchConv(in_chans, dim, patch_size, use_bias=True, dtype=dtype, rngs=rngs)
        self.stem_norm = BatchNorm(dim, dtype=dtype)
        self.blocks = nnx.List(
            [
                ConvMixerBlock(dim, kernel_size, self.activation, dtype=dtype, rngs=rngs)
                for _ in range(depth)
            ]
        )
        self._feature_info = feature_specs(
            [dim] * depth, [patch_size] * depth, [f"blocks.{i}" for i in range(depth)]
        )
        self.norm = None  # the official network has no final norm
        self._init_classifier(dim, num_classes, rngs)

    def _before_stages(self, x: Array) -> Array:
        """`(B, H, W, in_chans)` -> the embedded patches `(B, H // p, W // p, dim)`."""
        if x.ndim != 4 or x.shape[-1] != self.in_chans:
            raise ValueError(
                f"ConvMixer expects NHWC images (B, H, W, {self.in_chans}); got {x.shape}."
            )
        p = self.patch_size
        if x.shape[1] % p or x.shape[2] % p:
            raise ValueError(
                f"ConvMixer with patch_size={p} needs image sides divisible by {p}; got "
                f"{x.shape[1]}x{x.shape[2]}. Resize or crop the input."
            )
        return self.stem_norm(self.activation(self.stem(x)))

    def _feature_stages(self):
        return list(self.blocks)


# The variants' pretrained configurations (`smlp_jax.models.pretrained_cfgs.PretrainedCfg`:
# the eval input of the official weights and where they are), registered with them.
# ConvMixer: timm convmixer.py `_cfg` (= the locuslab fork's timm/models/convmixer.py
# `_cfg`, which its validate.py resolves): crop 0.96, bicubic. Files: timm's copies of the
# locuslab release (tmp-iclr/convmixer v1.0) in the layout smlp_jax.convert reads.
_TIMM_HUB = "https://huggingface.co/timm/{}/resolve/main/model.safetensors"
PRETRAINED_CFG = PretrainedCfg(
    crop_pct=0.96,
    official_first_conv="stem.0",
    file_name="model.safetensors",
    release="https://github.com/locuslab/convmixer#evaluation",
    license="MIT",
    source="timm models/convmixer.py _cfg",
)
PRETRAINED_CFGS = variant_cfgs(
    PRETRAINED_CFG,
    convmixer_1536_20=dict(
        url=_TIMM_HUB.format("convmixer_1536_20.in1k"), timm_architecture="convmixer_1536_20"
    ),
    convmixer_768_32=dict(
        url=_TIMM_HUB.format("convmixer_768_32.in1k"), timm_architecture="convmixer_768_32"
    ),
    convmixer_1024_20=dict(
        url=_TIMM_HUB.format("convmixer_1024_20_ks9_p14.in1k"),
        timm_architecture="convmixer_1024_20_ks9_p14",
    ),
    # locuslab/convmixer-cifar10 train.py: CIFAR-10 at 32 px, test_transform is
    # ToTensor + Normalize(cifar10_mean, cifar10_std) (no resize: crop 1.0). No weights.
    convmixer_256_8=dict(
        input_size=(3, 32, 32),
        mean=(0.4914, 0.4822, 0.4465),
        std=(0.2471, 0.2435, 0.2616),
        crop_pct=1.0,
        num_classes=10,
        file_name="",
        release="https://github.com/locuslab/convmixer-cifar10",
        source="locuslab/convmixer-cifar10 train.py test_transform",
    ),
)


# The official constructor's argument names, where ours differ (registered with the
# variants: `create_model` takes either).
def translate_official_args(kwargs: dict[str, Any]) -> None:
    """timm's ConvMixer argument names -> ours, in place (registered with the variants;
    `smlp_jax.models.official_args.translate` calls it): `act_layer` (`nn.GELU`, `"gelu"`)
    is our `activation` (`"gelu"`)."""
    if "act_layer" in kwargs:
        kwargs["activation"] = str(kwargs.pop("act_layer")).lower().removeprefix("nn.")


for _variant, _hparams in VARIANTS.items():
    register_model(
        f"convmixer_{_variant}",
        family="convmixer",
        build=ConvMixer,
        pretrained_cfg=PRETRAINED_CFGS[f"convmixer_{_variant}"],
        official_args=translate_official_args,
        **_hparams,
    )
