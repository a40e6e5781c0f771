"""Weights out: our arrays in the official layout of a model's family.

The inverse of the import: the same converter rules (official key -> our variable,
`Layout`) read backwards, so a state dict written here is one `load_pretrained` (and the
official code, `load_state_dict(strict=True)`) reads with every key and shape checked.

    from smlp_jax.convert.export import save_weights
    save_weights(model, "smlp_s.safetensors")           # SPACH's keys and shapes
    save_weights(mixer, "Mixer-B_16.npz", "vit_jax")    # the vit_jax Flax tree
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np
from flax import nnx

from smlp_jax.convert.assign import COPY, Rules, WeightsMismatchError
from smlp_jax.convert.converters import converter
from smlp_jax.models import family_of


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


def variable_rules(model: nnx.Module) -> Rules:
    """Our own layout as rules: variable path -> (variable, COPY) for every parameter and
    BatchNorm statistic (not the rng state, nor per-forward outputs such as Sparse-MLP's
    routing loss). With `assign_weights` it loads `state_arrays`'s output with every key
    and shape checked, for families without an official layout."""
    return {
        "/".join(str(part) for part in path): (node, COPY)
        for path, node in nnx.iter_graph(model)
        if isinstance(node, (nnx.Param, nnx.BatchStat))
    }


def state_arrays(model: nnx.Module) -> dict[str, np.ndarray]:
    """`model`'s parameters and statistics keyed by variable path (our layout)."""
    return {key: np.asarray(variable[...]) for key, (variable, _) in variable_rules(model).items()}


LAYOUTS = ("official", "vit_jax", "smlp_jax")


def export_rules(
    model: nnx.Module, layout: str = "official", *, family: str | None = None
) -> Rules:
    """The rules of `layout`: `"official"` (the family's PyTorch state dict, timm's for
    Mixer), `"vit_jax"` (Mixer's Flax `.npz` tree) or `"smlp_jax"` (our variable paths)."""
    family = family or family_of(model)
    if layout == "smlp_jax":
        return variable_rules(model)
    module = converter(family)
    if layout == "official":
        return module.official_rules(model)
    if layout == "vit_jax" and hasattr(module, "vit_jax_rules"):
        return module.vit_jax_rules(model)
    if layout == "vit_jax":
        raise WeightsMismatchError(f"the vit_jax layout is MLP-Mixer's; {family} has none.")
    raise WeightsMismatchError(f"layout={layout!r}; use one of {', '.join(LAYOUTS)}.")


def export_state_dict(
    model: nnx.Module, layout: str = "official", *, family: str | None = None
) -> dict[str, np.ndarray]:
    """`model`'s weights as a state dict in `layout` (see `export_rules`).

    The official layout also gets every BatchNorm's `num_batches_tracked` (0), a buffer
    PyTorch's `load_state_dict(strict=True)` asks for and our models do not keep.
    """
    rules = export_rules(model, layout, family=family)
    state = official_arrays(model, rules)
    if layout == "official":
        for key in list(state):
            if key.endswith(".running_var"):
                tracked = key.removesuffix("running_var") + "num_batches_tracked"
                state[tracked] = np.zeros((), np.int64)
    # (np.ascontiguousarray would turn a 0-d counter into shape (1,))
    return {k: v if v.flags.c_contiguous else np.ascontiguousarray(v) for k, v in state.items()}


def write_state_dict(state: dict[str, np.ndarray], path: str | os.PathLike) -> None:
    """Writes a flat state dict as `.safetensors`, `.npz`, or `.pth`/`.pt` (a dict of
    tensors, `torch.save`; needs PyTorch)."""
    path = os.fspath(path)
    lower = path.lower()
    if lower.endswith(".safetensors"):
        from safetensors.numpy import save_file  # lazy: optional, for .safetensors only

        save_file(state, path)
    elif lower.endswith(".npz"):
        np.savez(path, **state)
    elif lower.endswith((".pth", ".pt")):
        try:
            import torch  # lazy: heavy and optional, needed only for PyTorch files
        except ImportError as err:
            raise WeightsMismatchError(
                f"writing {path} needs PyTorch (pip install torch); .safetensors and .npz "
                "need no torch, and timm and PyTorch read .safetensors."
            ) from err
        torch.save({k: torch.from_numpy(np.array(v)) for k, v in state.items()}, path)
    else:
        raise WeightsMismatchError(
            f"do not know how to write {path}: use .safetensors, .npz, .pth or .pt."
        )


def save_weights(
    model: nnx.Module,
    path: str | os.PathLike,
    layout: str = "official",
    *,
    family: str | None = None,
) -> list[str]:
    """Writes `model`'s weights to `path` in `layout` (file type by extension, see
    `write_state_dict`) and returns the keys written."""
    state = export_state_dict(model, layout, family=family)
    write_state_dict(state, path)
    return sorted(state)
