"""Carrying grid-tied weights to a new resolution, for fine-tuning at another image size.

Some models mix tokens with weights whose shapes follow the token grid (MLP-Mixer's
token MLP, sMLPNet's axial `mix_w`/`mix_h`, DynaMixer's `generate` layers), so a
checkpoint trained at 224 does not fit a model built for 384. With
`create_model(..., pretrained=..., resample_to_grid=True)` (or
`load_pretrained(..., resample_to_grid=True)`) those weights are resampled first:

* MLP-Mixer: the paper's block-diagonal initialisation (Tolstikhin et al. 2021,
  appendix C). For a grid K times larger per side, the K x K sub-grids of patches are
  each mixed with the original token MLP: `fc1` becomes block-diagonal with K^2 copies,
  so the token MLP width grows K^2-fold. The model must be built with
  `tokens_mlp_dim = K^2 x` the checkpoint's; the new model then computes, per sub-grid,
  exactly what the old one computed on that crop.
* Axial mixing matrices (sMLPNet, DynaMixer): linear interpolation of the matrix as an
  image, scaled by n/m so that a sum over m inputs keeps the size of a sum over n.
  This is an initialisation for fine-tuning, not an exact map.

Each family's converter lists its grid-tied keys in `GRID_RESAMPLERS`: pairs of a regex
on the official key and a function `(our_array, our_target_shape) -> our_array`.
Families without the table (ConvMixer) are resolution-free and need nothing.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence

import jax
import numpy as np

from smlp_jax.convert.assign import Rules, WeightsMismatchError

Resampler = Callable[[np.ndarray, tuple[int, ...]], np.ndarray]


def _side(num_tokens: int, what: str) -> int:
    side = math.isqrt(num_tokens)
    if side * side != num_tokens:
        raise WeightsMismatchError(f"{what}: {num_tokens} tokens do not form a square grid")
    return side


def _block_layout(old_tokens: int, new_tokens: int) -> tuple[int, np.ndarray, np.ndarray]:
    """For a grid G -> K G: K^2, and per new token (row-major) its sub-grid and its index
    inside that sub-grid."""
    g, g_new = _side(old_tokens, "checkpoint"), _side(new_tokens, "model")
    if g_new % g:
        raise WeightsMismatchError(
            f"MLP-Mixer's block-diagonal resampling needs the new grid to be a whole multiple "
            f"of the checkpoint's ({g}x{g} patches); got {g_new}x{g_new}. Pick an image_size "
            f"that is a multiple of the checkpoint's."
        )
    k = g_new // g
    rows, cols = np.divmod(np.arange(new_tokens), g_new)
    block = (rows // g) * k + cols // g
    local = (rows % g) * g + cols % g
    return k * k, block, local


def _check_width(old_hidden: int, new_hidden: int, k2: int) -> None:
    if new_hidden != k2 * old_hidden:
        raise WeightsMismatchError(
            f"MLP-Mixer's block-diagonal resampling to a grid with {k2}x the patches needs "
            f"tokens_mlp_dim={k2 * old_hidden} ({k2} x the checkpoint's {old_hidden}); the "
            f"model has {new_hidden}. Create it with tokens_mlp_dim={k2 * old_hidden}."
        )


def mixer_fc1_kernel(w: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Token MLP `fc1` kernel `(S, D_S) -> (K^2 S, K^2 D_S)`, block-diagonal."""
    k2, block, local = _block_layout(w.shape[0], shape[0])
    _check_width(w.shape[1], shape[1], k2)
    out = np.zeros((shape[0], k2, w.shape[1]), w.dtype)
    out[np.arange(shape[0]), block] = w[local]
    return out.reshape(shape)


def mixer_fc1_bias(b: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Token MLP `fc1` bias `(D_S,) -> (K^2 D_S,)`: one copy per sub-grid."""
    if shape[0] % b.shape[0]:
        raise WeightsMismatchError(
            f"MLP-Mixer's token MLP width {shape[0]} is not a multiple of the checkpoint's "
            f"{b.shape[0]}; create the model with tokens_mlp_dim = K^2 x {b.shape[0]}."
        )
    return np.tile(b, shape[0] // b.shape[0])


def mixer_fc2_kernel(w: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Token MLP `fc2` kernel `(D_S, S) -> (K^2 D_S, K^2 S)`, block-diagonal."""
    k2, block, local = _block_layout(w.shape[1], shape[1])
    _check_width(w.shape[0], shape[0], k2)
    out = np.zeros((k2, w.shape[0], shape[1]), w.dtype)
    out[block, :, np.arange(shape[1])] = w[:, local].T
    return out.reshape(shape)


def mixer_fc2_bias(b: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Token MLP `fc2` bias `(S,) -> (K^2 S,)`: each token takes its sub-grid twin's."""
    _, _, local = _block_layout(b.shape[0], shape[0])
    return b[local]


def _resize(x: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    return np.asarray(jax.image.resize(x, tuple(shape), method="linear"), dtype=x.dtype)


def axial_kernel(w: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """An `(n, n)` axial mixing kernel `(in, out)` -> `(m, m)`, interpolated and x n/m."""
    return _resize(w, shape) * (w.shape[0] / shape[0])


def axial_bias(b: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """An axial mixing bias `(n,) -> (m,)`, interpolated."""
    return _resize(b, shape)


def dynamixer_generate_kernel(w: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """DynaMixer `generate` kernel `(L r, L L) -> (M r, M M)`.

    Viewed as `(position, reduced, in_position, out_position)`, the three position axes
    are interpolated; x L/M for the longer sum over positions.
    """
    n, m = _side(w.shape[1], "checkpoint"), _side(shape[1], "model")
    r = w.shape[0] // n
    if shape[0] != m * r:
        raise WeightsMismatchError(
            f"DynaMixer: the model's generate kernel {shape} does not match reduced_dim={r}"
        )
    grid = _resize(w.reshape(n, r, n, n), (m, r, m, m)) * (n / m)
    return grid.reshape(shape)


def dynamixer_generate_bias(b: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """DynaMixer `generate` bias `(L L,) -> (M M,)`, interpolated as an L x L image."""
    n, m = _side(b.shape[0], "checkpoint"), _side(shape[0], "model")
    return _resize(b.reshape(n, n), (m, m)).reshape(shape)


def resample_weights(
    model_name: str,
    rules: Rules,
    weights: Mapping[str, np.ndarray],
    resamplers: Sequence[tuple[str, Resampler]],
) -> dict[str, np.ndarray]:
    """`weights` with every grid-tied array whose shape differs from the model's resampled.

    Arrays that already fit, and keys no resampler names, are returned unchanged, so the
    usual key and shape checks of `assign_weights` still catch everything else.
    """
    patterns = [(re.compile(p), fn) for p, fn in resamplers]
    out = dict(weights)
    for key, array in weights.items():
        if key not in rules:
            continue
        variable, layout = rules[key]
        if tuple(np.shape(array)) == layout.official_shape(variable.shape):
            continue
        fn = next((fn for p, fn in patterns if p.search(key)), None)
        if fn is None:
            continue
        ours = layout.to_ours(np.asarray(array, dtype=np.float32))
        try:
            new = fn(ours, tuple(variable.shape))
        except WeightsMismatchError as e:
            raise WeightsMismatchError(f"{model_name}: cannot resample {key!r}: {e}") from e
        if new.shape != tuple(variable.shape):
            raise WeightsMismatchError(
                f"{model_name}: resampling {key!r} gave {new.shape}, the model needs "
                f"{tuple(variable.shape)}"
            )
        out[key] = layout.to_official(new)
    return out
