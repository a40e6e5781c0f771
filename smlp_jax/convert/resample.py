"""Carrying grid-tied weights to a new resolution, for fine-tuning at another image size.

Some models mix tokens with weights whose shapes follow the token grid (MLP-Mixer's
token MLP, sMLPNet's axial `mix_w`/`mix_h`, DynaMixer's `generate` layers, Sparse-MLP's
token MLPs, re-represent layers and token experts), so a checkpoint trained at 224 does
not fit a model built for 384. With `create_model(..., pretrained=...,
resample_to_grid=True)` (or `load_pretrained(..., resample_to_grid=True)`), and with
`config.init_resample_to_grid` for our own checkpoints, those weights are resampled first.

This module keeps the generic resamplers, which know no family's layers:

* Axial mixing matrices (`axial_kernel`, `axial_bias`; sMLPNet's `mix_h`/`mix_w`):
  linear interpolation of the matrix as an image, scaled by n/m so that a sum over m
  inputs keeps the size of a sum over n.
* Token axes (`interpolate_tokens`, `token_interpolation`; Sparse-MLP's): an axis over the
  flattened square grid of patches is unflattened to its rows and columns and
  interpolated along both (the axial interpolation, along H and W); an axis that is
  merely as long as a multiple of the grid (Sparse-MLP's re-represented tokens S' = 2S)
  is interpolated as a line; each axis the layer sums over scales the result by old/new
  length, as above.
* `square_side` and `resize`, the pieces a family's own resampler is made of.

A resampler only one family needs lives in that family's converter, beside its table:
MLP-Mixer's block-diagonal initialisation (the paper's, Tolstikhin et al. 2021, appendix
C) in `smlp_jax.convert.mixer`, DynaMixer's `generate` layers in
`smlp_jax.convert.dynamixer`. Interpolation is an initialisation for fine-tuning, not an
exact map.

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


def square_side(num_tokens: int, what: str) -> int:
    """The side of the square grid of `num_tokens` patches (`what`: whose, for the error)."""
    side = math.isqrt(num_tokens)
    if side * side != num_tokens:
        raise WeightsMismatchError(f"{what}: {num_tokens} tokens do not form a square grid")
    return side


def resize(x: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """`x` linearly interpolated to `shape` along every axis, in its own dtype."""
    return np.asarray(jax.image.resize(x, tuple(shape), method="linear"), dtype=x.dtype)


def axial_kernel(w: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """An `(n, n)` axial mixing kernel `(in, out)` -> `(m, m)`, interpolated and x n/m."""
    return resize(w, shape) * (w.shape[0] / shape[0])


def axial_bias(b: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """An axial mixing bias `(n,) -> (m,)`, interpolated."""
    return resize(b, shape)


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
            n, m = square_side(w.shape[axis], "checkpoint"), square_side(shape[axis], "model")
            old += [n, n]
            new += [m, m]
        else:
            old.append(w.shape[axis])
            new.append(shape[axis])
    out = resize(w.reshape(old), new).reshape(shape)
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
