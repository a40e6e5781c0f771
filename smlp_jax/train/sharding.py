"""The device mesh and where each array of the train state and the batch lives.

Mesh: axes `("data", "fsdp", "expert")` over all devices of all processes, sizes from
`config.mesh` (one size may be -1: "the rest"; a missing axis is 1). The batch is split
over all three axes (every device sees its own examples). Partition rules for the state:

- model rules first: `(regex, PartitionSpec)` pairs matched (`re.search`) against each
  array's '/'-joined path in the state, e.g. `params/blocks/1/channel_moe/experts/fc1_kernel`
  (`smlp_jax.models.moe.partition_rules()` puts dimension 0 of every stacked expert
  weight on the `expert` axis). The path ends the same for a parameter, its optimiser
  moments and its EMA copy, so all three get the rule's spec. The sizes a spec names must
  divide the mesh axes it uses (a clear ConfigError otherwise);
- `replicate`: every other array on every device (plain data parallelism);
- `fsdp`: each array of at least `config.fsdp_min_size` elements is split over the
  `fsdp` axis along its largest dimension that the axis size divides and no model rule
  claims (parameters, optimiser moments and EMA alike); the rest is replicated. XLA
  inserts the all-gathers and reduce-scatters under `jax.jit`.

With `expert` > 1 a Sparse-MLP's experts are expert-parallel: each device holds E /
expert of them, and the MoE layers' dispatch einsums become all-to-alls. The steps must
be traced with the mesh in context (`under_mesh`), since that is where the MoE layers
read the `expert` axis from. A model without experts just gets more data parallelism.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from smlp_jax.train.errors import ConfigError

AXES = ("data", "fsdp", "expert")
BATCH_SPEC = PartitionSpec(AXES)
Rules = Sequence[tuple[str, PartitionSpec]]


def make_mesh(mesh_config: Any) -> Mesh:
    """`{"data": n, "fsdp": m, "expert": e}` (one may be -1, a missing one is 1) -> a Mesh
    over `jax.devices()`."""
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
    """How many ways the batch is split (all devices: every axis shards the batch)."""
    return math.prod(mesh.shape[a] for a in AXES)


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis split over every device; other axes whole."""
    return NamedSharding(mesh, BATCH_SPEC)


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def under_mesh(fn: Callable, mesh: Mesh) -> Callable:
    """`fn` called (and so traced) with `mesh` in context (`jax.set_mesh`), where
    `jax.sharding.get_abstract_mesh()` finds it: the MoE layers read their `expert` axis
    there. Every call enters it, so the jit cache never sees two contexts."""

    @functools.wraps(fn)
    def call(*args, **kwargs):
        with jax.set_mesh(mesh):
            return fn(*args, **kwargs)

    return call


def path_name(path: tuple) -> str:
    """A pytree key path -> `"params/blocks/1/channel_moe/experts/fc1_kernel"`."""
    parts = []
    for key in path:
        for attr in ("key", "name", "idx"):  # DictKey / FlattenedIndexKey, GetAttrKey, ...
            if hasattr(key, attr):
                parts.append(str(getattr(key, attr)))
                break
        else:
            parts.append(str(key))
    return "/".join(parts)


def rule_spec(name: str, rules: Rules) -> PartitionSpec | None:
    """The spec of the first rule whose regex is found in `name`, or None."""
    return next((spec for pattern, spec in rules if re.search(pattern, name)), None)


def axes_of(entry: Any) -> tuple[str, ...]:
    """The mesh axes one PartitionSpec entry names (None, "x" or ("x", "y"))."""
    if entry is None or entry is PartitionSpec.UNCONSTRAINED:
        return ()
    return tuple(entry) if isinstance(entry, tuple) else (entry,)


def spec_for(
    shape: tuple[int, ...],
    mode: str,
    fsdp_size: int,
    min_size: int,
    claimed: PartitionSpec | None = None,
) -> PartitionSpec:
    """The partition rule for one array of `shape` (see the module docstring); `claimed`
    is a model rule's spec, whose named dimensions fsdp leaves alone."""
    claimed = PartitionSpec() if claimed is None else claimed
    if mode == "fsdp" and fsdp_size > 1 and math.prod(shape) >= min_size:
        spec = list(claimed) + [None] * (len(shape) - len(claimed))
        # Largest dimension first; ties go to the later dimension (output features).
        order = sorted(range(len(shape)), key=lambda d: (shape[d], d), reverse=True)
        for dim in order:
            if spec[dim] is None and shape[dim] % fsdp_size == 0:
                spec[dim] = "fsdp"
                return PartitionSpec(*spec)
    return claimed


def _indivisible(name: str, shape: tuple[int, ...], spec: PartitionSpec, mesh: Mesh) -> str:
    """Why `spec` cannot split an array of `shape` on `mesh` ("" when it can)."""
    for dim, entry in enumerate(spec):
        axes = axes_of(entry)
        if axes and shape[dim] % math.prod(mesh.shape[a] for a in axes):
            what = " x ".join(f"config.mesh.{a}={mesh.shape[a]}" for a in axes)
            hint = " (its number of experts)" if "expert" in axes else ""
            return (
                f"{what} does not divide {name}'s dimension {dim} of size {shape[dim]}{hint}; "
                f"use a divisor of {shape[dim]}."
            )
    return ""


def state_shardings(
    abstract_state: Any, mesh: Mesh, mode: str, min_size: int, rules: Rules = ()
) -> Any:
    """A pytree of NamedShardings matching `abstract_state` (ShapeDtypeStructs); `rules`
    are the model's `(regex, PartitionSpec)` pairs (see the module docstring)."""
    if mode not in ("replicate", "fsdp"):
        raise ConfigError(f"config.sharding={mode!r}; use 'replicate' or 'fsdp'.")
    fsdp_size = mesh.shape["fsdp"]
    problems = []

    def rule(path, leaf):
        if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            return replicated(mesh)  # rng keys are tiny and read by every device
        shape, name = tuple(leaf.shape), path_name(path)
        claimed = rule_spec(name, rules)
        if claimed is not None:
            problems.append(
                (not name.startswith("params/"), _indivisible(name, shape, claimed, mesh))
            )
        return NamedSharding(mesh, spec_for(shape, mode, fsdp_size, min_size, claimed))

    shardings = jax.tree_util.tree_map_with_path(rule, abstract_state)
    problems = sorted(p for p in problems if p[1])  # a parameter's name reads best
    if problems:
        raise ConfigError(problems[0][1])
    return shardings


def uses_axis(shardings: Any, axis: str) -> bool:
    """Whether any sharding in the pytree splits an array over mesh axis `axis`."""
    return any(
        axis in axes_of(entry)
        for s in jax.tree.leaves(shardings)
        if isinstance(s, NamedSharding)
        for entry in s.spec
    )


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
