"""Carrying grid-tied weights to a new resolution, for fine-tuning at another image size.

Some models mix tokens with weights whose shapes follow the token grid (MLP-Mixer's
token MLP, sMLPNet's axial `mix_w`/`mix_h`, DynaMixer's `generate` layers, Sparse-MLP's
token MLPs, re-represent layers and token experts), so a checkpoint trained at 224 does
not fit a model built for 384. With `create_model(..., pretrained=...,
resample_to_grid=True)` (or `load_pretrained(..., resample_to_grid=True)`), and with
`config.init_resample_to_grid` for our own checkpoints, those weights are resampled first:

* MLP-Mixer: the paper's block-diagonal initialisation (Tolstikhin et al. 2021,
  appendix C). For a grid K times larger per side, the K x K sub-grids of patches are
  each mixed with the original token MLP: `fc1` becomes block-diagonal with K^2 copies,
  so the token MLP width grows K^2-fold. The model must be built with
  `tokens_mlp_dim = K^2 x` the checkpoint's; the new model then computes, per sub-grid,
  exactly what the old one computed on that crop.
* Axial mixing matrices (sMLPNet, DynaMixer): linear interpolation of the matrix as an
  image, scaled by n/m so that a sum over m inputs keeps the size of a sum over n.
* Token axes (Sparse-MLP, `interpolate_tokens`): an axis over the flattened square grid
  of patches is unflattened to its rows and columns and interpolated along both (the
  axial interpolation, along H and W); an axis that is merely as long as a multiple of
  the grid (Sparse-MLP's re-represented tokens S' = 2S) is interpolated as a line; each
  axis the layer sums over scales the result by old/new length, as above.
Interpolation is an initialisation for fine-tuning, not an exact map.

Everything is keyed on our own variable paths (`"blocks/0/token_mixing/fc1/kernel"`, the
'/'-joined nnx path, as in `nnx.state(model)` and in our checkpoints' trees) and works on
arrays in our layout. Each family's converter lists its grid-tied arrays in
`GRID_RESAMPLERS`: pairs of a regex on the path and a function `(array, target_shape) ->
array`. `resample_arrays` applies them to a flat `{path: array}` dict: official weights
reach it through the converter's rules (`load_pretrained`), our checkpoints directly
(`smlp_jax.train.init_from`), with no detour through the official layout. Families that
are resolution-free (ConvMixer, AS-MLP, Hire-MLP) need no table; families tied to the
grid in a way no resampler carries (RaftMLP, Vision Permutator) say why in
`GRID_RESAMPLING_UNAVAILABLE`, and asking to resample them is one clear error
(`grid_resamplers`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from types import ModuleType

import jax
import numpy as np

from smlp_jax.convert.assign import WeightsMismatchError

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


def interpolate_tokens(
    w: np.ndarray,
    shape: tuple[int, ...],
    *,
    grid: Collection[int] = (),
    line: Collection[int] = (),
    summed: Collection[int] = (),
) -> np.ndarray:
    """`w` with its token axes interpolated to `shape` (see the module docstring).

    `grid`: axes over a flattened square grid of patches (row-major), interpolated along
    the grid's rows and columns; `line`: token axes interpolated as one line; `summed`: the
    axes among those that the layer sums over (its inputs), each scaling the result by
    old/new length. Every other axis must keep its length.
    """
    shape = tuple(shape)
    if len(shape) != w.ndim:
        raise WeightsMismatchError(f"rank {w.ndim} in the checkpoint, {len(shape)} in the model")
    tied = set(grid) | set(line)
    fixed = [a for a in range(w.ndim) if a not in tied and w.shape[a] != shape[a]]
    if fixed:
        raise WeightsMismatchError(
            f"axis {fixed[0]} is not tied to the grid ({w.shape[fixed[0]]} in the checkpoint, "
            f"{shape[fixed[0]]} in the model)"
        )
    old, new = [], []
    for axis in range(w.ndim):
        if axis in grid:
            n, m = _side(w.shape[axis], "checkpoint"), _side(shape[axis], "model")
            old += [n, n]
            new += [m, m]
        else:
            old.append(w.shape[axis])
            new.append(shape[axis])
    out = _resize(w.reshape(old), new).reshape(shape)
    scale = math.prod(w.shape[a] / shape[a] for a in summed)
    return out if scale == 1 else out * scale


def token_interpolation(
    *, grid: Collection[int] = (), line: Collection[int] = (), summed: Collection[int] = ()
) -> Resampler:
    """A resampler for `GRID_RESAMPLERS`: `interpolate_tokens` with these axes."""

    def resample(w: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        return interpolate_tokens(w, shape, grid=grid, line=line, summed=summed)

    return resample


def grid_resamplers(module: ModuleType, model_name: str) -> Sequence[tuple[str, Resampler]]:
    """A family converter's `GRID_RESAMPLERS` (none for a resolution-free family).

    Raises `WeightsMismatchError` in one line when the family is tied to the grid in a way
    no resampler carries (`GRID_RESAMPLING_UNAVAILABLE`, the reason).
    """
    reason = getattr(module, "GRID_RESAMPLING_UNAVAILABLE", None)
    if reason:
        raise WeightsMismatchError(f"{model_name}: cannot resample to another grid: {reason}")
    return getattr(module, "GRID_RESAMPLERS", ())


def resample_arrays(
    model_name: str,
    arrays: Mapping[str, np.ndarray],
    shapes: Mapping[str, Sequence[int]],
    resamplers: Sequence[tuple[str, Resampler]],
    *,
    names: Mapping[str, str] | None = None,
) -> dict[str, np.ndarray]:
    """`arrays` (our path -> array, our layout) with every grid-tied array whose shape
    differs from the model's (`shapes`: path -> shape) resampled to it, in float32.

    An array is resampled when the first pattern of `resamplers` that searches its path
    matches; arrays that already fit, paths the model lacks and paths no pattern names are
    returned unchanged (the same objects), so the usual key and shape checks still catch
    everything else. A failure is one `WeightsMismatchError` line naming the path (and,
    from `names`, the key it came from) and both shapes.
    """
    patterns = [(re.compile(p), fn) for p, fn in resamplers]
    out = dict(arrays)
    for path, array in arrays.items():
        if path not in shapes:
            continue
        old, target = tuple(np.shape(array)), tuple(shapes[path])
        if old == target:
            continue
        fn = next((fn for p, fn in patterns if p.search(path)), None)
        if fn is None:
            continue
        what = repr(path) + (f" ({names[path]!r})" if names and path in names else "")
        try:
            new = fn(np.asarray(array, dtype=np.float32), target)
        except WeightsMismatchError as e:
            raise WeightsMismatchError(
                f"{model_name}: cannot resample {what} from {old} to {target}: {e}"
            ) from e
        if tuple(new.shape) != target:
            raise WeightsMismatchError(
                f"{model_name}: resampling {what} from {old} gave {tuple(new.shape)}, the model "
                f"needs {target}"
            )
        out[path] = new
    return out
