"""timm's feature interface, shared by every family: `forward_features`, `forward_head`,
`forward_intermediates`, `feature_info`, `reset_classifier`, `get_classifier`, with the
names and meaning of timm's (huggingface/pytorch-image-models, e.g. `mlp_mixer.py`,
`convnext.py`, `_features.feature_take_indices`).

A family's network class mixes in `FeatureInterface` and supplies only what is its own:
  - `_before_stages(x)`: the input checks and whatever comes before the first feature stage
    (a stem for some families, nothing but the checks for sMLPNet, whose stems are inside
    its stages),
    `(B, H, W, in_chans)` -> the first stage's input;
  - `_feature_stages()`: one callable per feature index, stage i taking feature i - 1 (or
    the stem's output) to feature i: a hierarchical model's stage (with the downsampling
    that precedes it), an isotropic model's block;
  - `self.norm`: the final norm (None where the official network has none);
  - `_feature_info`: one `FeatureSpec` per feature index (`feature_specs` builds them);
  - the classifier through `_init_classifier` (its kernel init in the class attribute
    `head_init`: None is PyTorch's default `nn.Linear`, otherwise an initialiser
    `init(key, shape)` as the official code's `_init_weights`).

Then, for `(B, H, W, C_in)` images:
  forward_features(x)  the unpooled final features after the final norm: `(B, h, w, C)`,
                       or `(B, N, C)` tokens for a token-sequence family (MLP-Mixer,
                       Sparse-MLP), as timm's Mixer;
  forward_head(x)      the global mean over the grid (or the tokens) in float32, then the
                       classifier: `(B, num_classes)`; `pre_logits=True` gives `(B, C)`;
  model(x)             `forward_head(forward_features(x))`, exactly.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from smlp_jax.models import remat
from smlp_jax.models.layers import Linear

Array = jax.Array
Stage = Callable[[Array], Array]

OUTPUT_FORMATS = ("NHWC", "NCHW", "NLC")


class FeatureSpec(NamedTuple):
    """One feature index: its channels, its stride from the input, the module it leaves
    (an attribute path on the network, as timm's `feature_info[i]["module"]`)."""

    num_chs: int
    reduction: int
    module: str


def feature_specs(
    channels: Sequence[int], reductions: Sequence[int], modules: Sequence[str]
) -> tuple[FeatureSpec, ...]:
    """`FeatureSpec`s from per-index channels, strides and module paths (hashable, so the
    network's graph definition can hold them)."""
    if not len(channels) == len(reductions) == len(modules):
        raise ValueError("feature_specs needs one channel count, stride and module an index")
    return tuple(FeatureSpec(int(c), int(r), m) for c, r, m in zip(channels, reductions, modules))


def feature_take_indices(
    num_features: int, indices: int | Sequence[int] | None = None, *, name: str = "model"
) -> tuple[list[int], int]:
    """timm's `feature_take_indices`: the absolute indices to take, and the largest.

    `indices`: None -> all; an int n -> the last n; a sequence -> those indices (negative
    ones count from the end). Out of range: one ValueError naming the valid range.
    """
    if indices is None:
        indices = num_features
    if isinstance(indices, int) and not isinstance(indices, bool):
        if not 0 < indices <= num_features:
            raise ValueError(
                f"{name} has {num_features} feature indices: indices={indices} (the last n) "
                f"must be 1 to {num_features}."
            )
        take = list(range(num_features - indices, num_features))
    else:
        take = []
        for i in indices:
            index = num_features + i if i < 0 else i
            if not 0 <= index < num_features:
                raise ValueError(
                    f"{name} has {num_features} feature indices: index {i} is out of range "
                    f"(0 to {num_features - 1}, or -{num_features} to -1)."
                )
            take.append(index)
        if not take:
            raise ValueError(f"{name}: indices is empty; pass None for all {num_features}.")
    return take, max(take)


def sequential(*layers: Stage | None) -> Stage:
    """One stage from callables applied in order (None entries skipped); each module among
    them is rematerialised under an active `remat.policy`."""
    present = [layer for layer in layers if layer is not None]

    def apply(x: Array) -> Array:
        for layer in present:
            x = remat.call(layer, x)
        return x

    return apply


class FeatureInterface:
    """timm's model interface (module doc); mixed into each family's nnx network."""

    # Families set these (see the module doc).
    head_init: ClassVar[Callable[..., Array] | None] = None
    token_features: ClassVar[bool] = False  # features are (B, N, C) tokens, not a grid
    # norm=True in forward_intermediates normalises every intermediate (isotropic
    # families, as timm's Mixer) or only the last feature index (staged ones, as ConvNeXt:
    # the final norm has the last stage's width).
    norm_every_intermediate: ClassVar[bool] = False
    _feature_info: tuple[FeatureSpec, ...]
    norm: Any
    head: Any
    num_features: int
    num_classes: int
    dtype: Any

    def _before_stages(self, x: Array) -> Array:
        raise NotImplementedError

    def _feature_stages(self) -> list[Stage]:
        raise NotImplementedError

    # --- the classifier -------------------------------------------------------------

    def _init_classifier(self, num_features: int, num_classes: int, rngs: nnx.Rngs) -> None:
        """Sets `num_features`, `num_classes` and the classifier `head` (None, the identity,
        for `num_classes=0`, as timm)."""
        if num_classes < 0:
            raise ValueError(f"num_classes must be >= 0 (0: no classifier); got {num_classes}")
        self.num_features = num_features
        self.num_classes = num_classes
        self.head = (
            Linear(
                num_features,
                num_classes,
                kernel_init=type(self).head_init,
                dtype=self.dtype,
                rngs=rngs,
            )
            if num_classes
            else None
        )

    def get_classifier(self) -> Any:
        """The classifier (`head`; None when the model has none)."""
        return self.head

    def reset_classifier(
        self, num_classes: int, global_pool: str | None = None, *, rngs: nnx.Rngs | int = 0
    ) -> None:
        """A fresh classifier for `num_classes` classes, initialised as the official one
        (`rngs`: an `nnx.Rngs` or an int seed, 0 by default). `num_classes=0` removes it:
        the model then returns the pooled features `(B, num_features)`, as timm's does.
        `global_pool`: only the official global mean, None or "avg", is available."""
        if global_pool not in (None, "avg"):
            raise ValueError(
                f"{type(self).__name__} pools by the global mean only (global_pool='avg'); "
                f"got global_pool={global_pool!r}."
            )
        if isinstance(rngs, int):
            rngs = nnx.Rngs(params=rngs)
        self._init_classifier(self.num_features, num_classes, rngs)
        spec = getattr(self, "model_spec", None)  # registry.make_model's record
        if spec is not None:
            self.model_spec = dataclasses.replace(spec, num_classes=num_classes)

    # --- forward ----------------------------------------------------------------------

    @property
    def feature_info(self) -> list[dict[str, Any]]:
        """timm's `feature_info`: per feature index, `{"num_chs", "reduction", "module"}`."""
        return [spec._asdict() for spec in self._feature_info]

    def _final_norm(self, x: Array) -> Array:
        return x if self.norm is None else self.norm(x)

    def _check_float_images(self, x: Array) -> None:
        """Refuses non-float images (a uint8 batch of raw 0-255 pixels): the models take
        normalised float images. On the dtype alone, so it costs nothing at run time."""
        dtype = jnp.result_type(x)
        if not jnp.issubdtype(dtype, jnp.floating):
            raise TypeError(
                f"{type(self).__name__} takes float images normalised as (x / 255 - mean) / "
                f"std, not {dtype} pixels: convert them with (images.astype(np.float32) / 255 "
                "- mean) / std, mean and std from smlp_jax.pretrained_cfg(name) (or the ones "
                "you trained with)."
            )

    def forward_features(self, x: Array) -> Array:
        """`(B, H, W, in_chans)` -> the final features after the final norm, unpooled:
        `(B, h, w, num_features)` (`h = H / feature_info[-1]["reduction"]`), or the tokens
        `(B, h w, num_features)` for MLP-Mixer and Sparse-MLP (timm's Mixer's meaning).
        Images are float, normalised; other dtypes are refused (a TypeError)."""
        self._check_float_images(x)
        x = self._before_stages(x)
        for stage in self._feature_stages():
            x = remat.call(stage, x)
        return self._final_norm(x)

    def forward_head(self, x: Array, pre_logits: bool = False) -> Array:
        """`forward_features`' output -> the global mean (in float32) `(B, num_features)`
        if `pre_logits` or the model has no classifier, else `(B, num_classes)` float32."""
        x = jnp.mean(x.astype(jnp.float32), axis=tuple(range(1, x.ndim - 1)))
        if pre_logits or self.head is None:
            return x
        return self.head(x).astype(jnp.float32)

    def __call__(self, x: Array) -> Array:
        """`(B, H, W, in_chans)` -> `(B, num_classes)`: `forward_head(forward_features(x))`."""
        return self.forward_head(self.forward_features(x))

    def forward_intermediates(
        self,
        x: Array,
        indices: int | Sequence[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NHWC",
        intermediates_only: bool = False,
    ) -> list[Array] | tuple[Array, list[Array]]:
        """The features at `indices` (timm's `forward_intermediates`).

        Args:
          x: `(B, H, W, in_chans)` images.
          indices: None -> every feature index; an int n -> the last n; a sequence -> those
            (negative from the end). The intermediates come in index order.
          norm: apply the final norm to the intermediates: every one for isotropic families
            (MLP-Mixer, Sparse-MLP), the last feature index only for staged ones.
          stop_early: run no stage past the largest index taken.
          output_fmt: "NHWC" `(B, h_i, w_i, C_i)`, "NCHW" `(B, C_i, h_i, w_i)`, or "NLC"
            `(B, h_i w_i, C_i)` (row-major tokens), with `h_i = H / reduction_i`.
          intermediates_only: return the list alone.

        Returns:
          `(final_features, intermediates)`: the final features are `forward_features(x)`
          (when `stop_early` ends before the last stage, the last stage run's output, no
          norm); or just `intermediates`.
        """
        if output_fmt not in OUTPUT_FORMATS:
            raise ValueError(f"output_fmt must be one of {OUTPUT_FORMATS}; got {output_fmt!r}")
        last = len(self._feature_info) - 1
        take, max_index = feature_take_indices(last + 1, indices, name=type(self).__name__)
        stages = self._feature_stages()
        if stop_early:
            stages = stages[: max_index + 1]
        self._check_float_images(x)
        image_hw = x.shape[1:3]
        x = self._before_stages(x)
        intermediates = []
        for i, stage in enumerate(stages):
            x = remat.call(stage, x)
            if i in take:
                normalise = norm and (self.norm_every_intermediate or i == last)
                y = self._final_norm(x) if normalise else x
                intermediates.append(self._to_format(y, i, image_hw, output_fmt))
        if intermediates_only:
            return intermediates
        return (self._final_norm(x) if len(stages) - 1 == last else x), intermediates

    def _to_format(self, y: Array, index: int, image_hw: tuple[int, int], fmt: str) -> Array:
        if self.token_features:
            if fmt == "NLC":
                return y
            stride = self._feature_info[index].reduction
            y = y.reshape(y.shape[0], image_hw[0] // stride, image_hw[1] // stride, y.shape[-1])
        if fmt == "NLC":
            return y.reshape(y.shape[0], -1, y.shape[-1])
        return jnp.transpose(y, (0, 3, 1, 2)) if fmt == "NCHW" else y
