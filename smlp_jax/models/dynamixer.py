"""DynaMixer (Wang et al., "DynaMixer: A Vision MLP Architecture with Dynamic Mixing",
ICML 2022), exactly as the official code (ziyuwwang/DynaMixer `models/dynamixer.py`,
`models/vision_model.py`, `models/configs/conf_dynamixer.py`).

Shapes (NHWC, at 224): a 7x7 stride-7 patch embedding gives a `(B, 32, 32, D0)` grid;
four stages of blocks follow, with a stride-2 `Downsample` (a 2x2 convolution; 1x1 when
only the width changes) where the variant says so, so the grid is 32 then 16. Then
LayerNorm -> mean over tokens -> Dense head: `(B, num_classes)`.

Block: x = x + DynaMixerBlock(LN(x)); x = x + MLP(LN(x)) (ratio 3, GELU), where
DynaMixerBlock(x) = proj(h * a_h + w * a_w + c * a_c) with
    h = DynaMixerOp along the height (each column a sequence of L = H tokens),
    w = DynaMixerOp along the width, c = Dense(C, C, no bias),
    a = softmax over {h, w, c} of reweight(mean_{H,W}(h + w + c)), per channel.
DynaMixerOp on a sequence `(N, L, C)`: per head (C / num_head channels) an L x L
mixing matrix is generated from the content,
    M = softmax_over_inputs(generate(compress(x) reshaped to (head, L * reduced_dim))),
and out = Dense(C, C)(M applied to the head's channels along L).
`generate` is a Dense(L * reduced_dim, L * L), so the weights are tied to the grid.
Initialisation follows the official code: Dense kernels trunc-normal(0.02), zero biases.
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
    Bool,
    Float,
    Hyper,
    Int,
    per_stage,
)
from smlp_jax.models.initializers import next_key, split, trunc_normal_init
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

# Official variants (conf_dynamixer.py); all use patch 7 and MLP ratio 3.
VARIANTS = {
    "s": dict(
        layers=(4, 3, 8, 3),
        transitions=(True, False, False, False),
        embed_dims=(192, 384, 384, 384),
        num_heads=(8, 16, 16, 16),
        reduced_dims=(2, 2, 2, 2),
    ),
    "m": dict(
        layers=(4, 3, 14, 3),
        transitions=(False, True, False, False),
        embed_dims=(256, 256, 512, 512),
        num_heads=(8, 8, 16, 16),
        reduced_dims=(2, 2, 2, 2),
    ),
    "l": dict(
        layers=(8, 8, 16, 4),
        transitions=(True, False, False, False),
        embed_dims=(256, 512, 512, 512),
        num_heads=(8, 16, 16, 16),
        reduced_dims=(8, 8, 8, 8),
    ),
}


# The official `_init_weights` for every nn.Linear.
INIT = trunc_normal_init(0.02)


def _linear(in_features: int, out_features: int, key: Array, *, use_bias=True, dtype) -> Linear:
    """A `Linear` initialised as the official `_init_weights` (timm's `trunc_normal_`,
    std 0.02) with a zero bias.

    Takes a key rather than `rngs`: the modules below split one key per block, since each
    `rngs` draw costs far more than a split when the model is traced (`nnx.eval_shape`).
    """
    return Linear(
        in_features, out_features, use_bias=use_bias, kernel_init=INIT, dtype=dtype, key=key
    )


def _mlp(in_features: int, hidden: int, out_features: int, key: Array, *, dtype) -> Mlp:
    """`layers.Mlp` (Linear -> GELU -> Linear) with the official init."""
    return Mlp(in_features, hidden, out_features, kernel_init=INIT, dtype=dtype, key=key)


class DynaMixerOp(nnx.Module):
    """Content-generated mixing along a sequence: `(N, L, C) -> (N, L, C)`."""

    def __init__(
        self, dim: int, seq_len: int, num_head: int, reduced_dim: int, key: Array, *, dtype
    ):
        if dim % num_head:
            raise ValueError(f"DynaMixer: width {dim} is not divisible by {num_head} heads")
        keys = split(key, 3)
        self.compress = _linear(dim, num_head * reduced_dim, keys[0], dtype=dtype)
        self.generate = _linear(seq_len * reduced_dim, seq_len * seq_len, keys[1], dtype=dtype)
        self.out = _linear(dim, dim, keys[2], dtype=dtype)
        self.num_head = num_head
        self.reduced_dim = reduced_dim

    def __call__(self, x: Array) -> Array:
        n, length, c = x.shape
        heads = self.num_head
        feats = self.compress(x).reshape(n, length, heads, self.reduced_dim)
        feats = jnp.swapaxes(feats, 1, 2).reshape(n, heads, length * self.reduced_dim)
        logits = self.generate(feats).reshape(n, heads, length, length)  # (.., in, out)
        # Softmax over the inputs, in float32 like the norms.
        mixing = jax.nn.softmax(logits.astype(jnp.float32), axis=2).astype(x.dtype)
        groups = x.reshape(n, length, heads, c // heads)
        mixed = jnp.einsum("nlhd,nhlm->nmhd", groups, mixing)
        return self.out(mixed.reshape(n, length, c))


class DynaMixerBlock(nnx.Module):
    """Row, column and channel mixing fused by split attention: `(B, L, L, C)` -> same."""

    def __init__(
        self, dim: int, resolution: int, num_head: int, reduced_dim: int, key: Array, *, dtype
    ):
        keys = split(key, 5)
        args = (dim, resolution, num_head, reduced_dim)
        self.mix_h = DynaMixerOp(*args, keys[0], dtype=dtype)
        self.mix_w = DynaMixerOp(*args, keys[1], dtype=dtype)
        self.mlp_c = _linear(dim, dim, keys[2], use_bias=False, dtype=dtype)
        self.reweight = _mlp(dim, dim // 4, dim * 3, keys[3], dtype=dtype)
        self.proj = _linear(dim, dim, keys[4], dtype=dtype)

    def __call__(self, x: Array) -> Array:
        b, hh, ww, c = x.shape
        cols = jnp.swapaxes(x, 1, 2).reshape(b * ww, hh, c)
        h = jnp.swapaxes(self.mix_h(cols).reshape(b, ww, hh, c), 1, 2)
        w = self.mix_w(x.reshape(b * hh, ww, c)).reshape(b, hh, ww, c)
        ch = self.mlp_c(x)
        pooled = jnp.mean((h + w + ch).astype(jnp.float32), axis=(1, 2))  # (B, C)
        weights = self.reweight(pooled.astype(x.dtype)).reshape(b, c, 3)
        a = jax.nn.softmax(weights.astype(jnp.float32), axis=-1).astype(x.dtype)
        a = a[:, None, None, :, :]  # (B, 1, 1, C, 3)
        return self.proj(h * a[..., 0] + w * a[..., 1] + ch * a[..., 2])


class VisionBlock(nnx.Module):
    """Pre-norm residual block: DynaMixerBlock then the channel MLP, `(B,L,L,C)` -> same."""

    def __init__(
        self,
        dim: int,
        resolution: int,
        num_head: int,
        reduced_dim: int,
        mlp_ratio: float,
        drop_path: float,
        skip_lam: float,
        *,
        dtype,
        rngs: nnx.Rngs,
    ):
        self.norm1 = LayerNorm(dim, epsilon=1e-5, dtype=dtype)
        attn_key, mlp_key = split(next_key(rngs.params), 2)
        # `attn` is the official name of the mixing branch.
        self.attn = DynaMixerBlock(dim, resolution, num_head, reduced_dim, attn_key, dtype=dtype)
        self.norm2 = LayerNorm(dim, epsilon=1e-5, dtype=dtype)
        self.mlp = _mlp(dim, int(dim * mlp_ratio), dim, mlp_key, dtype=dtype)
        self.drop_path = DropPath(drop_path, rngs=rngs)
        self.skip_lam = skip_lam

    def __call__(self, x: Array) -> Array:
        x = residual(x, lambda y: self.attn(self.norm1(y)), self.drop_path, self.skip_lam)
        return residual(x, lambda y: self.mlp(self.norm2(y)), self.drop_path, self.skip_lam)


class DynaMixer(FeatureInterface, nnx.Module):
    """DynaMixer: `(B, image_size, image_size, in_chans)` -> `(B, num_classes)`.

    Hyperparameters keep the official names. `network` holds, in the official order,
    each stage (a list of blocks) and the `Downsample` convolutions between stages, so
    the official `network.{n}` indices map one to one. The per-stage grid sizes (the
    official `resolutions`) follow from `image_size`, `patch_size` and `transitions`.
    timm's interface (`smlp_jax.models.features`): a feature index a stage (its blocks'
    output, `network.{n}`); `forward_features` is the normalised last grid.
    """

    head_init = trunc_normal_init(0.02)  # the official `_init_weights`, as `_linear`

    # The declared type and range of each hyperparameter (smlp_jax.models.hparams).
    HYPERPARAMETERS: ClassVar[dict[str, Hyper]] = {
        "layers": per_stage(Int(1, BLOCKS)),
        "transitions": per_stage(Bool()),
        "embed_dims": per_stage(Int(1, WIDTH)),
        "num_heads": per_stage(Int(1, WIDTH)),
        "reduced_dims": per_stage(Int(1, WIDTH)),
        "mlp_ratio": Float(0.0, RATIO, low_open=True),
        "patch_size": Int(1, PATCH),
        "drop_path_rate": DROP_PATH_RATE,
        "skip_lam": Float(0.0, 1000.0, low_open=True),
    }

    def __init__(
        self,
        *,
        layers: Sequence[int] = (4, 3, 8, 3),
        transitions: Sequence[bool] = (True, False, False, False),
        embed_dims: Sequence[int] = (192, 384, 384, 384),
        num_heads: Sequence[int] = (8, 16, 16, 16),
        reduced_dims: Sequence[int] = (2, 2, 2, 2),
        mlp_ratio: float = 3.0,
        patch_size: int = 7,
        image_size: int = 224,
        in_chans: int = 3,
        num_classes: int = 1000,
        drop_path_rate: float = 0.0,
        skip_lam: float = 1.0,
        dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        lengths = {len(layers), len(transitions), len(embed_dims), len(num_heads)}
        if lengths | {len(reduced_dims)} != {len(layers)}:
            raise ValueError(
                "DynaMixer: layers, transitions, embed_dims, num_heads and reduced_dims need "
                "one entry per stage"
            )
        reduction = patch_size * 2 ** sum(bool(t) for t in transitions[:-1])
        if image_size % reduction:
            raise ValueError(
                f"DynaMixer with patch_size={patch_size} and these transitions needs an "
                f"image_size divisible by {reduction}; got {image_size}."
            )
        self.image_size = image_size
        self.in_chans = in_chans
        self.dtype = dtype
        self.stem = PatchConv(
            in_chans, embed_dims[0], patch_size, use_bias=True, dtype=dtype, rngs=rngs
        )
        rates = iter(drop_path_rates(sum(layers), drop_path_rate))
        resolution = image_size // patch_size
        network, modules, reductions = [], [], []
        for i, depth in enumerate(layers):
            blocks = [
                VisionBlock(
                    embed_dims[i],
                    resolution,
                    num_heads[i],
                    reduced_dims[i],
                    mlp_ratio,
                    next(rates),
                    skip_lam,
                    dtype=dtype,
                    rngs=rngs,
                )
                for _ in range(depth)
            ]
            modules.append(f"network.{len(network)}")
            reductions.append(image_size // resolution)
            network.append(nnx.List(blocks))
            if i == len(layers) - 1:
                break
            if transitions[i] or embed_dims[i] != embed_dims[i + 1]:
                patch = 2 if transitions[i] else 1
                network.append(
                    PatchConv(
                        embed_dims[i],
                        embed_dims[i + 1],
                        patch,
                        use_bias=True,
                        dtype=dtype,
                        rngs=rngs,
                    )
                )
                resolution //= patch
        self.network = nnx.List(network)
        self._feature_info = feature_specs(embed_dims, reductions, modules)
        self.norm = LayerNorm(embed_dims[-1], epsilon=1e-5, dtype=dtype)
        self._init_classifier(embed_dims[-1], num_classes, rngs)

    def _before_stages(self, x: Array) -> Array:
        check_input(x, name="DynaMixer", image_size=self.image_size, in_chans=self.in_chans)
        return self.stem(x)

    def _feature_stages(self):
        # Stage i: the Downsample before it (if any), then its blocks.
        stages, downsample = [], None
        for module in self.network:
            if isinstance(module, nnx.List):
                stages.append(sequential(downsample, *module))
                downsample = None
            else:
                downsample = module
        return stages


# The official constructor's argument names, where ours differ (registered with the
# variants: `create_model` takes either).
def translate_official_args(kwargs: dict[str, Any]) -> None:
    """The official `mlp_ratios=[r, ...]` -> `mlp_ratio=r` (one ratio for every stage, as
    every official config has), in place (registered with the variants;
    `smlp_jax.models.official_args.translate` calls it)."""
    if "mlp_ratios" not in kwargs:
        return
    ratios = {float(r) for r in kwargs.pop("mlp_ratios")}
    if len(ratios) != 1:
        raise TypeError(
            f"DynaMixer mlp_ratios={sorted(ratios)}: this implementation has one mlp_ratio for "
            "every stage (as every official config); pass mlp_ratio=."
        )
    kwargs["mlp_ratio"] = ratios.pop()


# The variants' pretrained configurations (`smlp_jax.models.pretrained_cfgs.PretrainedCfg`:
# the eval input of the official weights and where they are), registered with them.
# DynaMixer: models/configs/conf_dynamixer.py default_cfgs over vision_model.py `_cfg`,
# read by main.py's resolve_data_config. No weights are published (README).
PRETRAINED_CFG = PretrainedCfg(
    official_first_conv="patch_embed.proj",
    release="https://github.com/ziyuwwang/DynaMixer",
    license="MIT",
    source="ziyuwwang/DynaMixer models/configs/conf_dynamixer.py default_cfgs",
)
PRETRAINED_CFGS = variant_cfgs(
    PRETRAINED_CFG,
    dynamixer_s=dict(crop_pct=0.9),
    dynamixer_m=dict(crop_pct=0.9),
    dynamixer_l=dict(crop_pct=0.875),
)


for _variant, _hparams in VARIANTS.items():
    register_model(
        f"dynamixer_{_variant}",
        family="dynamixer",
        build=DynaMixer,
        pretrained_cfg=PRETRAINED_CFGS[f"dynamixer_{_variant}"],
        official_args=translate_official_args,
        patch_size=7,
        mlp_ratio=3.0,
        **_hparams,
    )
