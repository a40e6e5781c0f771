"""Train-state-like pytrees, their abstract restore targets, bit-exact comparison, ways
to damage a saved step and to hold one in flight: shared by the checkpoint, init_from,
disk-full and preemption tests (1 CPU device)."""

import asyncio
import glob
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from smlp_jax.train import checkpoint

# After a read error TensorStore's outstanding reads may call into Orbax's already closed event
# loop; Python reports that as an unraisable exception. It is noise from the damaged files.
IGNORE_CLOSED_LOOP = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


class Tiny(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.linear = nnx.Linear(3, 4, rngs=rngs)
        self.norm = nnx.BatchNorm(4, rngs=rngs)
        self.drop = nnx.Dropout(0.5, rngs=rngs)


def mesh_sharding(*spec):
    mesh = jax.make_mesh((1,), ("data",))
    return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(*spec))


def tiny_state(seed: int = 0):
    """A train-state-like pytree: nnx params, batch stats and rng streams (typed keys), a
    bfloat16 leaf, a step counter and a batch of typed keys."""
    model = Tiny(nnx.Rngs(seed, dropout=seed + 1))
    model.norm.mean[...] = jnp.arange(4.0) + seed  # non-default batch stats
    return {
        "model": nnx.state(model),
        "ema": jax.tree.map(lambda x: x.astype(jnp.bfloat16), nnx.state(model, nnx.Param)),
        "step": jnp.asarray(seed, jnp.int32),
        "keys": jax.random.split(jax.random.key(seed + 7), 3),
    }


def abstract_of(state, sharding=None):
    sharding = sharding or mesh_sharding()
    return jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding),
        jax.eval_shape(lambda: state),
    )


def assert_bit_equal(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        assert x.dtype == y.dtype and x.shape == y.shape
        if checkpoint.encoding._is_key(x):
            x, y = jax.random.key_data(x), jax.random.key_data(y)
        bits_x, bits_y = (np.asarray(v).reshape(-1).view(np.uint8) for v in (x, y))
        np.testing.assert_array_equal(bits_x, bits_y)


def damage(step_dir: Path, how: str) -> None:
    if how == "truncated_arrays":
        for name in glob.glob(str(step_dir / "state" / "**" / "d" / "*"), recursive=True):
            with open(name, "r+b") as f:
                f.truncate(3)
    elif how == "deleted_metadata":
        (step_dir / "state" / "_METADATA").unlink()
    elif how == "garbled_data_state":
        (step_dir / "data" / "process_0.json").write_text('{"kind": "by')


def hold_commit(step: int, gate: str | Path):
    """Holds the commit of checkpoint `step` (Orbax's rename of its temporary directory)
    until the file `gate` exists, so a save stays in flight for as long as a test needs;
    other steps commit as usual. Patches Orbax in this process; returns a function that
    undoes it."""
    from orbax.checkpoint._src.path import atomicity

    finalize = atomicity.AtomicRenameTemporaryPath.finalize

    async def held(self, *args, **kwargs):
        while self.get_final().name == str(step) and not os.path.exists(gate):
            await asyncio.sleep(0.02)
        return await finalize(self, *args, **kwargs)

    atomicity.AtomicRenameTemporaryPath.finalize = held
    return lambda: setattr(atomicity.AtomicRenameTemporaryPath, "finalize", finalize)
