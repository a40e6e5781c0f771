"""The device mesh and where each array of the train state and the batch lives.

Mesh: axes `("data", "fsdp")` over all devices of all processes, sizes from
`config.mesh` (one size may be -1: "the rest"). The batch is split over both axes
(every device sees its own examples). Partition rules for the state:

- `replicate`: every array on every device (plain data parallelism);
- `fsdp`: each array of at least `config.fsdp_min_size` elements is split over the
  `fsdp` axis along its largest dimension that the axis size divides (parameters,
  optimiser moments and EMA alike, since the rule reads only the shape); the rest is
  replicated. XLA inserts the all-gathers and reduce-scatters under `jax.jit`.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from smlp_jax.train.errors import ConfigError

AXES = ("data", "fsdp")
BATCH_SPEC = PartitionSpec(AXES)


def make_mesh(mesh_config: Any) -> Mesh:
    """`{"data": n, "fsdp": m}` (one of them may be -1) -> a Mesh over `jax.devices()`."""
    sizes = dict(mesh_config)
    unknown = sorted(set(sizes) - set(AXES))
    if unknown:
        raise ConfigError(f"config.mesh has unknown axes {unknown}; use {list(AXES)}.")
    shape = [int(sizes.get(axis, 1)) for axis in AXES]
    count = jax.device_count()
    if shape.count(-1) > 1:
        raise ConfigError(f"config.mesh={sizes}: at most one axis may be -1.")
    if -1 in shape:
        rest = math.prod(s for s in shape if s != -1)
        if count % rest:
            raise ConfigError(f"config.mesh={sizes} does not divide the {count} devices.")
        shape[shape.index(-1)] = count // rest
    if math.prod(shape) != count:
        raise ConfigError(
            f"config.mesh={sizes} makes {math.prod(shape)} devices but there are {count}; "
            "set one axis to -1 to use the rest."
        )
    # Auto axes: shardings are given to jit (in/out_shardings) and XLA propagates them.
    return jax.make_mesh(tuple(shape), AXES, axis_types=(AxisType.Auto,) * len(AXES))


def data_parallel_size(mesh: Mesh) -> int:
    """How many ways the batch is split (all devices: both axes shard the batch)."""
    return math.prod(mesh.shape[a] for a in AXES)


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis split over every device; other axes whole."""
    return NamedSharding(mesh, BATCH_SPEC)


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def spec_for(shape: tuple[int, ...], mode: str, fsdp_size: int, min_size: int) -> PartitionSpec:
    """The partition rule for one array of `shape` (see the module docstring)."""
    if mode == "replicate" or fsdp_size == 1 or math.prod(shape) < min_size:
        return PartitionSpec()
    # Largest dimension first; ties go to the later dimension (output features).
    order = sorted(range(len(shape)), key=lambda d: (shape[d], d), reverse=True)
    for dim in order:
        if shape[dim] % fsdp_size == 0:
            spec = [None] * len(shape)
            spec[dim] = "fsdp"
            return PartitionSpec(*spec)
    return PartitionSpec()


def state_shardings(abstract_state: Any, mesh: Mesh, mode: str, min_size: int) -> Any:
    """A pytree of NamedShardings matching `abstract_state` (ShapeDtypeStructs)."""
    if mode not in ("replicate", "fsdp"):
        raise ConfigError(f"config.sharding={mode!r}; use 'replicate' or 'fsdp'.")
    fsdp_size = mesh.shape["fsdp"]

    def rule(leaf):
        if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            return replicated(mesh)  # rng keys are tiny and read by every device
        return NamedSharding(mesh, spec_for(tuple(leaf.shape), mode, fsdp_size, min_size))

    return jax.tree.map(rule, abstract_state)


def global_batch(batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """This process's slice of the batch -> global jax.Arrays split over all devices.

    Each process passes its own `(B / process_count, ...)` arrays; the result has the
    global shape `(B, ...)`.
    """
    sharding = batch_sharding(mesh)
    return {
        name: jax.make_array_from_process_local_data(sharding, np.asarray(value))
        for name, value in batch.items()
    }
