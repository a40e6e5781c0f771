"""Run by tests/models/test_moe.py with 8 fake CPU devices: a MoE layer's forward and
backward (train mode, gate noise on, aux loss in the loss), with
the experts split over an `expert` mesh axis give the numbers of one device (1e-5).

(The whole Sparse-MLP on an expert axis is covered through the trainer.)

Usage, from the repository root:
  XLA_FLAGS=--xla_force_host_platform_device_count=8 python -m tests.models.moe_sharding_check
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import AxisType, NamedSharding, PartitionSpec

from smlp_jax.models.moe import MoeMlp, partition_rules, total_aux_loss
from smlp_jax.train.sharding import path_name, rule_spec


def shard_state(state, mesh):
    rules = partition_rules()

    def place(path, leaf):
        name = path_name(path)
        spec = rule_spec(name, rules) or PartitionSpec()
        return jax.device_put(leaf, NamedSharding(mesh, spec))

    return jax.tree_util.tree_map_with_path(place, state)


def check(model, x, mesh):
    def loss_fn(m, x):
        return jnp.mean(jnp.square(m(x))) + 0.01 * total_aux_loss(m)

    step = nnx.jit(lambda m, x: nnx.value_and_grad(loss_fn)(m, x))
    twin = nnx.clone(model)  # same weights and rng counters: the same gate noise
    loss_one, grads_one = step(model, x)
    with jax.set_mesh(mesh):
        nnx.update(twin, shard_state(nnx.state(twin), mesh))
        batch = jax.device_put(x, NamedSharding(mesh, PartitionSpec(("data", "expert"))))
        loss_many, grads_many = step(twin, batch)
    np.testing.assert_allclose(float(loss_many), float(loss_one), rtol=1e-5, atol=1e-5)
    flat_one = jax.tree_util.tree_leaves_with_path(grads_one)
    flat_many = jax.tree_util.tree_leaves(grads_many)
    split = 0
    for (path, a), b in zip(flat_one, flat_many):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-5, atol=1e-5)
        if "experts" in path_name(path):
            assert b.sharding.spec[0] == "expert", (path_name(path), b.sharding)
            split += 1
    assert split >= 4
    return float(loss_one)


def main() -> None:
    assert jax.device_count() == 8, "run with XLA_FLAGS=--xla_force_host_platform_device_count=8"
    mesh = jax.make_mesh((2, 4), ("data", "expert"), axis_types=(AxisType.Auto,) * 2)
    layer = MoeMlp(8, 16, 4, k=2, capacity_factor=1.0, rngs=nnx.Rngs(0))

    class Wrap(nnx.Module):
        def __init__(self):
            self.moe = layer

        def __call__(self, x):
            return self.moe(x)

    x = jax.random.normal(jax.random.key(0), (8, 6, 8))
    print("moe layer loss", check(Wrap(), x, mesh))
    print("expert-sharded == single device")


if __name__ == "__main__":
    main()
