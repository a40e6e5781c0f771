"""What a checkpoint step holds, and how our values become what Orbax stores.

The items of a step (`item_handlers`), typed PRNG keys as their uint32 key data
(`abstract_key_data`, `data_to_keys`), the input-iterator state and the metrics as JSON.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp


def item_handlers() -> dict[str, ocp.CheckpointHandler]:
    # primary_host=None: every process writes its own data file (the default is process 0 only).
    per_process = ocp.options.MultiprocessingOptions(primary_host=None)
    return {
        "state": ocp.StandardCheckpointHandler(),
        "data": ocp.JsonCheckpointHandler(
            filename=f"process_{jax.process_index()}.json", multiprocessing_options=per_process
        ),
        "meta": ocp.JsonCheckpointHandler(filename="meta.json"),
        # What the run is (smlp_jax.train.run_record): written by process 0.
        "record": ocp.JsonCheckpointHandler(filename="run.json"),
    }


# --- pytree <-> what Orbax stores ------------------------------------------------------------


def _is_key(leaf: Any) -> bool:
    dtype = getattr(leaf, "dtype", None)
    return dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key)


def keys_to_data(state: Any) -> Any:
    """Replaces typed PRNG key arrays (shape S) by their uint32 key data (S + (2,) for
    threefry): Orbax stores plain arrays."""
    return jax.tree.map(lambda leaf: jax.random.key_data(leaf) if _is_key(leaf) else leaf, state)


_REPLICATED: list[jax.sharding.Sharding] = []


def _replicated() -> jax.sharding.Sharding:
    if not _REPLICATED:
        mesh = jax.sharding.Mesh(np.asarray(jax.devices()), ("replica",))
        _REPLICATED.append(jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec()))
    return _REPLICATED[0]


def _key_data_sharding(sharding: jax.sharding.Sharding, ndim: int) -> jax.sharding.Sharding:
    """The sharding of a key array's data: the key's own axes, then the unsharded key axes."""
    if isinstance(sharding, jax.sharding.NamedSharding):
        spec = tuple(sharding.spec) + (None,) * (ndim - len(sharding.spec))
        return jax.sharding.NamedSharding(sharding.mesh, jax.sharding.PartitionSpec(*spec))
    if sharding.is_fully_replicated:
        return sharding
    raise TypeError(
        f"Cannot restore a PRNG key array sharded by {type(sharding).__name__}; give it a "
        "NamedSharding in the abstract state."
    )


def abstract_key_data(abstract_state: Any) -> Any:
    """The restore target: ShapeDtypeStructs with shardings (missing ones: replicated), PRNG
    key leaves replaced by their key-data shape and dtype."""

    def convert(leaf):
        if not hasattr(leaf, "shape") or not hasattr(leaf, "dtype"):
            raise TypeError(
                f"The abstract state must hold jax.ShapeDtypeStruct or arrays, got "
                f"{type(leaf).__name__}; build it with jax.eval_shape."
            )
        sharding = getattr(leaf, "sharding", None) or _replicated()
        if _is_key(leaf):
            data = jax.eval_shape(jax.random.key_data, jax.ShapeDtypeStruct(leaf.shape, leaf.dtype))
            sharding = _key_data_sharding(sharding, data.ndim)
            return jax.ShapeDtypeStruct(data.shape, data.dtype, sharding=sharding)
        return jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=sharding)

    return jax.tree.map(convert, abstract_state)


def data_to_keys(restored: Any, abstract_state: Any) -> Any:
    """Inverse of `keys_to_data`: key data back into keys of the abstract leaf's key dtype."""

    def convert(leaf, target):
        if not _is_key(target):
            return leaf
        key = jax.random.wrap_key_data(leaf, dtype=target.dtype)
        # The keys inherit the key data's sharding spec, one axis too long; state it exactly.
        return jax.device_put(key, getattr(target, "sharding", None) or _replicated())

    return jax.tree.map(convert, restored, abstract_state)


def metrics_to_json(metrics: dict[str, Any] | None) -> dict[str, Any] | None:
    if metrics is None:
        return None
    out = {}
    for name, value in metrics.items():
        array = np.asarray(value)  # jax and numpy scalars alike
        if array.shape != () or not np.issubdtype(array.dtype, np.number):
            raise TypeError(f"metrics[{name!r}] must be a scalar number, got {value!r}.")
        out[str(name)] = array.item()
    return out


def encode_data_state(data_state: dict[str, Any] | None) -> dict[str, Any]:
    """The input iterator's state (`TrainIterator.get_state()`, a dict of ints) -> the JSON
    of `data/process_<i>.json`; checked here, not in Orbax's background thread."""
    if data_state is None:
        return {"kind": "none"}
    if not isinstance(data_state, dict):
        raise TypeError(f"data_state must be a dict or None, got {type(data_state).__name__}.")
    try:
        same = json.loads(json.dumps(data_state)) == data_state
    except (TypeError, ValueError) as err:
        raise TypeError(f"data_state must be JSON-serialisable: {err}") from None
    if not same:
        raise TypeError(
            "data_state would not survive JSON unchanged (tuples, non-string keys?): "
            "use lists and string keys."
        )
    return {"kind": "dict", "value": data_state}


def decode_data_state(stored: Any) -> dict[str, Any] | None:
    """The JSON of `data/process_<i>.json` -> the iterator state saved (a dict) or None;
    ValueError (the file is damaged) for anything `encode_data_state` does not write."""
    kind = stored.get("kind") if isinstance(stored, dict) else None
    if kind == "dict" and isinstance(stored.get("value"), dict):
        return stored["value"]
    if kind == "none":
        return None
    raise ValueError(
        'data_state is not {"kind": "dict", "value": {...}} or {"kind": "none"}: '
        f"{json.dumps(stored)[:100]}"
    )


def save_args(
    step: int,
    state: Any,
    data_state: dict[str, Any] | None,
    metrics: dict[str, Any] | None,
    record: dict[str, Any] | None,
) -> ocp.args.Composite:
    """Orbax's save arguments for one step: the state (keys as key data), this process's
    iterator state, the step's meta (`metrics` already JSON) and, when given, the run record."""
    meta = {"step": step, "metrics": metrics, "process_count": jax.process_count()}
    items = dict(
        state=ocp.args.StandardSave(keys_to_data(state)),
        data=ocp.args.JsonSave(encode_data_state(data_state)),
        meta=ocp.args.JsonSave(meta),
    )
    if record is not None:
        items["record"] = ocp.args.JsonSave(record)
    return ocp.args.Composite(**items)


def read_data_state(step_dir: Path, check: Callable[[Any], None] | None) -> dict[str, Any] | None:
    """This process's iterator state saved in `step_dir`; ValueError (the step is damaged)
    when it is not JSON `encode_data_state` writes or `check` (e.g.
    `TrainIterator.check_state`) rejects it."""
    data_file = step_dir / "data" / f"process_{jax.process_index()}.json"
    data_state = decode_data_state(json.loads(data_file.read_text()))
    if data_state is not None and check is not None:
        try:
            check(data_state)
        except ValueError as err:  # valid JSON, but no state the iterator could have saved
            raise ValueError(f"data/{data_file.name}: {err}") from None
    return data_state
