"""Weights out: our arrays in the official layout of a model's family.

The inverse of the import: the same converter rules (official key -> our variable,
`Layout`) read backwards, so a state dict written here is one `load_pretrained` (and the
official code) reads with every key and shape checked.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from flax import nnx

from smlp_jax.convert.assign import Rules, WeightsMismatchError


def variable_paths(model: nnx.Module) -> dict[int, str]:
    """id(variable) -> its path in `model`, `"stages/0/blocks/1/mix_w/kernel"` (the path
    of the same array in `nnx.state(model)` and in our checkpoints' trees)."""
    return {
        id(node): "/".join(str(part) for part in path)
        for path, node in nnx.iter_graph(model)
        if isinstance(node, nnx.Variable)
    }


def flatten_arrays(tree: Mapping[str, Any], prefix: str = "") -> dict[str, np.ndarray]:
    """A nested dict of arrays (a checkpoint's `params`) -> `{"a/b/c": array}`."""
    flat = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_arrays(value, name + "/"))
        else:
            flat[name] = np.asarray(value)
    return flat


def official_arrays(
    model: nnx.Module,
    rules: Rules,
    arrays: Mapping[str, Any] | None = None,
    *,
    model_name: str = "model",
) -> dict[str, np.ndarray]:
    """Official key -> array in the official layout, for every key of `rules`.

    The arrays are `model`'s own values, or `arrays` (our path name -> array, as
    `flatten_arrays` gives them) when given: e.g. a checkpoint's weights at their saved
    shapes, which may differ from `model`'s (another image size). Layouts only transpose
    and reshape, so they carry any shape.
    """
    paths = variable_paths(model)
    out, missing = {}, []
    for key, (variable, layout) in rules.items():
        if arrays is None:
            value = variable[...]
        else:
            value = arrays.get(paths[id(variable)])
            if value is None:
                missing.append(paths[id(variable)])
                continue
        out[key] = layout.to_official(np.asarray(value))
    if missing:
        raise WeightsMismatchError(
            f"{model_name}: {len(missing)} weight(s) of the model are not in the given arrays "
            f"(e.g. {', '.join(missing[:3])}); were they saved from another model?"
        )
    return out
