"""RaftMLP (Tatsunami & Taki, "RaftMLP: How Much Can Be Done Without Attention and with
Less Spatial Locality?", ACCV 2022), as the official `okojoalg/raft-mlp` code
(`libs/models.py` RaftMLP, `libs/modules.py` SerialPermutedLevel with the cross-scale
MLP embedding, settings `imagenet-raft-mlp-cross-mlp-emb-{s,m,l}.yaml`).

Shapes (NHWC, at 224): four levels with patch sizes 4/2/2/2 give token grids
56/28/14/7 with `dims[i]` channels; the head gives `(B, num_classes)`.

Cross-scale embedding (each level): the official layer unfolds the input with several
kernels k (stride = the patch size p, padding (k - p) / 2), concatenates the patches and
applies one Linear. That equals a sum of strided k x k convolutions whose kernels are
slices of the Linear, which is how it is computed here (no k^2-fold unfolded copy).

Block (each level, `depth` times), with rafts of r channels: channel c = j (C/r) + o is
member j of raft o.
    x = x + drop_path(vertical(LN(x)))     per (w, raft o): an MLP over (j, h), r*H -> 2 r*H
    x = x + drop_path(horizontal(LN(x)))   per (h, raft o): an MLP over (j, w), r*W -> 2 r*W
    x = x + drop_path(channel_mlp(LN(x)))  per token: C -> 4C -> C
Head: LayerNorm -> mean over the grid -> Dense.

Other resolutions: the token-mixing weights are tied to the trained grid (`image_size`).
With `resize_to_trained_grid=True` the model takes any input size, as the official code
does: each level bicubically resizes its input to a multiple of its patch size, and each
block resizes the token grid to the trained grid before the vertical/horizontal mixing
and back after it (PyTorch's `F.interpolate(mode="bicubic", align_corners=False)`,
reproduced exactly by `bicubic_matrix`). Without the switch, another size is an error.

Stochastic depth: the official code gives every block the same `drop_path_rate` (no
linear schedule); so does this one.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from smlp_jax.models import remat
from smlp_jax.models.features import FeatureInterface, feature_specs
from smlp_jax.models.hparams import (
    BLOCKS,
    DROP_PATH_RATE,
    PATCH,
    WIDTH,
    Bool,
    Hyper,
    Int,
    per_stage,
)
from smlp_jax.models.layers import (
    DropPath,
    LayerNorm,
    Linear,
    Mlp,
    check_input,
    gelu,
    residual,
)
from smlp_jax.models.pretrained_cfgs import PretrainedCfg, variant_cfgs
from smlp_jax.models.registry import register_model

Array = jax.Array

_LEVELS = dict(
    depths=(2, 2, 6, 2),
    patch_sizes=(4, 2, 2, 2),
    embedding_kernels=((4, 8), (2, 4), (2, 4), (2,)),
    raft_size=2,
    token_expansion_factor=2,
    channel_expansion_factor=4,
    drop_path_rate=0.1,
)
# Official settings imagenet-raft-mlp-cross-mlp-emb-{s,m,l}.yaml.
VARIANTS = {
    "s": dict(dims=(64, 128, 256, 512), **_LEVELS),
    "m": dict(dims=(96, 192, 384, 768), **_LEVELS),
    "l": dict(dims=(128, 192, 512, 1024), **_LEVELS),
}


def bicubic_matrix(size_in: int, size_out: int) -> np.ndarray:
    """`(size_out, size_in)` matrix of PyTorch's 1-D bicubic resize (align_corners=False).

    Cubic convolution with A = -0.75, source index `(i + 0.5) * in / out - 0.5`, border
    taps clamped to the edge, no antialiasing: `F.interpolate(..., mode="bicubic")`
    applied along one axis. The identity when the sizes are equal.
    """
    a = -0.75

    def near(t):  # |t| <= 1
        return ((a + 2) * t - (a + 3)) * t * t + 1

    def far(t):  # 1 < |t| < 2
        return ((a * t - 5 * a) * t + 8 * a) * t - 4 * a

    matrix = np.zeros((size_out, size_in), np.float64)
    scale = size_in / size_out
    for i in range(size_out):
        src = (i + 0.5) * scale - 0.5
        base = math.floor(src)
        t = src - base
        weights = (far(t + 1), near(t), near(1 - t), far(2 - t))
        for offset, weight in zip((-1, 0, 1, 2), weights):
            matrix[i, min(max(base + offset, 0), size_in - 1)] += weight
    return matrix.astype(np.float32)


def resize_grid(x: Array, height: int, width: int) -> Array:
    """Bicubic resize of `(B, H, W, C)` to `(B, height, width, C)` (PyTorch's rule)."""
    if x.shape[1:3] == (height, width):
        return x
    rows = jnp.asarray(bicubic_matrix(x.shape[1], height), x.dtype)
    cols = jnp.asarray(bicubic_matrix(x.shape[2], width), x.dtype)
    return jnp.einsum("yh,bhwc,xw->byxc", rows, x, cols)


class CrossScaleEmbedding(nnx.Module):
    """`(B, H, W, C_in) -> (B, H/p, W/p, C_out)`: the official unfold-concat-Linear.

    `fc` keeps the official Linear (in-features ordered kernel by kernel, each as
    (C_in, k, k)); the call applies its slices as k x k convolutions of stride p.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernels: Sequence[int],
        *,
        dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        self.stride = min(kernels)
        if kernels[0] != self.stride or any(
            k % self.stride or (k - self.stride) % 2 for k in kernels
        ):
            raise ValueError(
                f"RaftMLP embedding kernels {tuple(kernels)} must start with the patch size, "
                "and each must be a multiple of it with an even difference from it."
            )
        self.kernels = tuple(kernels)
        self.in_channels = in_channels
        fan_in = in_channels * sum(k * k for k in kernels)
        self.fc = Linear(fan_in, out_channels, dtype=dtype, rngs=rngs)
        self.dtype = dtype

    def __call__(self, x: Array) -> Array:
        c, s = self.in_channels, self.stride
        kernel = self.fc.kernel[...].astype(self.dtype)
        x = x.astype(self.dtype)
        y, offset = None, 0
        for k in self.kernels:
            part = kernel[offset : offset + c * k * k].reshape(c, k, k, -1).transpose(1, 2, 0, 3)
            offset += c * k * k
            pad = (k - s) // 2
            term = jax.lax.conv_general_dilated(
                x,
                part,
                (s, s),
                ((pad, pad), (pad, pad)),
                dimension_numbers=("NHWC", "HWIO", "NHWC"),
            )
            y = term if y is None else y + term
        return y + self.fc.bias[...].astype(self.dtype)


class RaftTokenMixing(nnx.Module):
    """`(B, H, W, C) -> (B, H, W, C)`: LayerNorm, then an MLP over (raft member, axis).

    `axis=1` is the vertical mixer (MLP over j and h, one per column and raft), `axis=2`
    the horizontal one. The official LayerNorm sees channels in (raft, member) order, so
    its scale and bias are stored in that order (index o r + j) and permuted here.
    """

    def __init__(
        self,
        size: int,
        channels: int,
        raft_size: int,
        expansion_factor: int,
        axis: int,
        *,
        dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        self.norm = LayerNorm(channels, dtype=dtype)
        width = size * raft_size
        self.mlp = Mlp(width, width * expansion_factor, dtype=dtype, rngs=rngs)
        self.size, self.raft_size, self.axis = size, raft_size, axis
        self.dtype = dtype

    def _normalise(self, x: Array) -> Array:
        b, h, w, c = x.shape
        r = self.raft_size
        x32 = x.astype(jnp.float32)
        mean = jnp.mean(x32, axis=-1, keepdims=True)
        var = jnp.mean(jnp.square(x32 - mean), axis=-1, keepdims=True)
        y = (x32 - mean) * jax.lax.rsqrt(var + self.norm.epsilon)
        scale = self.norm.scale[...].reshape(c // r, r).T.reshape(c)
        bias = self.norm.bias[...].reshape(c // r, r).T.reshape(c)
        return (y * scale + bias).astype(self.dtype)

    def __call__(self, x: Array) -> Array:
        b, h, w, c = x.shape
        r, n = self.raft_size, self.size
        y = self._normalise(x).reshape(b, h, w, r, c // r)
        fc1 = self.mlp.fc1.kernel[...].astype(self.dtype).reshape(r, n, -1)
        fc2 = self.mlp.fc2.kernel[...].astype(self.dtype).reshape(-1, r, n)
        b1 = self.mlp.fc1.bias[...].astype(self.dtype)
        b2 = self.mlp.fc2.bias[...].astype(self.dtype).reshape(r, n)
        if self.axis == 1:
            hidden = gelu(jnp.einsum("bhwjo,jhk->bwok", y, fc1) + b1)
            y = jnp.einsum("bwok,kjh->bhwjo", hidden, fc2) + b2.T[None, :, None, :, None]
        else:
            hidden = gelu(jnp.einsum("bhwjo,jwk->bhok", y, fc1) + b1)
            y = jnp.einsum("bhok,kjw->bhwjo", hidden, fc2) + b2.T[None, None, :, :, None]
        return y.reshape(b, h, w, c)


class RaftBlock(nnx.Module):
    """Vertical, horizontal and channel mixing, each residual with drop path."""

    def __init__(
        self,
        grid: tuple[int, int],
        channels: int,
        raft_size: int,
        token_expansion_factor: int,
        channel_expansion_factor: int,
        drop_path: float,
        *,
        dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        args = (channels, raft_size, token_expansion_factor)
        self.vertical = RaftTokenMixing(grid[0], *args, axis=1, dtype=dtype, rngs=rngs)
        self.horizontal = RaftTokenMixing(grid[1], *args, axis=2, dtype=dtype, rngs=rngs)
        self.channel_norm = LayerNorm(channels, dtype=dtype)
        self.channel_mlp = Mlp(
            channels, channels * channel_expansion_factor, dtype=dtype, rngs=rngs
        )
        self.drop_path = DropPath(drop_path, rngs=rngs)
        self.grid = grid

    def __call__(self, x: Array) -> Array:
        size = x.shape[1:3]
        # Another grid only reaches here with resize_to_trained_grid (checked up front).
        x = resize_grid(x, *self.grid)
        x = residual(x, self.vertical, self.drop_path)
        x = residual(x, self.horizontal, self.drop_path)
        x = resize_grid(x, *size)
        return residual(x, lambda y: self.channel_mlp(self.channel_norm(y)), self.drop_path)


class RaftMLP(FeatureInterface, nnx.Module):
    """RaftMLP: `(B, image_size, image_size, in_chans)` -> `(B, num_classes)`.

    Hyperparameters follow the official layer list: level i has `dims[i]` channels,
    `depths[i]` blocks, patch size `patch_sizes[i]` and cross-scale embedding kernels
    `embedding_kernels[i]`.
    timm's interface (`smlp_jax.models.features`): a feature index a level (`levels.i`,
    stride `patch_sizes[0] * ... * patch_sizes[i]`); `forward_features` is the normalised
    last grid.
    """

    # The declared type and range of each hyperparameter (smlp_jax.models.hparams).
    HYPERPARAMETERS: ClassVar[dict[str, Hyper]] = {
        "dims": per_stage(Int(1, WIDTH)),
        "depths": per_stage(Int(1, BLOCKS)),
        "patch_sizes": per_stage(Int(1, PATCH)),
        "embedding_kernels": per_stage(Int(1, PATCH), nested=True),
        "raft_size": Int(1, WIDTH),
        "token_expansion_factor": Int(1, 64),
        "channel_expansion_factor": Int(1, 64),
        "drop_path_rate": DROP_PATH_RATE,
        "resize_to_trained_grid": Bool(),
    }

    def __init__(
        self,
        *,
        dims: Sequence[int] = (64, 128, 256, 512),
        depths: Sequence[int] = (2, 2, 6, 2),
        patch_sizes: Sequence[int] = (4, 2, 2, 2),
        embedding_kernels: Sequence[Sequence[int]] = ((4, 8), (2, 4), (2, 4), (2,)),
        raft_size: int = 2,
        token_expansion_factor: int = 2,
        channel_expansion_factor: int = 4,
        drop_path_rate: float = 0.0,
        image_size: int = 224,
        in_chans: int = 3,
        num_classes: int = 1000,
        resize_to_trained_grid: bool = False,
        dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        if not len(dims) == len(depths) == len(patch_sizes) == len(embedding_kernels):
            raise ValueError(
                "RaftMLP needs one dims/depths/patch_sizes/embedding_kernels per level"
            )
        reduction = math.prod(patch_sizes)
        if image_size % reduction:
            raise ValueError(
                f"RaftMLP with patch sizes {tuple(patch_sizes)} needs an image_size divisible "
                f"by {reduction}; got {image_size}. Other input sizes are served by a model "
                f"built at a divisible size with resize_to_trained_grid=True."
            )
        bad = [d for d in dims if d % raft_size]
        if bad:
            raise ValueError(f"RaftMLP channels {bad} are not divisible by raft_size={raft_size}")
        self.image_size, self.in_chans = image_size, in_chans
        self.patch_sizes = tuple(patch_sizes)
        self.dtype = dtype
        self.resize_to_trained_grid = resize_to_trained_grid
        embeddings, levels = [], []
        grid, channels_in = image_size, in_chans
        for dim, depth, patch, kernels in zip(dims, depths, patch_sizes, embedding_kernels):
            if kernels[0] != patch:
                raise ValueError(f"RaftMLP embedding kernels {kernels} must start with {patch}")
            grid //= patch
            embeddings.append(
                CrossScaleEmbedding(channels_in, dim, kernels, dtype=dtype, rngs=rngs)
            )
            blocks = [
                RaftBlock(
                    (grid, grid),
                    dim,
                    raft_size,
                    token_expansion_factor,
                    channel_expansion_factor,
                    drop_path_rate,
                    dtype=dtype,
                    rngs=rngs,
                )
                for _ in range(depth)
            ]
            levels.append(nnx.List(blocks))
            channels_in = dim
        self.embeddings = nnx.List(embeddings)
        self.levels = nnx.List(levels)
        self._feature_info = feature_specs(
            dims,
            [math.prod(patch_sizes[: i + 1]) for i in range(len(dims))],
            [f"levels.{i}" for i in range(len(dims))],
        )
        self.norm = LayerNorm(dims[-1], dtype=dtype)
        self._init_classifier(dims[-1], num_classes, rngs)

    def _before_stages(self, x: Array) -> Array:
        check_input(x, name="RaftMLP", image_size=None, in_chans=self.in_chans)
        if not self.resize_to_trained_grid and x.shape[1:3] != (self.image_size,) * 2:
            raise ValueError(
                f"RaftMLP was built for {self.image_size}x{self.image_size} images (its token "
                f"mixing weights are tied to that grid); got {x.shape[1]}x{x.shape[2]}. Create "
                f"the model with image_size={x.shape[1]}, or keep image_size (the trained grid) "
                f"and pass resize_to_trained_grid=True to resample the tokens bicubically."
            )
        return x

    def _feature_stages(self):
        return [functools.partial(self._level, i) for i in range(len(self.levels))]

    def _level(self, i: int, x: Array) -> Array:
        """Level i: resize to its patch size's multiple, cross-scale embedding, blocks."""
        patch = self.patch_sizes[i]
        h, w = x.shape[1:3]
        # Official Level: a size that is not a multiple of the patch is resized up to one.
        x = resize_grid(x, -(-h // patch) * patch, -(-w // patch) * patch)
        x = remat.call(self.embeddings[i], x)
        for block in self.levels[i]:
            x = remat.call(block, x)
        return x


# The official constructor's argument names, where ours differ (registered with the
# variants: `create_model` takes either).
def translate_official_args(kwargs: dict[str, Any]) -> None:
    """The official `layers=[{"depth", "dim", "patch_size", "raft_size"}, ...]` -> `depths`,
    `dims`, `patch_sizes` and the one `raft_size` (ours is shared by every level), in place
    (registered with the variants; `smlp_jax.models.official_args.translate` calls it)."""
    if "layers" not in kwargs:
        return
    layers = kwargs.pop("layers")
    try:
        kwargs["depths"] = tuple(int(level["depth"]) for level in layers)
        kwargs["dims"] = tuple(int(level["dim"]) for level in layers)
        kwargs["patch_sizes"] = tuple(int(level["patch_size"]) for level in layers)
        rafts = {int(level["raft_size"]) for level in layers}
    except (TypeError, KeyError) as err:
        raise TypeError(
            f"RaftMLP layers=[...]: each level is a dict with depth, dim, patch_size and "
            f"raft_size (the official format); {err!r} is missing or wrong."
        ) from err
    if len(rafts) != 1:
        raise TypeError(
            f"RaftMLP layers=[...] with raft sizes {sorted(rafts)}: here one raft_size is "
            "shared by every level; pass depths=, dims=, patch_sizes= and raft_size=."
        )
    kwargs["raft_size"] = rafts.pop()


# The variants' pretrained configurations (`smlp_jax.models.pretrained_cfgs.PretrainedCfg`:
# the eval input of the official weights and where they are), registered with them.
# RaftMLP: libs/datasets.py ImageNetGetter.test_transform: Resize(256) + CenterCrop(224)
# with torchvision's default (bilinear) filter, ImageNet mean/std. No weights are
# published; the training writes `last_model_0.pt` (README's detection section).
PRETRAINED_CFG = PretrainedCfg(
    interpolation="bilinear",
    first_conv="embeddings.0.fc",
    official_first_conv="levels.0.fn.0.fc",
    official_classifier="classifier",
    file_name="last_model_0.pt",
    release="https://github.com/okojoalg/raft-mlp",
    license="Apache-2.0",
    source="okojoalg/raft-mlp libs/datasets.py ImageNetGetter",
)
PRETRAINED_CFGS = variant_cfgs(PRETRAINED_CFG, raftmlp_s={}, raftmlp_m={}, raftmlp_l={})


for _variant, _hparams in VARIANTS.items():
    register_model(
        f"raftmlp_{_variant}",
        family="raft_mlp",
        build=RaftMLP,
        pretrained_cfg=PRETRAINED_CFGS[f"raftmlp_{_variant}"],
        official_args=translate_official_args,
        **_hparams,
    )
