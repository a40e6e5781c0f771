"""The shapes of the arrays in a saved `state/` directory, read from two small index files.

Orbax's own `PyTreeCheckpointHandler.metadata` opens every saved array to read its shape:
1.2-1.5 s for the 1,964 arrays of an sMLPNet-T train state (parameters, both AdamW moments,
the EMA copy), when a tool or `config.init_from` needs 530 of them. Two files Orbax writes
beside the arrays say the same for an array written whole, in some 50 ms: `_METADATA`
holds each array's key path and `write_shape` (the shape of the piece each writer wrote),
`_sharding` its sharding when saved (mesh shape, axis names, partition spec). Saved from one
device, the piece is the array: the checkpoints of a one-GPU or CPU run, the ones a tool
most often reads. Saved from several devices (sharded, or replicated: Orbax has each replica
write a slice) or in a layout this does not know, it is None: ask Orbax then.
"""

from __future__ import annotations

import base64
import json
import math
from pathlib import Path
from typing import Any

import jax

from smlp_jax.train.sharding import path_name

__all__ = ["by_path", "describe_mismatches", "saved_shapes", "shape_mismatches"]


def _written_whole(sharding: dict[str, Any]) -> bool:
    """Whether an array saved with this sharding (Orbax's JSON of it) was written whole: on
    one device. On several, even a replicated array is written in slices, one a replica."""
    kind = sharding.get("sharding_type")
    if kind == "SingleDeviceSharding":
        return True
    return kind == "NamedSharding" and math.prod(sharding["shape"]) == 1


def saved_shapes(state_dir: str | Path) -> dict[str, tuple[int, ...]] | None:
    """`{"params/stages/0/...": shape}` for every array saved in `state_dir` (a step's
    `state/`), keys joined by "/" as `smlp_jax.train.sharding.path_name` joins them; None
    when any array was written in pieces or the index files are missing or unlike what
    this reads. A read the operating system refuses raises its `OSError`."""
    state_dir = Path(state_dir)
    try:
        # A read the OS refuses is raised (the caller reports it, with the file); a file
        # that is not there is left to Orbax to tell apart (damage, or another layout).
        tree = json.loads((state_dir / "_METADATA").read_text())["tree_metadata"]
        shardings = json.loads((state_dir / "_sharding").read_text())
        shapes = {}
        for entry in tree.values():
            keys = [str(k["key"]) for k in entry["key_metadata"]]
            value = entry["value_metadata"]
            if value["value_type"] != "jax.Array":
                continue  # None leaves and scalars: nothing to compare a target against
            dotted = base64.b64encode(".".join(keys).encode()).decode()
            if not _written_whole(json.loads(shardings[dotted])):
                return None
            shapes["/".join(keys)] = tuple(int(n) for n in value["write_shape"])
        return shapes
    except (FileNotFoundError, ValueError, KeyError, TypeError, AttributeError):
        return None


def by_path(tree: Any) -> dict[str, Any]:
    """`{"params/stages/0/...": leaf}` for every leaf with a shape (arrays, or Orbax's and
    JAX's abstract ones), key paths joined as `saved_shapes` joins them."""
    leaves = jax.tree_util.tree_flatten_with_path(tree, is_leaf=lambda x: hasattr(x, "shape"))
    # Orbax stores every key as a string (list indices too): compare as strings.
    return {path_name(path): leaf for path, leaf in leaves[0] if hasattr(leaf, "shape")}


def shape_mismatches(saved: dict[str, tuple[int, ...]], target: Any) -> list[str]:
    """`'path' is (saved shape) in the checkpoint, (target shape) here` for each leaf of
    `target` saved with another shape; keys `saved` lacks are left to the restore to report."""
    return [
        f"'{name}' is {saved[name]} in the checkpoint, {tuple(leaf.shape)} here"
        for name, leaf in by_path(target).items()
        if name in saved and saved[name] != tuple(leaf.shape)
    ]


def describe_mismatches(mismatches: list[str], shown: int = 2) -> str:
    """`N array(s) differ in shape: ` and the first `shown` of `shape_mismatches`."""
    more = f" and {len(mismatches) - shown} more" if len(mismatches) > shown else ""
    return f"{len(mismatches)} array(s) differ in shape: " + "; ".join(mismatches[:shown]) + more
