"""`config.init_from`: start from our own checkpoint or from official weights.

Either source fills the model's parameters and BatchNorm statistics (and the EMA copy);
the optimiser starts fresh, as for fine-tuning. When the classifier's class count differs
(fine-tuning on another dataset) the head keeps its fresh initialisation and a line says
so; every other shape must match. `config.init_head` decides a head whose shape fits:
"keep" (the default) loads it, "fresh" leaves the model's own head initialisation in
place (vit_jax and RaftMLP's loop restart the classifier on every transfer), with a line
saying so.

- our checkpoint: a workdir, its `checkpoints/` folder, or one `checkpoints/<step>` folder,
  read by `load_for_init` (the train state only, any sub-tree of it). With
  `config.init_resample_to_grid`, a checkpoint trained at another image size: its weights
  are read at their saved shapes (the checkpoint's own metadata), the grid-tied ones are
  resampled by their variable paths (the family converter's `GRID_RESAMPLERS`, see
  `smlp_jax.convert.resample`; no official layout involved, so families without one,
  Sparse-MLP, resample too) and everything else must fit as saved;
- official weights: a file (`.pth`, `.npz`, `.safetensors`) read by `smlp_jax.convert`,
  resampled the same way by path with `config.init_resample_to_grid`.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from flax import nnx

from smlp_jax.convert import (
    WeightsMismatchError,
    converter,
    load_pretrained,
    read_weights,
    rules_for,
)
from smlp_jax.convert.export import flatten_arrays
from smlp_jax.convert.resample import grid_resamplers, resample_arrays
from smlp_jax.models.registry import get_entry
from smlp_jax.train.checkpoint import (
    CHECKPOINTS_SUBDIR,
    CheckpointError,
    CheckpointFallbackWarning,
    abstract_key_data,
    by_path,
    data_to_keys,
    describe_mismatches,
    first_line,
    newest_restorable,
    saved_shapes,
    shape_mismatches,
)
from smlp_jax.train.errors import ConfigError
from smlp_jax.train.metrics import console
from smlp_jax.train.sharding import path_name
from smlp_jax.train.state import build_model, head_name, split

INIT_HEADS = ("keep", "fresh")


def is_our_checkpoint(path: str) -> bool:
    return Path(path).is_dir()


def check_init_head(config: Any) -> None:
    """`config.init_head` must be one of `INIT_HEADS` (a one-line ConfigError)."""
    value = config.get("init_head", "keep")
    if value not in INIT_HEADS:
        raise ConfigError(
            f'config.init_head={value!r}; use one of {", ".join(INIT_HEADS)} ("fresh": the '
            "classifier starts from the model's own initialisation, not init_from's)."
        )


def _fresh_head_line(path: str, head: str, class_count_differs: bool) -> None:
    why = "class count differs" if class_count_differs else "config.init_head='fresh'"
    console(f"init_from {path}: {why}; the '{head}' layer starts fresh.")


def load_model_weights(config: Any, state: dict, abstract: dict, num_classes: int) -> dict:
    """Returns `state` with params/model_state (and EMA) taken from `config.init_from`."""
    path = config.init_from
    fresh_head = config.get("init_head", "keep") == "fresh"  # checked by the trainer's build
    if is_our_checkpoint(path) and config.init_resample_to_grid:
        params, model_state = _from_checkpoint_resampled(
            config, path, abstract, state["params"], fresh_head
        )
    elif is_our_checkpoint(path):
        head = head_name(config.model)
        params, model_state = _from_checkpoint(path, abstract, state["params"], head, fresh_head)
    else:
        params, model_state = _from_official(config, path, num_classes, abstract, path, fresh_head)
    state = {**state, "params": params, "model_state": model_state}
    if "ema" in state:
        state["ema"] = {"params": params, "model_state": model_state}
    return state


# --- our checkpoints ------------------------------------------------------------------------


def checkpoint_steps(path: str | os.PathLike) -> tuple[Path, list[int]]:
    """(the folder of step directories, their steps) of `path`, or `(path, [])` when `path`
    is one step directory; a `CheckpointError` when it does not exist or holds no checkpoint.
    Looks at names only: cheap, so a caller can check before building a model."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"init_from={str(path)!r} does not exist.")
    if (path / "state").is_dir():
        return path, []
    root = path / CHECKPOINTS_SUBDIR if (path / CHECKPOINTS_SUBDIR).is_dir() else path
    steps = [int(p.name) for p in root.iterdir() if p.name.isdigit() and p.is_dir()]
    if not steps:
        raise CheckpointError(
            f"init_from={str(path)!r} holds no checkpoint: expected a step directory with a "
            f"'state' folder, or a directory of step directories (like WORKDIR/checkpoints)."
        )
    return root, steps


def load_for_init(
    path: str | os.PathLike,
    abstract_state: Any | Callable[[Any], Any],
    *,
    partial: bool = False,
) -> Any:
    """Loads the train state (only) from one of our checkpoints.

    `path` is a step directory (`.../checkpoints/<step>`), a `checkpoints` directory, or a
    workdir (then its newest good step is used; damaged steps are skipped with a warning
    but left in place, since the run is someone else's; a step the OS would not let us read,
    e.g. permission denied, is a `CheckpointError`, not skipped). With `partial=True`,
    `abstract_state` may name only a part of the saved tree (e.g. without the optimiser
    state, or without the classifier head when the class count changes).
    `abstract_state` may also be a function of the saved tree's metadata (Orbax
    `ArrayMetadata` leaves) returning the target: to read arrays at their saved shapes.
    """
    path = Path(path)
    root, steps = checkpoint_steps(path)
    if not steps:
        return _load_step_dir(path, abstract_state, partial)
    step, state, failed = newest_restorable(
        steps,
        lambda step: _load_step_dir(root / str(step), abstract_state, partial),
        step_dir=lambda step: root / str(step),
    )
    if step is None:
        raise CheckpointError("; ".join(str(e) for _, e in failed)) from failed[0][1]
    for bad_step, err in failed:
        warnings.warn(
            f"init_from: skipped checkpoint step {bad_step} in {root} "
            f"({first_line(err)}); using step {step}.",
            CheckpointFallbackWarning,
            stacklevel=2,
        )
    return state


def _orbax_shapes(state_dir: Path, handler: Any) -> tuple[Any, dict[str, tuple[int, ...]]]:
    """Orbax's metadata tree of a saved state (every array opened) and its shapes by name."""
    saved = handler.metadata(state_dir)
    saved = getattr(saved, "tree", saved)
    return saved, {name: tuple(leaf.shape) for name, leaf in by_path(saved).items()}


def _load_step_dir(step_dir: Path, abstract_state: Any, partial: bool) -> Any:
    try:
        handler = ocp.PyTreeCheckpointHandler()
        state_dir = (step_dir / "state").absolute()
        # Shapes are compared before the restore: one that fails on a shape leaves Orbax's
        # pending reads behind, and the message names the arrays. From the index files
        # where they tell (checkpoint.saved_shapes, ~50 ms); from Orbax's metadata, which
        # opens every array (1.2-1.5 s for sMLPNet-T's train state), to read arrays at
        # their saved shapes and dtypes, where an array was saved in pieces, and to confirm
        # a mismatch before saying so.
        shapes = None if callable(abstract_state) else saved_shapes(state_dir)
        from_index = shapes is not None
        if not from_index:
            saved, shapes = _orbax_shapes(state_dir, handler)
            if callable(abstract_state):
                abstract_state = abstract_state(saved)
        target = abstract_key_data(abstract_state)
        mismatches = shape_mismatches(shapes, target)
        if mismatches and from_index:
            mismatches = shape_mismatches(_orbax_shapes(state_dir, handler)[1], target)
        if mismatches:
            raise _ShapeMismatch(describe_mismatches(mismatches, shown=3))
        with ocp.Checkpointer(handler) as checkpointer:
            restored = checkpointer.restore(
                state_dir,
                args=ocp.args.PyTreeRestore(
                    item=target,
                    restore_args=ocp.checkpoint_utils.construct_restore_args(target),
                    partial_restore=partial,
                ),
            )
        return data_to_keys(restored, abstract_state)
    except _ShapeMismatch as err:
        raise CheckpointError(
            f"Could not load init_from checkpoint {step_dir}: {err}. Check that "
            "config.model and config.model_kwargs are the checkpoint's; to fine-tune it at "
            "another image size, set config.init_resample_to_grid=True (resamples the "
            "grid-tied weights)."
        ) from None
    except Exception as err:  # damage or a mismatch surfaces as many error types
        raise CheckpointError(
            f"Could not load init_from checkpoint {step_dir}: {first_line(err)}. "
            "Check that it was written for this model and is not damaged."
        ) from err


class _ShapeMismatch(ValueError):
    pass


def _from_checkpoint(
    path: str, abstract: dict, fresh_params: dict, head: str, fresh_head: bool = False
) -> tuple[dict, dict]:
    target = {"params": abstract["params"], "model_state": abstract["model_state"]}
    headless = {**target, "params": {k: v for k, v in target["params"].items() if k != head}}
    if fresh_head and head in abstract["params"]:  # config.init_head="fresh"
        loaded = load_for_init(path, headless, partial=True)
        _fresh_head_line(path, head, class_count_differs=False)
        return {**loaded["params"], head: fresh_params[head]}, loaded["model_state"]
    try:
        loaded = load_for_init(path, target, partial=True)
        return loaded["params"], loaded["model_state"]
    except CheckpointError as err:
        if head not in abstract["params"]:
            raise
        full_error = err
    # Retry without the head: a checkpoint trained for another class count.
    try:
        loaded = load_for_init(path, headless, partial=True)
    except CheckpointError:
        raise full_error from None
    _fresh_head_line(path, head, class_count_differs=True)
    return {**loaded["params"], head: fresh_params[head]}, loaded["model_state"]


def _saved_weights_target(saved: dict) -> dict:
    """The restore target for a checkpoint's weights at their saved shapes (replicated)."""
    missing = [k for k in ("params", "model_state") if k not in saved]
    if missing:
        raise ValueError(f"the checkpoint holds no {' or '.join(missing)}")
    as_struct = lambda leaf: jax.ShapeDtypeStruct(tuple(leaf.shape), leaf.dtype)
    return {k: jax.tree.map(as_struct, saved[k]) for k in ("params", "model_state")}


def _from_checkpoint_resampled(
    config: Any, path: str, abstract: dict, fresh_params: dict, fresh_head: bool = False
) -> tuple[dict, dict]:
    """Our checkpoint's weights at their saved shapes, the grid-tied ones resampled to this
    model by variable path (`config.init_resample_to_grid`); a classifier for another
    class count starts fresh; every other array must have this model's shape."""
    try:
        module = converter(get_entry(config.model).family)
        resamplers = grid_resamplers(module, config.model)
    except WeightsMismatchError as err:
        raise CheckpointError(f"config.init_resample_to_grid: {err}") from None
    loaded = load_for_init(path, _saved_weights_target, partial=True)
    head = head_name(config.model)
    trees, missing, mismatched, head_differs = {}, [], [], False
    for part in ("params", "model_state"):
        saved = flatten_arrays(loaded[part])
        targets = by_path(abstract[part])
        shapes = {name: tuple(leaf.shape) for name, leaf in targets.items()}
        try:
            arrays = resample_arrays(config.model, saved, shapes, resamplers)
        except WeightsMismatchError as err:
            raise CheckpointError(f"init_from {path}: {err}") from None
        for name, leaf in targets.items():
            if name not in arrays:
                missing.append(name)
            elif tuple(arrays[name].shape) != tuple(leaf.shape):
                if part == "params" and name.split("/")[0] == head:
                    head_differs = True
                else:
                    mismatched.append(
                        f"'{name}' is {tuple(arrays[name].shape)} in the checkpoint, "
                        f"{tuple(leaf.shape)} here"
                    )
        trees[part] = arrays
    problems = []
    if missing:
        shown = ", ".join(repr(n) for n in missing[:3])
        problems.append(f"{len(missing)} array(s) missing from the checkpoint: {shown}")
    if mismatched:
        problems.append(
            f"{len(mismatched)} array(s) differ in shape and are not resampled to the grid: "
            + "; ".join(mismatched[:3])
        )
    if problems:
        raise CheckpointError(
            f"Could not load init_from checkpoint {path}: {'; '.join(problems)}. Check that "
            "config.model and config.model_kwargs are the checkpoint's (only the image size "
            "may differ)."
        )

    def put(part: str, like: Any) -> Any:
        def leaf(key_path, target):
            value = trees[part][path_name(key_path)]
            if value.dtype != target.dtype:
                value = np.asarray(value, dtype=target.dtype)
            return jax.device_put(value, getattr(target, "sharding", None))

        return jax.tree_util.tree_map_with_path(leaf, like)

    if not (head_differs or fresh_head):
        params = put("params", abstract["params"])
    else:
        body = {k: v for k, v in abstract["params"].items() if k != head}
        params = {**put("params", body), head: fresh_params[head]}
        _fresh_head_line(path, head, class_count_differs=head_differs)
    model_state = put("model_state", abstract["model_state"])
    return params, model_state


# --- official weights -----------------------------------------------------------------------


def official_head_keys(model: Any, rules: dict, head: str = "head") -> list[str]:
    """The official weight names of `model`'s classifier, from a converter's `rules`
    (official key -> (our variable, layout)): the keys whose variable belongs to our
    `head` module (`PretrainedCfg.classifier`). The names differ by family ("head.weight", sMLPNet's
    "mlp_head.0.weight", RaftMLP's "classifier.weight"), so they are not matched by name.
    """
    ours = {
        id(node)
        for _, node in nnx.iter_graph(getattr(model, head))
        if isinstance(node, nnx.Variable)
    }
    return [key for key, (variable, _) in rules.items() if id(variable) in ours]


def _from_official(
    config: Any,
    source: Any,
    num_classes: int,
    abstract: dict,
    path: str,
    fresh_head: bool = False,
) -> tuple[dict, dict]:
    """Official weights (`source`: a file, or a state dict read from `path`) into a fresh
    model of `config`, with a fresh head for another class count (or for any, with
    `fresh_head`: config.init_head="fresh")."""
    model = build_model(config, num_classes, config.seed)
    family = get_entry(config.model).family
    weights = dict(read_weights(source))
    rules = rules_for(model, weights, family=family)
    # A head for another class count is swapped for this model's fresh head (in the
    # official layout), so the shape checks of load_pretrained pass for everything else.
    head_keys = set(official_head_keys(model, rules, head_name(config.model)))
    replaced, differs = [], False
    for key, (variable, layout) in rules.items():
        ours = tuple(layout.official_shape(variable.shape))
        if key in head_keys and key in weights:
            differs = differs or np.shape(weights[key]) != ours
            if fresh_head or np.shape(weights[key]) != ours:
                weights[key] = layout.to_official(np.asarray(variable[...]))
                replaced.append(key)
    load_pretrained(
        model,
        weights,
        family=family,
        model_name=config.model,
        resample_to_grid=config.init_resample_to_grid,
    )
    if replaced:
        why = "class count differs" if differs else "config.init_head='fresh'"
        console(f"init_from {path}: {why}; {', '.join(replaced)} start fresh.")
    _, params, _, model_state = split(model)
    put = lambda tree, like: jax.tree.map(lambda x, a: jax.device_put(x, a.sharding), tree, like)
    return put(params, abstract["params"]), put(model_state, abstract["model_state"])
