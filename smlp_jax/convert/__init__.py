"""Weight import from official releases.

One converter per family, `smlp_jax.convert.<family>` (`converter(family)`, from the table
`converters.CONVERTERS`), with `official_rules(model)`: official state-dict key -> (nnx
variable, `Layout`). A family with
several official layouts (Mixer: timm and vit_jax) also has `rules_for_weights(model,
weights)`, which picks by key names; `rules_for` asks whichever the family has.
`load_pretrained` reads the file safely (`checkpoint_io`) and assigns it with full key and
shape checks (`assign`). With `resample_to_grid=True` the grid-tied arrays are first
carried to the model's grid by our own variable paths (`resample`: each official key goes
to its variable's path through the rules, into our layout and back).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from flax import nnx

from smlp_jax.convert.assign import Rules, WeightsMismatchError, assign_weights, check_fit
from smlp_jax.convert.checkpoint_io import WeightsFileError, read_weights
from smlp_jax.convert.converters import converter
from smlp_jax.convert.export import variable_paths
from smlp_jax.convert.resample import Resampler, grid_resamplers, resample_arrays
from smlp_jax.models import family_of
from smlp_jax.models.npz import declared_arrays

__all__ = [
    "WeightsFileError",
    "WeightsMismatchError",
    "converter",
    "load_pretrained",
    "read_weights",
    "rules_for",
]


def rules_for(model: nnx.Module, weights: Mapping[str, Any], *, family: str | None = None) -> Rules:
    """Official key -> (our variable, `Layout`) for `model`, in the layout `weights` is in.

    `family` names the converter; inferred from the model's class when omitted.
    """
    module = converter(family or family_of(model))
    pick = getattr(module, "rules_for_weights", None)
    return pick(model, weights) if pick else module.official_rules(model)


def load_pretrained(
    model: nnx.Module,
    source: str | os.PathLike | Mapping[str, Any],
    *,
    family: str | None = None,
    model_name: str | None = None,
    checkpoint_key: str | None = None,
    resample_to_grid: bool = False,
) -> nnx.Module:
    """Loads official weights into `model` in place and returns it.

    Args:
      model: a model built by `smlp_jax.create_model` (its hyperparameters must match
        the checkpoint's).
      source: a path (`.pth`, `.pth.tar`, `.pt`, `.npz`, `.safetensors`) or a mapping
        from official key names to arrays.
      family: the converter to use; inferred from the model's class when omitted.
      model_name: used in error messages.
      checkpoint_key: the nested entry of a training checkpoint to read (e.g.
        `'model_ema'`); by default `'model'` when present.
      resample_to_grid: for models whose token mixing is tied to the grid (Mixer,
        sMLPNet, DynaMixer), carry the checkpoint's grid-tied weights to the model's
        grid (fine-tuning at a new resolution; see `smlp_jax.convert.resample`).
        Without it, weights for another grid are refused.
    """
    family = family or family_of(model)
    module = converter(family)
    ignore = getattr(module, "IGNORED_KEYS", (r"(^|\.)num_batches_tracked$",))
    if _is_npz_file(source) and not resample_to_grid:
        # The names and shapes its headers declare, checked against the model before any
        # array is read (a wrong variant's 100 MB file is one line, not a read).
        declared = read_weights(
            declared_arrays(os.fspath(source), WeightsFileError), checkpoint_key=checkpoint_key
        )
        rules = rules_for(model, declared, family=family)
        check_fit(model_name or family, rules, declared, ignore=ignore)
    weights = read_weights(source, checkpoint_key=checkpoint_key)
    rules = rules_for(model, weights, family=family)
    if resample_to_grid:
        resamplers = grid_resamplers(module, model_name or family)
        weights = resample_official(model_name or family, model, rules, weights, resamplers)
    assign_weights(model_name or family, rules, weights, ignore=ignore)
    return model


def _is_npz_file(source: Any) -> bool:
    """`source` is the path of an existing `.npz` (its headers can be read alone)."""
    return isinstance(source, str | os.PathLike) and (
        os.fspath(source).lower().endswith(".npz") and os.path.isfile(source)
    )


def resample_official(
    model_name: str,
    model: nnx.Module,
    rules: Rules,
    weights: Mapping[str, Any],
    resamplers: Sequence[tuple[str, Resampler]],
) -> dict[str, Any]:
    """Official `weights` with their grid-tied arrays resampled to `model`'s grid.

    Each official key of `rules` goes to its variable's path in `model`, its array into
    our layout; `resample_arrays` resamples by path, and what it resampled goes back to
    the official layout under the same key. Everything else is returned as given, for
    `assign_weights` to check (an array whose rank does not fit its layout is left alone).
    """
    paths = variable_paths(model)
    ours, keys, shapes = {}, {}, {}
    for key, (variable, layout) in rules.items():
        if key not in weights:
            continue
        path = paths[id(variable)]
        shapes[path] = tuple(variable.shape)
        array = np.asarray(weights[key])
        if array.ndim != len(layout.official_shape(variable.shape)):
            continue
        try:
            ours[path] = layout.to_ours(array)
        except ValueError:  # a squeezed 1x1 that is not 1x1: a plain shape mismatch
            continue
        keys[path] = key
    resampled = resample_arrays(model_name, ours, shapes, resamplers, names=keys)
    out = dict(weights)
    for path, array in resampled.items():
        if array is not ours[path]:
            key = keys[path]
            out[key] = rules[key][1].to_official(array)
    return out
