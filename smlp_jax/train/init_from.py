"""`config.init_from`: start from our own checkpoint or from official weights.

Either source fills the model's parameters and BatchNorm statistics (and the EMA copy);
the optimiser starts fresh, as for fine-tuning. When the classifier's class count differs
(fine-tuning on another dataset) the head keeps its fresh initialisation and a line says
so; every other shape must match.

- our checkpoint: a workdir, its `checkpoints/` folder, or one `checkpoints/<step>` folder;
- official weights: a file (`.pth`, `.npz`, `.safetensors`) read by `smlp_jax.convert`.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import nnx

from smlp_jax.convert import load_pretrained, read_weights
from smlp_jax.convert.assign import Layout
from smlp_jax.models.registry import get_entry
from smlp_jax.train import checkpoint
from smlp_jax.train.metrics import console
from smlp_jax.train.state import HEAD, build_model, split


def is_our_checkpoint(path: str) -> bool:
    return Path(path).is_dir()


def load_model_weights(config: Any, state: dict, abstract: dict, num_classes: int) -> dict:
    """Returns `state` with params/model_state (and EMA) taken from `config.init_from`."""
    path = config.init_from
    if is_our_checkpoint(path):
        params, model_state = _from_checkpoint(path, abstract, state["params"])
    else:
        params, model_state = _from_official(config, path, num_classes, abstract)
    state = {**state, "params": params, "model_state": model_state}
    if "ema" in state:
        state["ema"] = {"params": params, "model_state": model_state}
    return state


def _from_checkpoint(path: str, abstract: dict, fresh_params: dict) -> tuple[dict, dict]:
    target = {"params": abstract["params"], "model_state": abstract["model_state"]}
    try:
        loaded = checkpoint.load_for_init(path, target, partial=True)
        return loaded["params"], loaded["model_state"]
    except checkpoint.CheckpointError as err:
        if HEAD not in abstract["params"]:
            raise
        full_error = err
    # Retry without the head: a checkpoint trained for another class count.
    headless = {**target, "params": {k: v for k, v in target["params"].items() if k != HEAD}}
    try:
        loaded = checkpoint.load_for_init(path, headless, partial=True)
    except checkpoint.CheckpointError:
        raise full_error from None
    console(f"init_from {path}: class count differs; the '{HEAD}' layer starts fresh.")
    return {**loaded["params"], HEAD: fresh_params[HEAD]}, loaded["model_state"]


def _to_official(layout: Layout, array: np.ndarray) -> np.ndarray:
    """Inverse of `Layout.to_ours`."""
    if layout.perm is not None:
        array = np.transpose(array, np.argsort(layout.perm))
    if layout.squeeze_1x1:
        array = array.reshape(array.shape + (1, 1))
    return array


def official_head_keys(model: Any, rules: dict) -> list[str]:
    """The official weight names of `model`'s classifier, from a converter's `rules`
    (official key -> (our variable, layout)): the keys whose variable belongs to our
    `head` module. The names differ by family ("head.weight", sMLPNet's
    "mlp_head.0.weight", RaftMLP's "classifier.weight"), so they are not matched by name.
    """
    ours = {
        id(node)
        for _, node in nnx.iter_graph(getattr(model, HEAD))
        if isinstance(node, nnx.Variable)
    }
    return [key for key, (variable, _) in rules.items() if id(variable) in ours]


def _from_official(config: Any, path: str, num_classes: int, abstract: dict) -> tuple[dict, dict]:
    model = build_model(config, num_classes, config.seed)
    entry = get_entry(config.model)
    converter = importlib.import_module(f"smlp_jax.convert.{entry.family}")
    weights = dict(read_weights(path))
    rules_for = getattr(converter, "rules_for_weights", None)
    rules = rules_for(model, weights) if rules_for else converter.official_rules(model)
    # A head for another class count is swapped for this model's fresh head (in the
    # official layout), so the shape checks of load_pretrained pass for everything else.
    head_keys = set(official_head_keys(model, rules))
    replaced = []
    for key, (variable, layout) in rules.items():
        ours = tuple(layout.official_shape(variable.shape))
        if key in head_keys and key in weights and np.shape(weights[key]) != ours:
            weights[key] = _to_official(layout, np.asarray(variable[...]))
            replaced.append(key)
    load_pretrained(
        model,
        weights,
        family=entry.family,
        model_name=config.model,
        resample_to_grid=config.init_resample_to_grid,
    )
    if replaced:
        console(f"init_from {path}: class count differs; {', '.join(replaced)} start fresh.")
    _, params, _, model_state = split(model)
    put = lambda tree, like: jax.tree.map(lambda x, a: jax.device_put(x, a.sharding), tree, like)
    return put(params, abstract["params"]), put(model_state, abstract["model_state"])
