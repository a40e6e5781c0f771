"""Weight import from official releases.

One converter per family, `smlp_jax.convert.<family>` (`converter(family)`), with
`official_rules(model)`: official state-dict key -> (nnx variable, `Layout`). A family with
several official layouts (Mixer: timm and vit_jax) also has `rules_for_weights(model,
weights)`, which picks by key names; `rules_for` asks whichever the family has.
`load_pretrained` reads the file safely (`checkpoint_io`) and assigns it with full key and
shape checks (`assign`).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from types import ModuleType
from typing import Any

from flax import nnx

from smlp_jax.convert.assign import Rules, WeightsMismatchError, assign_weights
from smlp_jax.convert.checkpoint_io import WeightsFileError, read_weights
from smlp_jax.convert.resample import resample_weights
from smlp_jax.models import family_of

__all__ = [
    "WeightsFileError",
    "WeightsMismatchError",
    "converter",
    "load_pretrained",
    "read_weights",
    "rules_for",
]


def converter(family: str) -> ModuleType:
    """The converter module of a model family: `smlp_jax.convert.<family>`."""
    return importlib.import_module(f"smlp_jax.convert.{family}")


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
    weights = read_weights(source, checkpoint_key=checkpoint_key)
    ignore = getattr(module, "IGNORED_KEYS", (r"(^|\.)num_batches_tracked$",))
    rules = rules_for(model, weights, family=family)
    if resample_to_grid:
        resamplers = getattr(module, "GRID_RESAMPLERS", ())
        weights = resample_weights(model_name or family, rules, weights, resamplers)
    assign_weights(model_name or family, rules, weights, ignore=ignore)
    return model
